"""``refplay study ...``: run, resume, inspect and export studies.

::

    refplay study run SPEC.toml [--workers N | --dask ADDRESS] [--workspace DIR]
    refplay study resume NAME   [--workers N | --dask ADDRESS] [--workspace DIR]
    refplay study status NAME   [--workspace DIR]
    refplay study list          [--workspace DIR]
    refplay study export NAME --csv FILE [--workspace DIR]
    refplay study report NAME [--out DIR] [--workspace DIR]

``run`` and ``resume`` end by printing the best trial per scientific value
and writing the report (``--no-report`` skips it).

``--dask ADDRESS`` sends trials to the Dask scheduler at ADDRESS (e.g.
``tcp://10.0.0.5:8786``; its workers need refplay installed and must see the
workspace directory); ``--dask local`` starts a ``LocalCluster`` with
``--dask-workers`` single-threaded worker processes (default: one per CPU).

The reproduction command recorded for a study is ``refplay study run`` on the
*stored copy* of its spec (``WORKSPACE/NAME/spec.toml`` or ``.json``), which keeps working
after the original spec file is edited for the next round.
"""

from __future__ import annotations

import shlex
import sys

DEFAULT_WORKSPACE = "refplay-workspace"


def register(sub) -> None:
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

    def add_run_options(p) -> None:
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

    p = add("run", "run a study from its spec file (resumes it if it exists)", _run)
    p.add_argument("spec", help="study spec, a .toml (or .json) file")
    add_run_options(p)

    p = add("resume", "run the trials of a recorded study that have no result yet", _resume)
    p.add_argument("name", help="study name")
    add_run_options(p)

    p = add("status", "show a study's progress and best trial", _status)
    p.add_argument("name", help="study name")

    add("list", "the tracking table: every study of the workspace", _list)

    p = add("report", "write a study's report: Markdown, self-contained HTML and PNGs", _report)
    p.add_argument("name", help="study name")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: WORKSPACE/NAME/report)")

    p = add("export", "write a study's trials and measurements as CSV", _export)
    p.add_argument("name", help="study name")
    p.add_argument("--csv", required=True, metavar="FILE",
                   help="trials CSV (measurements go to FILE_measurements.csv)")


# ------------------------------------------------------------------ run / resume
def _run(args) -> int:
    from refplay.study.spec import StudySpec
    return _run_spec(StudySpec.load(args.spec), args)


def _resume(args) -> int:
    from refplay.study.store import Store
    with Store(args.workspace, readonly=True) as store:
        spec = store.get_spec(args.name)
    return _run_spec(spec, args)


def _run_spec(spec, args) -> int:
    from refplay.study import runner
    from refplay.study.store import Store
    progress = False if args.quiet else None
    if args.dask_workers is not None and args.dask != "local":
        raise ValueError("--dask-workers goes with --dask local")
    # Every check that can fail comes before the database is created and a
    # cluster started: a typo in the spec leaves nothing behind.
    if spec.workload is None:
        raise ValueError(f"study {spec.name!r} runs a custom trial function (no workload); run "
                         f"or resume it from Python with refplay.study.run(spec, store=..., "
                         f"trial_fn=...)")
    runner.WorkloadTrial.from_spec(spec).check_configs(spec.sampled_configs)
    try:
        with Store(args.workspace) as store, _dask_executor(args) as executor:
            # command=None: the runner records `refplay study run` on the stored copy.
            status = runner.run(spec, store=store, executor=executor,
                                workers=None if executor is not None else args.workers,
                                time_limit=args.time_limit, progress=progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are recorded; continue with\n"
              f"  refplay study resume {spec.name} --workspace {shlex.quote(args.workspace)}",
              file=sys.stderr)
        return 130
    except runner.StudyError as exc:
        print(f"refplay: error: {exc}", file=sys.stderr)
        return 1
    print(format_status(status))
    if not args.no_report:
        print(_summary_and_report(args.workspace, spec.name, None))
    return 0


def _summary_and_report(workspace: str, name: str, out: str | None) -> str:
    """The best per scientific value, the study's answer, and where the report went."""
    from refplay import analysis, report  # lazy: matplotlib, only when a report is written
    from refplay.study.store import Store
    with Store(workspace, readonly=True) as store:
        text = report.summary_table(analysis.load(store, name))
        written = report.write_report(store, name, out)
    return f"{text}\nreport: {written.html} (and {written.markdown.name}, PNGs)"


def _report(args) -> int:
    from refplay.study.store import Store
    with Store(args.workspace, readonly=True) as store:
        store.require_study(args.name)
    print(_summary_and_report(args.workspace, args.name, args.out))
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
            import distributed
        except ImportError:
            raise ValueError("--dask needs dask.distributed: pip install 'refplay[dask]'") from None
        from refplay.study.executors import available_cpus
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
    from refplay.study.store import Store
    with Store(args.workspace, readonly=True) as store:
        store.require_study(args.name)
        print(format_status(store.status(args.name)))
    return 0


def format_status(status) -> str:
    """The text of ``refplay study status``."""
    s = status.study
    c = status.counts
    lines = [f"study {s.name}  ({s.workload or s.trial_function})"]
    if s.description:
        lines.append(f"  description: {s.description}")
    if s.goal:
        lines.append(f"  goal:        {s.goal}")
    lines.append(f"  trials:      {status.done}/{s.budget} recorded (complete {c['complete']}, "
                 f"infeasible {c['infeasible']}, failed {c['failed']}), {status.missing} to run")
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
    from refplay.study.store import Store
    with Store(args.workspace, readonly=True) as store:
        rows = store.list_studies()
    if not rows:
        print(f"no studies in {args.workspace}")
        return 0
    table = [("study", "trials", "best", "metric", "description", "config", "reproduce")]
    for r in rows:
        best = "-" if r.best_value is None else f"{r.best_value:.4g} (trial {r.best_trial})"
        table.append((r.name, f"{r.trials_run}/{r.budget}", best, f"{r.metric} ({r.mode})",
                      r.description or "-", r.spec_copy, r.command))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _export(args) -> int:
    from refplay.study.export import export_csv
    from refplay.study.store import Store
    with Store(args.workspace, readonly=True) as store:
        trials_path, measurements_path = export_csv(store, args.name, args.csv)
    print(f"wrote {trials_path} and {measurements_path}")
    return 0
