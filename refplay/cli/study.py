"""``refplay study ...``: run, resume, inspect and export studies.

::

    refplay study run SPEC.toml [--workers N | --dask ADDRESS] [--workspace DIR]
    refplay study resume NAME   [--workers N | --dask ADDRESS] [--workspace DIR]
    refplay study status NAME   [--workspace DIR]
    refplay study list          [--workspace DIR]
    refplay study export NAME --csv FILE [--workspace DIR]
    refplay study baseline [NAME [TRIAL [--note TEXT]]] [--workspace DIR]
    refplay study report NAME [--out DIR] [--n-validation N] [--workspace DIR]
    refplay study import {optuna,csv} SOURCE --name NAME [--scientific P ...] [--metric M]
                         [--n-validation N] [--max-train-steps N] [--description T]
                         [--goal T] [--workspace DIR]
          optuna: [--study-name S] [--sampler NAME]
          csv:    [--curves HISTORY.csv] [--value COL] [--trial COL] [--state COL]
                  [--mode min|max]

``run`` and ``resume`` end by printing the best trial per scientific value
and writing the report (``--no-report`` skips it).

``--dask ADDRESS`` sends trials to the Dask scheduler at ADDRESS (e.g.
``tcp://10.0.0.5:8786``; its workers need refplay installed and must see the
workspace directory); ``--dask local`` starts a ``LocalCluster`` with
``--dask-workers`` single-threaded worker processes (default: one per CPU).

The reproduction command recorded for a study is ``refplay study run`` on the
*stored copy* of its spec (``WORKSPACE/NAME/spec.toml`` or ``.json``), which keeps working
after the original spec file is edited for the next round.

``import`` writes a study run elsewhere (an Optuna storage, a CSV export of
Optuna, W&B or Ray Tune) into the workspace as an ordinary study, so that
``list``, ``status``, ``report`` and ``export`` work on it
(:func:`refplay.study.imports.import_study`; docs/external-studies.md).
"""

from __future__ import annotations

# The handlers import the study runner and store when they run (each import says
# why): both load Numba and the trainer, which `refplay --help` must not wait for.

import os
import shlex
import sys
import textwrap
import warnings
from pathlib import Path

from refplay.io import write_text

DEFAULT_WORKSPACE = "refplay-workspace"
# What `study import` reads (refplay.study.imports.KINDS, named here to keep start-up light).
_KINDS = ("optuna", "csv")


def register(sub) -> None:
    """Add ``refplay study`` and its commands to the ``refplay`` subparsers ``sub``."""
    study = sub.add_parser("study", help="run, resume, inspect and export studies",
                           description="Run, resume, inspect and export studies.")
    commands = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    commands.required = True

    def add(name: str, help_text: str, func):
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--workspace", default=DEFAULT_WORKSPACE,
                       help=f"directory of the study database (default: ./{DEFAULT_WORKSPACE})")
        p.set_defaults(func=func)
        return p

    p = add("run", "run a study from its spec file (resumes it if it exists)", _run)
    p.add_argument("spec", help="study spec, a .toml (or .json) file")
    _add_run_options(p)

    p = add("resume", "run the trials of a recorded study that have no result yet", _resume)
    p.add_argument("name", help="study name")
    _add_run_options(p)

    p = add("status", "show a study's progress and best trial", _status)
    p.add_argument("name", help="study name")

    add("list", "the tracking table: every study of the workspace", _list)

    p = add("report", "write a study's report: Markdown, self-contained HTML and PNGs", _report)
    p.add_argument("name", help="study name")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: WORKSPACE/NAME/report)")
    p.add_argument("--n-validation", type=int, default=None, metavar="N",
                   help="validation set size behind an error rate's standard error "
                        "(default: the study's recorded one)")

    p = add("baseline", "record a complete trial as the current baseline (the configuration "
                        "to beat); without TRIAL, show the current one", _baseline)
    p.add_argument("name", nargs="?", help="study name")
    p.add_argument("trial", nargs="?", type=int, help="trial index")
    p.add_argument("--note", default="", help="why it was adopted, e.g. the evidence")

    p = add("export", "write a study's trials and measurements as CSV", _export)
    p.add_argument("name", help="study name")
    p.add_argument("--csv", required=True, metavar="FILE",
                   help="trials CSV (measurements go to FILE_measurements.csv)")

    p = add("import", "write a study run elsewhere (Optuna, a CSV export of Optuna, W&B or "
                      "Ray Tune) into the workspace as an ordinary study", _import)
    _add_import_options(p)


