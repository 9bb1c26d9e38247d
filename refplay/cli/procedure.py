"""``refplay procedure NAME --workload W [options]``: run a playbook procedure, print its answer.

Each subcommand runs one procedure of :mod:`refplay.procedures`: it prints a
header first, shows the trials as they finish (a bar in a terminal, one line
per trial otherwise), then the question, decision, numbers and caveats
(``ProcedureResult.summary``) and where its figures and numbers went (default
``runs/procedures/<name>/``). ``--quick`` runs the small size the slow tests use.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import NamedTuple

from refplay.cli.study import DEFAULT_WORKSPACE

__all__ = ["register", "PROCEDURES", "Procedure"]


class Procedure(NamedTuple):
    """One ``refplay procedure`` subcommand: the function it runs and its defaults."""

    module: str                 # under refplay.procedures
    function: str
    workload: str | None        # None: the calibrated setup of refplay/train/unstable.py
    help: str
    runs_studies: bool = True   # False: measures in-process (no workspace, workers, seed)
    seeded: bool = True         # False: its studies fix their own seeds (no --seed; the
                                # Transformer figures run over their setup's seeds)


PROCEDURES = {
    "search-space": Procedure(
        module="boundaries", function="search_space_boundaries", workload="mnist1d_cnn",
        help=(
            "is the learning-rate range wide enough, or is the best trial at "
            "its edge? (Figure 1)"),
        seeded=False),
    "isolation": Procedure(
        module="isolation", function="isolation_study", workload="mnist1d_mlp",
        help=(
            "which weight decay is best, the learning rate tuned away; exact and "
            "bucketed isolation plots (Figure 2)"),
        seeded=False),
    "trials-needed": Procedure(
        module="trial_budget", function="trials_needed", workload="mnist1d_cnn",
        help=(
            "how many quasi-random trials are enough? the best of N "
            "(Figure 3)"),
        seeded=False),
    "initial-steps": Procedure(
        module="step_budget", function="initial_max_train_steps", workload="mnist1d_mlp",
        help="initial max_train_steps from a constant-learning-rate sweep"),
    "batch-throughput": Procedure(
        module="batch_size", function="batch_throughput", workload="mnist1d_mlp",
        help=(
            "throughput and memory against batch size; the largest "
            "useful batch"),
        runs_studies=False),
    "steps-to-result": Procedure(
        module="batch_size", function="steps_to_result", workload="mnist1d_mlp",
        help="steps to a target against batch size, learning rate retuned"),
    "batch-fair": Procedure(
        module="batch_size", function="batch_size_fair_comparison", workload="mnist1d_mlp",
        help="fixed vs retuned learning rate across batch sizes"),
    "retrain-variance": Procedure(
        module="variance", function="retrain_variance", workload="mnist1d_cnn",
        help="trial variance by seed stream"),
    "split-variance": Procedure(
        module="variance", function="split_variance", workload="mnist1d_mlp",
        help="variance across random validation splits"),
    "study-variance": Procedure(
        module="variance", function="study_variance", workload="mnist1d_mlp",
        help="variance of the best trial across sampler seeds"),
    "two-rounds": Procedure(module="rounds", function="two_rounds", workload="mnist1d_cnn",
                            help="compute-bound Round 1 / Round 2 and ranking transfer"),
    "schedule-family": Procedure(
        module="schedules_family", function="schedule_family", workload="mnist1d_cnn",
        help="constant vs decaying schedules, learning rate tuned per family"),
    "gradient-noise": Procedure(
        module="noise", function="gradient_noise_steps", workload="mnist1d_mlp",
        help="steps to a training-loss target against dropout and batch size"),
    "model-change": Procedure(
        module="model_change", function="model_change_study", workload=None,
        help="two models swept over the learning rate, the changed one rescued by warmup "
             "(Figure 4)", seeded=False),
    "frequent-evals": Procedure(
        module="frequent_evals", function="frequent_evals", workload=None,
        help="two models evaluated every step early and every 50 steps after (Figure 5)",
        seeded=False),
    "early-instability": Procedure(
        module="instability", function="early_instability_check", workload=None,
        help="every-step vs every-100-steps view of one run at 2x lr*"),
    "warmup": Procedure(module="warmup", function="warmup_study", workload=None,
                        help="warmups of several lengths at a ~10x learning rate: where each "
                             "fails, the shortest that trains, prepended vs baseline (Figure 6)",
                        seeded=False),
    "stability-scan": Procedure(module="instability", function="stability_scan", workload=None,
                                help="learning-rate sweep, lr*, and runs at 2x/5x/10x lr* "
                                "(Figures 7a, 7b)"),
    "warmup-effect": Procedure(
        module="warmup_effect", function="warmup_effect", workload=None,
        help="learning-rate sweeps with and without warmup, Post-LN and Pre-LN (Figure 8)",
        seeded=False),
    "clipping": Procedure(module="clipping", function="clipping_study", workload=None,
                          help="clipping thresholds from a stable run's gradient norms (Figure 9)"),
}

REFINE_HELP = ("is max_train_steps right? the best-step fractions of a finished study "
               "(too long / train longer / ok)")
ADOPT_HELP = ("adopt the candidate? Welch's test on the objectives of two studies of retrains "
              "(the effect, its 95 percent interval, the decision)")


def register(sub) -> None:
    """Add ``refplay procedure`` and one subcommand per procedure to the subparsers ``sub``."""
    parser = sub.add_parser("procedure", help="run a playbook procedure and print its decision",
                            description="Run a playbook procedure: print the question, the "
                                        "decision, the numbers and where the figures went.")
    commands = parser.add_subparsers(dest="procedure", metavar="NAME")
    commands.required = True
    _add_refine(commands)
    _add_adopt(commands)
    for name, procedure in PROCEDURES.items():
        _add_procedure(commands, name, procedure)


def _add_refine(commands) -> None:
    p = commands.add_parser("refine-steps", help=REFINE_HELP, description=REFINE_HELP)
    p.add_argument("study", help="the name of a finished study")
    p.add_argument("--workspace", default=DEFAULT_WORKSPACE,
                   help=f"the study's workspace (default: ./{DEFAULT_WORKSPACE})")
    p.add_argument("--out", default=None,
                   help="where the figure and numbers go (default: runs/procedures/refine-steps/)")
    p.set_defaults(func=_refine)


def _add_adopt(commands) -> None:
    p = commands.add_parser("adopt", help=ADOPT_HELP, description=ADOPT_HELP)
    p.add_argument("candidate", help="study of the candidate's retrains (one config, repeats)")
    p.add_argument("baseline", help="study of the baseline's retrains")
    p.add_argument("--workspace", default=DEFAULT_WORKSPACE,
                   help=f"the studies' workspace (default: ./{DEFAULT_WORKSPACE})")
    p.add_argument("--min-effect", type=float, default=0.0,
                   help="the smallest improvement worth the added complexity (default 0)")
    p.set_defaults(func=_adopt)


def _add_procedure(commands, name: str, procedure: Procedure) -> None:
    p = commands.add_parser(name, help=procedure.help, description=procedure.help)
    default = procedure.workload or "the calibrated one, see refplay/train/unstable.py"
    p.add_argument("--workload", default=procedure.workload,
                   help=f"the workload to run on (default: {default})")
    p.add_argument("--quick", action="store_true",
                   help="the small size used by the slow tests (some procedures then "
                        "choose their own small workload)")
    p.add_argument("--out", default=None,
                   help=f"where figures and numbers go (default: runs/procedures/{name}/)")
    if procedure.runs_studies:
        p.add_argument("--workers", type=int, default=0,
                       help="worker processes for the trials (default 0: in this process)")
        p.add_argument("--workspace", default=None,
                       help="study workspace (default: runs/procedures)")
        if procedure.seeded:
            p.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
    p.set_defaults(func=_run, procedure_name=name)


def _refine(args: argparse.Namespace) -> int:
    from refplay import analysis  # lazy: CLI start-up (matplotlib, Numba)
    from refplay.procedures.step_budget import refine_max_train_steps  # lazy: CLI start-up
    from refplay.study.store import Store  # lazy: CLI start-up (Numba)
    with Store(args.workspace, readonly=True) as store:
        store.require_study(args.study)
        frame = analysis.load(store, args.study)
    return _report(refine_max_train_steps(frame), args.out or "runs/procedures/refine-steps")


def _adopt(args: argparse.Namespace) -> int:
    from refplay.analysis.objective import complete_objectives  # lazy: CLI start-up (Numba)
    from refplay.procedures.variance import adopt  # lazy: CLI start-up
    from refplay.study.store import Store  # lazy: CLI start-up (Numba)
    objectives = {}
    with Store(args.workspace, readonly=True) as store:
        for role in ("candidate", "baseline"):
            name = getattr(args, role)
            store.require_study(name)
            objectives[role] = complete_objectives(store.trials(name))
    result = adopt(objectives["candidate"], objectives["baseline"], min_effect=args.min_effect)
    print(f"candidate {args.candidate}: {len(objectives['candidate'])} complete retrains; "
          f"baseline {args.baseline}: {len(objectives['baseline'])}")
    print(result.message)
    return 0


def _run(args: argparse.Namespace) -> int:
    procedure = PROCEDURES[args.procedure_name]
    # lazy: CLI start-up (the trainer, Numba and matplotlib load only for the one procedure run)
    module = importlib.import_module(f"refplay.procedures.{procedure.module}")
    kwargs = {"quick": args.quick, "workload": args.workload}
    if procedure.runs_studies:
        kwargs.update(workers=args.workers, workspace=args.workspace)
    if procedure.runs_studies and procedure.seeded:
        kwargs["seed"] = args.seed
    print(f"== refplay procedure {args.procedure_name}: {procedure.help}"
          + (" [quick]" if args.quick else ""), flush=True)
    result = getattr(module, procedure.function)(**kwargs)
    return _report(result, args.out or Path("runs") / "procedures" / args.procedure_name)


def _report(result, out) -> int:
    """Print the question, decision, numbers and caveats; save the figures and numbers."""
    out = Path(out)
    paths = result.save_figures(out)
    numbers = result.save_numbers(out / "numbers.json")
    print(result.summary())
    print("Figures:")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(f"Numbers: {numbers}")
    return 0
