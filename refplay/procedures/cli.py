"""``refplay procedure NAME --workload W [options]``: run a playbook procedure, print its answer.

Each subcommand runs one procedure of :mod:`refplay.procedures` and prints
its question, decision, numbers and caveats (``ProcedureResult.summary``),
then where its figures and numbers went (default ``runs/procedures/<name>/``).
``--quick`` runs the small size the slow tests use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "PROCEDURES"]

# name -> (module, function, default workload, help)
PROCEDURES = {
    "initial-steps": ("step_budget", "initial_max_train_steps", "mnist1d_mlp",
                      "initial max_train_steps from a constant-learning-rate sweep"),
    "batch-throughput": ("batch_size", "batch_throughput", "mnist1d_mlp",
                         "throughput and memory against batch size; the largest useful batch"),
    "steps-to-result": ("batch_size", "steps_to_result", "mnist1d_mlp",
                        "steps to a target against batch size, learning rate retuned"),
    "batch-fair": ("batch_size", "batch_size_fair_comparison", "mnist1d_mlp",
                   "fixed vs retuned learning rate across batch sizes"),
    "retrain-variance": ("variance", "retrain_variance", "mnist1d_cnn",
                         "trial variance by seed stream"),
    "split-variance": ("variance", "split_variance", "mnist1d_mlp",
                       "variance across random validation splits"),
    "study-variance": ("variance", "study_variance", "mnist1d_mlp",
                       "variance of the best trial across sampler seeds"),
    "two-rounds": ("rounds", "two_rounds", "mnist1d_cnn",
                   "compute-bound Round 1 / Round 2 and ranking transfer"),
    "schedule-family": ("schedules_family", "schedule_family", "mnist1d_cnn",
                        "constant vs decaying schedules, learning rate tuned per family"),
    "gradient-noise": ("noise", "gradient_noise_steps", "mnist1d_mlp",
                       "steps to a training-loss target against dropout and batch size"),
    # The instability procedures default to the calibrated setups of refplay/train/unstable.py
    # (workload None).
    "stability-scan": ("instability", "stability_scan", None,
                       "learning-rate sweep, lr*, and runs at 2x/5x/10x lr* (Figures 7a, 7b)"),
    "early-instability": ("instability", "early_instability_check", None,
                          "every-step vs every-100-steps view of one run at 2x lr* (Figure 5)"),
    "warmup": ("warmup", "warmup_study", None,
               "shortest warmup that trains a ~10x learning rate; prepended vs baseline "
               "(Figures 6, 8)"),
    "clipping": ("clipping", "clipping_study", None,
                 "clipping thresholds from a stable run's gradient norms (Figure 9)"),
}
# Procedures that run trials in a workspace (batch-throughput times in-process instead).
_STUDY_PROCEDURES = tuple(n for n in PROCEDURES if n != "batch-throughput")


def register(sub) -> None:
    parser = sub.add_parser("procedure", help="run a playbook procedure and print its decision",
                            description="Run a playbook procedure: print the question, the "
                                        "decision, the numbers and where the figures went.")
    commands = parser.add_subparsers(dest="procedure", metavar="NAME")
    commands.required = True
    p = commands.add_parser("refine-steps", help=REFINE_HELP, description=REFINE_HELP)
    p.add_argument("study", help="the name of a finished study")
    p.add_argument("--workspace", default="refplay-workspace",
                   help="the study's workspace (default: ./refplay-workspace)")
    p.add_argument("--out", default=None,
                   help="where the figure and numbers go (default: runs/procedures/refine-steps/)")
    p.set_defaults(func=_refine)
    p = commands.add_parser("adopt", help=ADOPT_HELP, description=ADOPT_HELP)
    p.add_argument("candidate", help="study of the candidate's retrains (one config, repeats)")
    p.add_argument("baseline", help="study of the baseline's retrains")
    p.add_argument("--workspace", default="refplay-workspace",
                   help="the studies' workspace (default: ./refplay-workspace)")
    p.add_argument("--min-effect", type=float, default=0.0,
                   help="the smallest improvement worth the added complexity (default 0)")
    p.set_defaults(func=_adopt)
    for name, (_, _, workload, help_text) in PROCEDURES.items():
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--workload", default=workload,
                       help=f"the workload to run on (default: "
                            f"{workload or 'the calibrated one, see refplay/train/unstable.py'})")
        p.add_argument("--quick", action="store_true",
                       help="the small size used by the slow tests (some procedures then "
                            "choose their own small workload)")
        p.add_argument("--out", default=None,
                       help=f"where figures and numbers go (default: runs/procedures/{name}/)")
        if name in _STUDY_PROCEDURES:
            p.add_argument("--workers", type=int, default=0,
                           help="worker processes for the trials (default 0: in this process)")
            p.add_argument("--workspace", default=None,
                           help="study workspace (default: runs/procedures)")
            p.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
        p.set_defaults(func=_run, procedure_name=name)


REFINE_HELP = ("is max_train_steps right? the best-step fractions of a finished study "
               "(too long / train longer / ok)")


def _refine(args: argparse.Namespace) -> int:
    from refplay import analysis  # lazy: keeps `refplay --help` from loading matplotlib
    from refplay.procedures.step_budget import refine_max_train_steps
    from refplay.study.store import Store
    with Store(args.workspace, readonly=True) as store:
        store.require_study(args.study)
        frame = analysis.load(store, args.study)
    return _report(refine_max_train_steps(frame), args.out or "runs/procedures/refine-steps")


ADOPT_HELP = ("adopt the candidate? Welch's test on the objectives of two studies of retrains "
              "(the effect, its 95 percent interval, the decision)")


def _adopt(args: argparse.Namespace) -> int:
    from refplay.procedures.variance import adopt
    from refplay.study.store import Store
    objectives = {}
    with Store(args.workspace, readonly=True) as store:
        for role in ("candidate", "baseline"):
            name = getattr(args, role)
            store.require_study(name)
            objectives[role] = [t.objective for t in store.trials(name) if t.status == "complete"]
    result = adopt(objectives["candidate"], objectives["baseline"], min_effect=args.min_effect)
    print(f"candidate {args.candidate}: {len(objectives['candidate'])} complete retrains; "
          f"baseline {args.baseline}: {len(objectives['baseline'])}")
    print(result.message)
    return 0


def _run(args: argparse.Namespace) -> int:
    import importlib  # lazy: keeps `refplay --help` from loading the trainer and matplotlib
    module, function, _, _ = PROCEDURES[args.procedure_name]
    fn = getattr(importlib.import_module(f"refplay.procedures.{module}"), function)
    kwargs = {"quick": args.quick, "workload": args.workload}
    if args.procedure_name in _STUDY_PROCEDURES:
        kwargs.update(workers=args.workers, workspace=args.workspace, seed=args.seed)
    result = fn(**kwargs)
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