def _add_run_options(p) -> None:
    """Where and how trials run: workers or Dask, time limit, progress, report, retries."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None,
                       help="local worker processes (default: one per CPU; 0: run trials "
                            "in this process)")
    where.add_argument("--dask", metavar="ADDRESS", default=None,
                       help="run trials on the Dask scheduler at ADDRESS ('local': start a "
                            "LocalCluster)")
    p.add_argument("--dask-workers", type=int, default=None,
                   help="worker processes of --dask local (default: one per CPU)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="record a trial as failed when it runs longer than this")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true",
                   help="skip the study report written at the end of the run")
    p.add_argument("--retry-failed", action="store_true",
                   help="run the study's failed trials again (their old records are kept "
                        "as history)")


# Options of `study import`: (flag, argparse keywords, kinds that take it).
_IMPORT_OPTIONS = (
    ("--scientific", dict(nargs="+", metavar="P", help="the scientific parameters"), _KINDS),
    ("--metric", dict(metavar="M", help="the study metric (e.g. validation/loss)"), _KINDS),
    ("--n-validation", dict(type=int, metavar="N", help="validation set size (for the "
                                                        "standard error of an error rate)"),
     _KINDS),
    ("--max-train-steps", dict(type=int, metavar="N", help="the trials' step budget (default: "
                                                           "the longest reported curve)"),
     _KINDS),
    ("--study-name", dict(metavar="S", help="the study in an Optuna storage holding several"),
     ("optuna",)),
    ("--sampler", dict(metavar="NAME", help="the sampler that chose the trials (a stored "
                                            "Optuna study does not record it)"), ("optuna",)),
    ("--curves", dict(metavar="HISTORY.csv", help="per-step values, one row per trial and "
                                                  "step"), ("csv",)),
    ("--value", dict(metavar="COL", help="the objective column"), ("csv",)),
    ("--trial", dict(metavar="COL", help="the trial column"), ("csv",)),
    ("--state", dict(metavar="COL", help="the status column"), ("csv",)),
    ("--mode", dict(choices=("min", "max"), help="min or max (default: min)"), ("csv",)),
)


def _add_import_options(p) -> None:
    """``refplay study import {optuna,csv} SOURCE --name NAME ...``."""
    p.add_argument("kind", choices=_KINDS, help="what SOURCE is")
    p.add_argument("source", metavar="SOURCE",
                   help="an Optuna storage URL or .db file, or a trials CSV")
    p.add_argument("--name", required=True, help="the study's name in the workspace")
    p.add_argument("--description", default="", metavar="T", help="the study's notes")
    p.add_argument("--goal", default="", metavar="T", help="the question the study answers")
    for flag, keywords, kinds in _IMPORT_OPTIONS:
        only = "" if kinds == _KINDS else f" ({kinds[0]} only)"
        p.add_argument(flag, default=None, **dict(keywords, help=keywords["help"] + only))


def _import(args) -> int:
    """Import the study, then print its counts and every warning once."""
    from refplay.study import imports  # lazy: CLI start-up (the store loads Numba)
    options = {}
    for flag, _, kinds in _IMPORT_OPTIONS:
        key = flag[2:].replace("-", "_")
        value = getattr(args, key)
        if value is None:
            continue
        if args.kind not in kinds:
            raise ValueError(f"{flag} goes with `refplay study import {kinds[0]}`, not "
                             f"{args.kind}")
        options[key] = tuple(value) if key == "scientific" else value
    with warnings.catch_warnings():
        # The summary carries every warning; printed once below, not twice.
        warnings.simplefilter("ignore", imports.StudyImportWarning)
        summary = imports.import_study(
            args.kind, args.source, workspace=args.workspace, name=args.name,
            description=args.description, goal=args.goal,
            command=shlex.join(["refplay", *args.argv]), **options)
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n)
    print(f"imported {args.kind} study into {summary.workspace}: {summary.name} ({counts})")
    for note in summary.warnings:
        print(f"warning: {note}")
    return 0


def _open(workspace: str, *, readonly: bool = True):
    """The workspace's study store."""
    from refplay.study.store import Store  # lazy: CLI start-up (the store loads Numba)
    return Store(workspace, readonly=readonly)


# ------------------------------------------------------------------ run / resume
def _run(args) -> int:
    from refplay.study.spec import StudySpec  # lazy: CLI start-up
    return _run_spec(StudySpec.load(args.spec), args)


def _resume(args) -> int:
    with _open(args.workspace) as store:
        spec = store.get_spec(args.name)
        made_by = store.get_study(args.name).trial_function
    if made_by.startswith("imported from"):
        print(f"study {args.name!r} was {made_by}: its trials ran there, nothing to resume")
        return 0
    return _run_spec(spec, args)


