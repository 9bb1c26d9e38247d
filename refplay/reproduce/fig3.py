"""Figure 3: how many trials are needed to get good results with quasi-random search?

The playbook's Figure 3 shows box plots of the best of N of 100 ResNet-50
trials on ImageNet, bootstrapped, for N = 6 ... 20. The laptop analogue is
:func:`refplay.procedures.trial_budget.trials_needed` (its docstring quotes the
playbook): one 100-trial Halton study on ``mnist1d_cnn``, 2,000 steps, 1,000
validation examples, the best of N exactly (order statistics) and by
bootstrap; the plot shows the bootstrap, as the playbook does.

Claim CL11 is checked on the exact quantiles (no Monte-Carlo noise):
IQR(6) / IQR(20) > 2, medians non-increasing in N, and the lower whisker
constant and equal to the best of all trials. The last two hold for any study
by construction (they are properties of the best of N draws); the IQR ratio
is the number that could fail. The spread of lucky vs unlucky 20-trial
studies against the retrain standard deviation (claim CL12) is reported, not
part of the pass criterion.
"""

from __future__ import annotations

from refplay.procedures import trial_budget
from refplay.reproduce.base import Check, Entry, Panel, Upstream

__all__ = ["ENTRY", "CAVEAT", "check"]

CAVEAT = ("Laptop analogue: MNIST-1D CNN, Nesterov, {steps:,} steps, {n} Halton trials, "
          "1,000 validation examples (the playbook: 100 ResNet-50 trials on ImageNet). It "
          "reproduces how the spread of the best of N shrinks with N, not ImageNet's error rates.")


def check(result) -> Check:
    """Claim: IQR(6) / IQR(20) > 2, medians non-increasing, the lower whisker constant."""
    n = result.numbers
    numbers = {"iqr_ratio": n["iqr_ratio"], "medians_non_increasing": n["medians_non_increasing"],
               "min_whisker_constant": n["min_whisker_constant"], "best_of_all": n["best_of_all"]}
    return Check(holds=(n["iqr_ratio"] > 2.0 and n["medians_non_increasing"]
                        and n["min_whisker_constant"]), numbers=numbers)


def _caveat(size) -> str:
    return CAVEAT.format(steps=size.max_train_steps, n=size.num_trials)


ENTRY = Entry(
    full_time="97 s",   # reproduce all --jobs 1 --workers 2, empty workspace, load ~2
    quick_time="5 s",   # reproduce all --quick --jobs 1 --workers 2, load ~2
    id="fig3",
    title="Best of N trials, bootstrapped from one 100-trial study",
    section="How many trials are needed to get good results with quasi-random search?",
    anchor="how-many-trials-are-needed-to-get-good-results-with-quasi-random-search",
    upstream=(Upstream("have_we_sampled_enough.png",
                       "the playbook's text links this file, which is missing from its assets "
                       "folder (the link is broken)", broken=True),
              Upstream("validation_error_vs_num_trials.png",
                       "the same figure, as it exists in the assets folder")),
    claim_id="CL11",
    claim=("The interquartile range of the best of N trials is wide at N = 6 and narrow at "
           "N = 20: IQR(6) / IQR(20) > 2, medians non-increasing in N, and the lower whisker "
           "constant (the best of all trials)."),
    caveat=_caveat(trial_budget.SIZES["full"]), quick_caveat=_caveat(trial_budget.SIZES["quick"]),
    procedure=trial_budget.trials_needed, arguments={"prefix": "fig3"}, check=check,
    panels=(Panel(name="boxes", key="boxes", file="fig3_best_of_n.png"),))
