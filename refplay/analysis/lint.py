"""Role lint: hyperparameter roles the playbook warns about.

* *"the optimizer hyperparameters (e.g. the learning rate, momentum, Adam
  parameters) [...] are nuisance hyperparameters"* when the optimizer is the
  scientific hyperparameter; fixing one of them instead means *"fixed
  hyperparameters create caveats for any conclusions we draw"* — a fixed
  learning rate in an optimizer comparison is a comparison at one arbitrary
  learning rate;
* *"The batch size should not be treated as a tunable hyperparameter for
  validation set performance"* ("Choosing the batch size"): a searched
  nuisance ``batch_size`` is a warning;
* a regularization strength marked scientific: overfitting of the weakly
  regularized trials *"would not be surprising"*, so the overfitting check
  of the best trials reads differently (a note, not a warning).
"""

from __future__ import annotations

from typing import NamedTuple

from refplay.search.space import Fixed

__all__ = ["LintWarning", "role_lint", "OPTIMIZER_HPARAMS", "REGULARIZERS"]

OPTIMIZER_HPARAMS = ("lr", "learning_rate", "gamma", "momentum", "rho", "beta1", "beta2", "eps",
                     "warmup_steps", "decay_steps")
REGULARIZERS = ("weight_decay", "dropout", "label_smoothing")


class LintWarning(NamedTuple):
    """A role the playbook warns about: its kind, the parameter and the explanation."""

    kind: str          # "fixed_optimizer_hparam" | "batch_size_searched" | "regularizer_scientific"
    parameter: str
    message: str


def role_lint(space) -> tuple[LintWarning, ...]:
    """Warnings about the roles of ``space``'s parameters (empty for ``None``)."""
    if space is None:
        return ()
    out = []
    keys = {name: name.rsplit("/", 1)[-1] for name in space}
    optimizer_scientific = any(keys[n] == "optimizer" for n in space.scientific())
    for name in space:
        p, key = space[name], keys[name]
        if optimizer_scientific and isinstance(p, Fixed) and key in OPTIMIZER_HPARAMS:
            out.append(LintWarning(
                "fixed_optimizer_hparam", name,
                f"{name} is fixed at {p.value!r} while the optimizer is scientific: optimizer "
                f"hyperparameters are nuisance hyperparameters of that comparison, so the "
                f"answer holds only for {key}={p.value!r}"))
        if key == "batch_size" and not isinstance(p, Fixed) and p.role == "nuisance":
            out.append(LintWarning(
                "batch_size_searched", name,
                f"{name} is searched as a nuisance hyperparameter: the playbook says the batch "
                f"size should not be tuned for validation performance (choose it for training "
                f"speed, then retune the optimizer for it)"))
        if key in REGULARIZERS and p.role == "scientific":
            out.append(LintWarning(
                "regularizer_scientific", name,
                f"{name} is scientific: overfitting in its weakly regularized trials is "
                f"expected, not a reason to add regularization"))
    return tuple(out)