def _run_spec(spec, args) -> int:
    from refplay.study import runner  # lazy: CLI start-up (the trainer)
    progress = False if args.quiet else None
    if args.dask_workers is not None and args.dask != "local":
        raise ValueError("--dask-workers goes with --dask local")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers={args.workers} is not allowed: use 0 (run trials in this "
                         f"process) or more")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit: time_limit={args.time_limit:g} is not allowed: use a "
                         f"number of seconds > 0")
    if args.dask_workers is not None and args.dask_workers < 1:
        raise ValueError(f"--dask-workers={args.dask_workers} is not allowed: use 1 or more")
    # Every check that can fail comes before the database is created and a
    # cluster started: a typo in the spec leaves nothing behind.
    if spec.workload is None:
        raise ValueError(f"study {spec.name!r} runs a custom trial function (no workload); run "
                         f"or resume it from Python with refplay.study.run(spec, store=..., "
                         f"trial_fn=...)")
    runner.WorkloadTrial.from_spec(spec).check_configs(spec.sampled_configs)
    try:
        with _open(args.workspace, readonly=False) as store, _dask_executor(args) as executor:
            # command=None: the runner records `refplay study run` on the stored copy.
            status = runner.run(spec, store=store, executor=executor,
                                workers=None if executor is not None else args.workers,
                                time_limit=args.time_limit, progress=progress,
                                retry_failed=args.retry_failed)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are recorded; continue with\n"
              f"  refplay study resume {spec.name} --workspace {shlex.quote(args.workspace)}",
              file=sys.stderr)
        return 130
    except runner.StudyError as exc:
        print(f"refplay: error: {_error_line(exc, args.workspace, spec.name)}", file=sys.stderr)
        return 1
    print(format_status(status))
    if not args.no_report:
        print(_summary_and_report(args.workspace, spec.name, None))
    return 0


def _error_line(exc, workspace: str, name: str) -> str:
    """One line for a stopped run; a longer story (a traceback) goes to WORKSPACE/NAME/error.txt."""
    text = str(exc)
    if "\n" not in text:
        return text
    path = write_text(Path(workspace) / name / "error.txt", text + "\n")
    return f"{exc.summary} (the full text, with the traceback: {path})"


def _summary_and_report(workspace: str, name: str, out: str | None,
                        n_validation: int | None = None) -> str:
    """The best per scientific value, the study's answer, and where the report went."""
    from refplay import analysis, report  # lazy: matplotlib, only when a report is written
    with _open(workspace) as store:
        text = report.summary_table(analysis.load(store, name, n_validation=n_validation))
        written = report.write_report(store, name, out, n_validation=n_validation)
    return f"{text}\nreport: {written.html} (and {written.markdown.name}, PNGs)"


def _report(args) -> int:
    if args.n_validation is not None and args.n_validation < 1:
        raise ValueError(f"--n-validation={args.n_validation} is not allowed: use 1 or more")
    with _open(args.workspace) as store:
        store.require_study(args.name)
    print(_summary_and_report(args.workspace, args.name, args.out, args.n_validation))
    return 0


class _NoExecutor:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _DaskExecutor:
    """A Dask client's executor for the duration of a run (and its LocalCluster)."""

    def __init__(self, address: str, n_workers: int | None) -> None:
        try:
            import distributed  # lazy: the optional [dask] extra
        except ImportError:
            raise ValueError("--dask needs dask.distributed: pip install 'refplay[dask]'") from None
        from refplay.study.executors import available_cpus  # lazy: with dask only
        if n_workers is not None and n_workers < 1:
            raise ValueError(f"--dask-workers={n_workers} is not allowed: use 1 or more")
        self._cluster = None
        if address == "local":
            self._cluster = distributed.LocalCluster(n_workers=n_workers or available_cpus(),
                                                     threads_per_worker=1, processes=True)
            address = self._cluster.scheduler_address
        try:
            self._client = distributed.Client(address)
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            raise

    def __enter__(self):
        return self._client.get_executor(pure=False)

    def __exit__(self, *exc):
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        return False


def _dask_executor(args):
    return _NoExecutor() if args.dask is None else _DaskExecutor(args.dask, args.dask_workers)


# ------------------------------------------------------------------ inspect
def _status(args) -> int:
    with _open(args.workspace) as store:
        store.require_study(args.name)
        print(format_status(store.status(args.name)))
    return 0


