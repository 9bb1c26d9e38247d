"""Pinned, calibrated settings for the playbook's instability figures (4-9) on a laptop.

Playbook, "How can optimization failures be debugged and mitigated?":

    *Any workload will become unstable if the learning rate is too large.
    Instability is only an issue when it forces us to use a learning rate
    that's too small.*

Each :class:`UnstableSetup` names a workload, a stable and an unstable
variant of the same model family (model hyperparameters), the optimizer
config they share, the learning-rate grid, the step budget and the seed --
plus the numbers the calibration measured at exactly these settings
(``benchmarks/calibrate_instability.py``; write-up in ``docs/instability.md``).
Procedures import them instead of re-deriving them::

    from refplay.train import unstable
    s = unstable.WARMUP
    config = {**s.base_config, **s.unstable, "lr": s.measured["lr_star"]}

Two families of setups:

* ``TRANSFORMER_WARMUP`` / ``TRANSFORMER_EARLY_SPIKE``: a 6-block ViT on
  MNIST-1D (``mnist1d_transformer``) with Adam, Post-LN ("unstable") vs
  Pre-LN ("stable"): the playbook's own example of the mechanism
  (``benchmarks/calibrate_transformer.py``, 2 seeds, factor-2 grid);
* ``WARMUP`` / ``EARLY_SPIKE`` / ``CLIPPING``: the MNIST-1D ResNet and deep
  residual MLP tried first (``benchmarks/calibrate_instability.py``).

**Honesty.** refplay has no WideResNet, CIFAR or large Transformer. These
setups reproduce the *mechanisms* the playbook names (where the norm sits,
the initial weight scale, warmup with Adam) and the *direction* of their
effect, never the sizes of the playbook's numbers; figures drawn from them
must say so. The ``measured`` numbers are what the calibration saw on a
coarse grid (factors of :math:`\\sqrt 2` or 2), including the claims it did
*not* confirm (``claims`` and ``caveats``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from refplay.train.settings import TrialSettings

__all__ = ["UnstableSetup", "WARMUP", "EARLY_SPIKE", "CLIPPING", "TRANSFORMER_CHANGE",
           "TRANSFORMER_EARLY_SPIKE", "TRANSFORMER_WARMUP_LENGTHS", "TRANSFORMER_SCAN",
           "TRANSFORMER_WARMUP", "SETUPS", "NESTEROV", "ADAM", "ADAM_COSINE", "CHANCE_LOSS_10"]

#: The optimizer of every setup: the playbook's Figure 4 uses momentum.
NESTEROV = MappingProxyType({"optimizer": "nesterov", "gamma": 0.9})

#: The optimizer of the Transformer setups (Post-LN's need for warmup is an Adam story).
ADAM = MappingProxyType({"optimizer": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})


def _frozen(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class UnstableSetup:
    """One calibrated instability experiment (see the module docstring).

    ``workload``/``workload_options`` go to ``train.get_workload``; a trial
    config is ``{**base_config, **variant, "lr": lr}`` with ``variant`` one of
    ``stable``/``unstable`` (model hyperparameters). ``lrs`` is the sweep grid,
    ``warmup_steps`` the warmup that the warmup claims use (10 % of
    ``max_train_steps``, carved out of the budget), ``warmup_lengths`` the
    warmups a Figure 6 sweep compares, ``measured`` the calibration's numbers
    at these settings, ``figure_notes`` per figure the calibration row that
    shows its mechanism, ``claims`` per claim whether it held there and why,
    ``caveats`` what they do not show. ``seeds`` are the initializations and
    data orders a comparison is repeated over (``(seed,)`` when empty),
    ``target_lr`` the high rate a figure asks about, ``low_lr`` a rate every
    variant trains at, and ``max_final_loss`` the settings' rule for a run that
    ends collapsed (:class:`~refplay.train.settings.TrialSettings`).
    """

    name: str
    figures: tuple[str, ...]
    question: str
    workload: str
    workload_options: Mapping
    stable: Mapping
    unstable: Mapping
    base_config: Mapping
    lrs: tuple[float, ...]
    max_train_steps: int
    seed: int = 0
    warmup_steps: int = 0
    measured: Mapping = field(default_factory=dict)
    caveats: tuple[str, ...] = ()
    warmup_lengths: tuple[int, ...] = ()
    figure_notes: Mapping = field(default_factory=dict)
    claims: Mapping = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    target_lr: float | None = None
    low_lr: float | None = None
    max_final_loss: float | None = None
    names: Mapping = field(default_factory=dict)

    def label(self, variant: str) -> str:
        """How a figure names ``variant``: ``names[variant]``, else its hyperparameters."""
        return self.names.get(variant) or ", ".join(
            f"{k}={v}" for k, v in getattr(self, variant).items())

    def config(self, variant: str, lr: float, **extra) -> dict:
        """The trial config of ``variant`` ("stable" or "unstable") at ``lr``."""
        if variant not in ("stable", "unstable"):
            raise ValueError(f"variant={variant!r} is not allowed; choose 'stable' or 'unstable'")
        return {**self.base_config, **getattr(self, variant), "lr": float(lr), **extra}

    def seeded_config(self, variant: str, lr: float, seed: int, **extra) -> dict:
        """:meth:`config` with initialization and data order both from ``seed``."""
        return self.config(variant, lr, init_seed=int(seed), data_seed=int(seed), **extra)

    def run_seeds(self) -> tuple[int, ...]:
        """The seeds a comparison runs over: ``seeds``, or ``(seed,)``."""
        return tuple(self.seeds) or (self.seed,)

    def settings(self, *, eval_every: int, max_train_steps: int | None = None,
                 **changes) -> TrialSettings:
        """The trial settings of this setup: its budget and its rule for a collapsed run."""
        return TrialSettings(max_train_steps=max_train_steps or self.max_train_steps,
                             eval_every=eval_every, keep_best=0,
                             max_final_loss=self.max_final_loss, **changes)


_SQRT2_GRID = tuple(round(0.02 * 2 ** (k / 2), 6) for k in range(11))   # 0.02 ... 0.64

#: Figures 4, 6, 7a, 7b, 8 (claims CL22, CL24): LayerNorm after the residual sum
#: (post-norm, "known to cause issues") vs the default BatchNorm-inside block.
WARMUP = UnstableSetup(
    name="warmup",
    figures=("4", "6", "7a", "7b", "8"),
    question="Does a learning-rate warmup let the post-norm ResNet train at a larger learning rate?",
    workload="mnist1d_resnet",
    workload_options=_frozen({"channels": [8, 16, 32]}),
    stable=_frozen({"norm": "batch", "norm_placement": "branch"}),
    unstable=_frozen({"norm": "layer", "norm_placement": "post"}),
    base_config=NESTEROV,
    lrs=_SQRT2_GRID,
    max_train_steps=400,
    seed=0,
    warmup_steps=40,
    measured=_frozen({
        # unstable variant (post-LN), objective = best validation error over evaluations
        "lr_star": 0.04,                 # 0.0566 ties (0.050 both)
        "lr_star_warmup": 0.16,          # CL22: 4x (2.8x against the 0.0566 tie)
        "max_feasible_lr": 0.32,         # 0.453 is infeasible (NaN by step 72)
        "max_feasible_lr_warmup": 0.64,  # CL24: 0.64 / 0.04 = 16x; but 3 x lr* is feasible
                                         # even without warmup (see caveats)
        "stable_lr_star": 0.08,          # BatchNorm 'branch': warmup does not raise it
        "stable_lr_star_warmup": 0.04,
        "stable_max_feasible_lr": 0.16,  # both with and without warmup (0.32 is NaN)
        "ms_per_step_unstable": 5.4,
        "ms_per_step_stable": 3.1,
        "fig7b_5x": "complete; smoothed loss rises 1.7x above its running minimum mid-run",
        "fig7b_10x": "complete at 800 steps; mid-run rise 2.3x",
        "fig6_10x_lr": 0.453,            # infeasible without warmup, complete with 40 steps
    }),
    caveats=(
        "Calibration (full size): one seed, 400 steps, learning rates a factor sqrt(2) apart; "
        "best learning rates are known to within that factor.",
        "The playbook's claim that warmup lets a model train at 3 x its best rate, where it "
        "fails without warmup, holds only trivially here: without warmup the post-norm net "
        "already trains at up to 8 x its best rate. Warmup doubles the largest rate that "
        "trains (0.32 -> 0.64).",
        "By final training loss instead of validation error, warmup does not raise the best "
        "learning rate.",
        "The playbook's claim that warmup raises the best learning rate at least 2x depends on "
        "the grid. The best rate with warmup is an argmin over errors within one standard "
        "error of each other. With rates a factor 2 apart (the quick size) it is 0.16, 4x the "
        "best rate without warmup. With rates sqrt(2) apart (refplay reproduce fig8) 0.057 "
        "(error 0.038) edges out 0.16 (0.044), a ratio of 1.41x, so the claim does not hold "
        "there.",
        "Pre-norm in resnet1d has no final norm before the head and diverges at lr >= 0.04 "
        "(0.08 with warmup): the opposite of the playbook's pre-LN Transformer.",
    ),
)

#: Figure 5 (claim CL23): per-step vs every-100-steps view of the unstable run at ~2 x lr*.
EARLY_SPIKE = UnstableSetup(
    name="early_spike",
    figures=("5",),
    question="Does the post-norm ResNet's loss spike in a way a coarse evaluation schedule misses?",
    workload="mnist1d_resnet",
    workload_options=_frozen({"channels": [8, 16, 32]}),
    stable=_frozen({"norm": "batch", "norm_placement": "branch"}),
    unstable=_frozen({"norm": "layer", "norm_placement": "post"}),
    base_config=NESTEROV,
    lrs=(0.08,),
    max_train_steps=400,
    seed=0,
    measured=_frozen({
        "spike_lr": 0.08,                # 2 x lr* of WARMUP
        "initial_loss": 2.79,
        "spike_step": 181,               # the loss returns to 3.98 > the step-0 loss
        "spike_loss": 3.98,
        "early_ratio_first_10pct": 1.85, # max loss_t / min_{s<t} loss_s for t < 40
        "coarse_monotone": True,         # means over 100-step blocks only go down
        "final_loss": 0.127,
    }),
    caveats=(
        "The spike is mid-run (step 181 of 400), not in the first 10 % of the steps: the early "
        "ratio is 1.85x, below CL23's 2x; the coarse view misses the mid-run spike.",
    ),
)

#: Figure 9 and the clipping study: a bad initialization that warmup cannot fix.
CLIPPING = UnstableSetup(
    name="clipping",
    figures=("9",),
    question="Does clipping at the 90th percentile of a stable run's gradient norms rescue a "
             "badly initialized network?",
    workload="mnist1d_resmlp",
    workload_options=_frozen({"norm": None, "norm_placement": "none"}),
    stable=_frozen({"init_gain": 0.5}),
    unstable=_frozen({"init_gain": 0.7}),
    base_config=NESTEROV,
    lrs=(0.02, 0.04),
    max_train_steps=400,
    seed=0,
    measured=_frozen({
        "lr": 0.04,
        "reference_p90_norm": 3.10,      # the stable variant at lr 0.04
        "reference_error": 0.370,
        "unclipped_status": "infeasible",   # NaN at step 5 (loss 13.9 -> 220 -> ...)
        "clipped_status": "complete",
        "clipped_error": 0.368,
        "clipped_fraction": 0.42,
        "grad_norm_early_median": 9.3,   # steps 0-19
        "grad_norm_late_median": 3.0,    # steps 200-399
        "gain_1_clipped_fraction": 0.70, # init_gain 1.0: step-0 loss 583, norm 2840; > 50 %
        "gain_1_clipped_error": 0.43,
        "ms_per_step": 2.0,
    }),
    caveats=(
        "Without normalization, init_gain 1.0 diverges at every learning rate tried, with or "
        "without warmup; clipping then clips 70 % of the steps ('extremely aggressive').",
    ),
)

_ADAM_GRID = tuple(round(1e-3 * 2.0 ** k, 6) for k in range(-1, 6))    # 5e-4 ... 0.032
_FACTOR2_GRID = tuple(round(1e-3 * 2.0 ** k, 6) for k in range(7))      # 0.001 ... 0.064
_SQRT2_ADAM_GRID = tuple(round(2e-3 * 2.0 ** (k / 2), 6) for k in range(11))   # 0.002 ... 0.064

#: A classifier of MNIST-1D's 10 classes that ends above this training loss has collapsed to
#: chance (ln 10 = 2.30): the playbook's "uncharacteristically high values of the loss".
CHANCE_LOSS_10 = 0.9 * math.log(10)

#: Adam with a cosine decay to 0 after the warmup (the Transformer figures' schedule).
ADAM_COSINE = MappingProxyType({**ADAM, "schedule": "cosine"})

_POST, _PRE = _frozen({"norm_placement": "post"}), _frozen({"norm_placement": "pre"})
_LN_NAMES = _frozen({"unstable": "Post-LN", "stable": "Pre-LN"})

#: Figure 4 on the Transformer: the changed model (Post-LN) beside the standard one (Pre-LN).
TRANSFORMER_CHANGE = UnstableSetup(
    name="transformer_change",
    figures=("4",),
    question="Figure 4: does moving LayerNorm after the residual sum (Post-LN) make high "
             "learning rates unstable, and does warmup fix it?",
    workload="mnist1d_transformer",
    workload_options=_frozen({"depth": 4}),
    stable=_PRE, unstable=_POST, base_config=ADAM_COSINE,
    lrs=_FACTOR2_GRID, max_train_steps=500, seed=0, seeds=(0, 1), warmup_steps=50,
    low_lr=0.002, target_lr=0.016, max_final_loss=CHANCE_LOSS_10, names=_LN_NAMES,
    caveats=(
        "Full size, seeds 0 / 1: at 0.016 Post-LN 0.438 / 0.406 against Pre-LN 0.338 / 0.264; "
        "with a 50-step warmup 0.212 / 0.204; Post-LN collapses from 0.032, Pre-LN never. "
        "Post-LN is already worse at 0.002 (0.240 / 0.266 against 0.190 / 0.176).",
        "The changed model fails by a collapse to chance (infeasible under max_final_loss), "
        "not by the playbook's blow-up of the loss.",
    ),
)

#: Figure 5 on the Transformer: Figure 4's two models at the first rate where the changed one
#: fails, evaluated every step early on.
TRANSFORMER_EARLY_SPIKE = UnstableSetup(
    name="transformer_early_spike",
    figures=("5",),
    question="Figure 5: does evaluating every step early on show what evaluating every 50 "
             "steps hides?",
    workload="mnist1d_transformer",
    workload_options=_frozen({"depth": 4}),         # Figure 4's two models
    stable=_PRE, unstable=_POST, base_config=ADAM_COSINE,
    lrs=(0.032,), max_train_steps=500, seed=0, seeds=(0, 1), target_lr=0.032,
    max_final_loss=CHANCE_LOSS_10, names=_LN_NAMES,
    caveats=(
        "Full size: the every-step view shows rises of 1.0-1.4x in the first 2 steps (which "
        "model rises more depends on the seed), not the playbook's 20x; Post-LN then "
        "collapses to chance for good, Pre-LN learns.",
    ),
)

#: Figure 6 on the Transformer: Post-LN at a high rate after warmups of several lengths.
TRANSFORMER_WARMUP_LENGTHS = UnstableSetup(
    name="transformer_warmup_lengths",
    figures=("6",),
    question="Figure 6: when does the Post-LN Transformer fail during a warmup to a high rate?",
    workload="mnist1d_transformer",
    workload_options=_frozen({"depth": 6}),
    stable=_PRE, unstable=_POST, base_config=ADAM,
    lrs=(0.002, 0.032), max_train_steps=500, seed=0, seeds=(0, 1),
    warmup_lengths=(0, 25, 50, 100, 200, 400), target_lr=0.032, low_lr=0.002,
    max_final_loss=CHANCE_LOSS_10, names=_LN_NAMES,
    caveats=(
        "Full size: on both seeds every warmup up to 400 of 500 steps fails, each later than "
        "the shorter ones (seed 0: steps 0, 16, 24, 56, 131, 188); the ramp's rate at failure "
        "falls from 0.032 to 0.013 as the warmups lengthen. No warmup trains 0.032.",
    ),
)

#: Figure 7 on the Transformer: Post-LN with a 10 % warmup, swept on a sqrt(2) grid.
TRANSFORMER_SCAN = UnstableSetup(
    name="transformer_scan",
    figures=("7a", "7b"),
    question="Figure 7: does instability cap the Post-LN Transformer's learning rate?",
    workload="mnist1d_transformer",
    workload_options=_frozen({"depth": 6}),
    stable=_PRE, unstable=_POST, base_config=_frozen({**ADAM_COSINE, "warmup_steps": 50}),
    lrs=_SQRT2_ADAM_GRID, max_train_steps=500, seed=0, max_final_loss=CHANCE_LOSS_10,
    names=_LN_NAMES,
    caveats=(
        "Full size, seed 0: errors 0.172-0.246 from 0.002 to 0.011, 0.348 at 0.016, 0.466 at "
        "0.023, collapsed from 0.032: lr* = 0.008 is the best of a flat stretch a factor 4 "
        "below the first collapse, and the boundary check says ok, not instability_limited. "
        "At 5 x and 10 x lr* the loss declines ~25 steps, then climbs back to chance.",
    ),
)

#: Figure 8 on the Transformer: Post-LN and Pre-LN, each with and without a 10 % warmup.
TRANSFORMER_WARMUP = UnstableSetup(
    name="transformer_warmup",
    figures=("8",),
    question="Figure 8: does warmup let the 6-block Transformer use a larger learning rate, "
             "Post-LN more than Pre-LN?",
    workload="mnist1d_transformer",
    workload_options=_frozen({"depth": 6}),
    stable=_PRE, unstable=_POST, base_config=ADAM_COSINE,
    lrs=_FACTOR2_GRID[:6], max_train_steps=500, seed=0, seeds=(0, 1), warmup_steps=50,
    max_final_loss=CHANCE_LOSS_10, names=_LN_NAMES,
    measured=_frozen({"lr_star": (0.002, 0.002), "lr_star_warmup": (0.008, 0.008),
                      "stable_lr_star": (0.002, 0.004), "stable_lr_star_warmup": (0.008, 0.008)}),
    caveats=(
        "Full size, seeds 0 / 1: warmup moves lr* 0.002 -> 0.008 for Post-LN (4x, 4x) and for "
        "Pre-LN (4x, 2x): Pre-LN gains as much. Post-LN collapses at 0.032 with and without "
        "warmup; whether it collapses at 0.016 without warmup turns on rounding (it did in a "
        "run with other kernels); Pre-LN trains at every rate either way.",
    ),
)

SETUPS = {s.name: s for s in (WARMUP, EARLY_SPIKE, CLIPPING, TRANSFORMER_CHANGE,
                               TRANSFORMER_EARLY_SPIKE, TRANSFORMER_WARMUP_LENGTHS,
                               TRANSFORMER_SCAN, TRANSFORMER_WARMUP)}