def format_status(status) -> str:
    """The text of ``refplay study status``."""
    from refplay.train.result import TrialStatus  # lazy: CLI start-up (refplay.train loads Numba)
    s = status.study
    c = status.counts
    lines = [f"study {s.name}  ({s.workload or s.trial_function})"]
    if s.description:
        lines.append(f"  description: {s.description}")
    if s.goal:
        lines.append(f"  goal:        {s.goal}")
    counted = ", ".join(f"{state} {c.get(state, 0)}" for state in TrialStatus
                        if state != TrialStatus.PRUNED or c.get(state))
    lines.append(f"  trials:      {status.done}/{s.budget} recorded ({counted}), "
                 f"{status.missing} to run")
    if s.best_value is None:
        lines.append(f"  best {s.metric} ({s.mode}): no complete trial yet")
    else:
        lines.append(f"  best {s.metric} ({s.mode}): {s.best_value:.6g} "
                     f"(trial {s.best_trial}, step {s.best_step})")
        lines.append(f"  best config: {status.best_config}")
    lines.append(f"  spec:        {s.spec_source or '-'} (stored copy: {s.spec_copy})")
    lines.append(f"  reproduce:   {s.command}")
    return "\n".join(lines)


def _list(args) -> int:
    """The tracking table, one block per study, readable in a 100-column terminal."""
    with _open(args.workspace) as store:
        rows = store.list_studies()
        baseline = store.baseline()
    if not rows:
        print(f"no studies in {args.workspace}")
        return 0
    print(format_study_list(rows, baseline))
    return 0


def format_study_list(rows, baseline=None, width: int = 100) -> str:
    """The text of ``refplay study list``: a short table, then each study's notes and command.

    The playbook's spreadsheet columns ("Setting up experiment tracking"): study
    name, config link, notes, number of trials, best validation performance,
    reproduction command.
    """
    table = [("study", "trials", "best", "metric")]
    for r in rows:
        best = "-" if r.best_value is None else f"{r.best_value:.4g} (trial {r.best_trial})"
        table.append((r.name, f"{r.trials_run}/{r.budget}", best, f"{r.metric} ({r.mode})"))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    for r in rows:
        lines.append("")
        lines.append(f"{r.name}:")
        notes = r.description or "-"
        lines += textwrap.wrap(f"notes: {notes}", width, initial_indent="  ",
                               subsequent_indent="         ")
        lines.append(f"  config: {_short_path(r.spec_copy)}")
        lines += textwrap.wrap(f"reproduce: {_short_path(r.command)}", width, initial_indent="  ",
                               subsequent_indent="    ", break_long_words=False,
                               break_on_hyphens=False)
    lines.append("")
    if baseline is None:
        lines.append("baseline: none recorded (refplay study baseline NAME TRIAL --note ...)")
    else:
        value = "-" if baseline.objective is None else f"{baseline.objective:.4g}"
        lines += textwrap.wrap(
            f"baseline: study {baseline.study}, trial {baseline.trial} ({baseline.metric} "
            f"{value}), recorded {baseline.recorded_at[:19]}"
            + (f": {baseline.note}" if baseline.note else ""), width, subsequent_indent="  ")
    return "\n".join(lines)


def _short_path(text: str) -> str:
    """Paths under the working directory shown relative to it (they are recorded absolute)."""
    return text.replace(str(Path.cwd()) + os.sep, "")


def _baseline(args) -> int:
    """Record ``TRIAL`` of ``NAME`` as the baseline; without ``TRIAL``, show the current one."""
    if args.name is not None:
        with _open(args.workspace) as store:     # refuse a bad name before writing
            store.require_study(args.name)
    if args.trial is None:
        with _open(args.workspace) as store:
            row = store.baseline()
        print(_format_baseline(row) if row is not None else
              "no baseline recorded; record one with: refplay study baseline NAME TRIAL "
              "--note WHY")
        return 0
    with _open(args.workspace, readonly=False) as store:
        row = store.set_baseline(args.name, args.trial, note=args.note)
    print(_format_baseline(row))
    return 0


def _format_baseline(row) -> str:
    value = "-" if row.objective is None else f"{row.objective:.4g}"
    return (f"baseline: study {row.study}, trial {row.trial} ({row.metric} {value})"
            + (f": {row.note}" if row.note else ""))


def _export(args) -> int:
    from refplay.study.export import export_csv  # lazy: CLI start-up
    with _open(args.workspace) as store:
        trials_path, measurements_path = export_csv(store, args.name, args.csv)
    print(f"wrote {trials_path} and {measurements_path}")
    return 0
