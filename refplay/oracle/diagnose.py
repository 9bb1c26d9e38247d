r"""Say *what* is wrong with an optimizer step: which known form it computes instead.

When your trajectory departs from the reference, :func:`diagnose` replays
every suspect on the gradients *your* step received (open loop, so a suspect
that computes what your step computes reproduces your iterates to rounding)
and reports the one that matches:

1. the rule's other forms (:mod:`refplay.oracle.neighbours`: the torch/optax
   form of Adam, ε inside the root, the bias correction on m only or one step
   ahead, torch's RMSProp, Dozat's NAdam, ...), the sign flipped, the learning
   rate one step late, the other kind of weight decay or none;
2. the reference with one hyperparameter set to another common value
   (β₂ = 0.99 for 0.999, ε = 1e-7 for 1e-8, ...).

Leaves are replayed separately, so a bug on one parameter array (a wrong β₂
for one leaf) is found on that leaf while the others agree.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from refplay.oracle import neighbours

__all__ = ["Candidate", "Match", "Diagnosis", "candidates", "diagnose", "COMMON_VALUES"]

#: Values a hyperparameter is often set to (or mistyped as); tried in stage 2.
COMMON_VALUES = {
    "beta1": (0.0, 0.1, 0.5, 0.8, 0.9, 0.95, 0.99),
    "beta2": (0.001, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999),
    "gamma": (0.0, 0.5, 0.8, 0.9, 0.95, 0.99),
    "rho": (0.9, 0.95, 0.99, 0.999),
    "eps": (0.0, 1e-16, 1e-12, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    "weight_decay": (0.0, 1e-4, 1e-3, 1e-2, 0.1),
}

_HINTS = {
    ("adam", "torch"): "The playbook adds ε to √v before the bias correction; at eps=0 the "
                       "two forms agree, so compare with eps=0 to check the rest of your step.",
    ("adam", "playbook"): "The playbook's form adds ε to √v before the bias correction; "
                          "torch/optax add it after.",
    ("rmsprop", "torch"): "The playbook starts from v_0 = 1, puts ε inside the root and η "
                          "inside the momentum buffer.",
    ("nadam", "torch"): "No torch setting gives the playbook's NAdam (docs/oracle.md#nadam).",
}


class Candidate(NamedTuple):
    """A suspect: a form of the rule with hyperparameters, possibly mutated.

    ``kind`` is ``"playbook"``, ``"variant"``, ``"mistake"`` or ``"hparam"``;
    ``mutation`` is ``None``, ``"sign_flip"`` or ``"lr_late"``; ``hparam`` names
    the hyperparameter a stage-2 candidate changed.
    """

    rule: str
    says: str
    kind: str
    form: str
    hparams: dict
    mutation: str | None
    found_in: str
    hint: str
    hparam: str | None = None

    def build(self):
        """The optimizer this candidate computes (``init``/``update``)."""
        opt = neighbours.build(self.rule, self.hparams, self.form)
        return {"sign_flip": _SignFlip, "lr_late": _LrLate}.get(self.mutation, _same)(opt)


def _same(opt):
    return opt


class _SignFlip:
    """The step reversed: :math:`\\theta_{t+1} = \\theta_t + (\\theta_t - \\theta'_{t+1})`."""

    def __init__(self, opt):
        self.opt, self.hparams = opt, opt.hparams

    def init(self, params):
        return self.opt.init(params)

    def update(self, params, grads, state, lr):
        new, state = self.opt.update(params, grads, state, lr)
        return {k: 2 * params[k] - new[k] for k in params}, state


class _LrLate:
    """The learning rate one step late: :math:`\\eta_{t-1}` used at update t (η₋₁ = 0)."""

    def __init__(self, opt):
        self.opt, self.hparams, self.prev = opt, opt.hparams, 0.0

    def init(self, params):
        self.prev = 0.0
        return self.opt.init(params)

    def update(self, params, grads, state, lr):
        lr, self.prev = self.prev, lr
        return self.opt.update(params, grads, state, lr)


class Match(NamedTuple):
    """A candidate that reproduces your iterates on ``leaves`` to ``max_abs_diff``."""

    candidate: Candidate
    leaves: tuple
    max_abs_diff: float


class Diagnosis(NamedTuple):
    """What :func:`diagnose` found.

    ``reference_leaf_max[k]``: max |Δθ| on leaf ``k`` between your iterates and
    the reference replayed on your gradients. ``bad_leaves``: the leaves over
    tolerance there. ``matches``: one :class:`Match` covering every leaf, or
    one per bad leaf, or none. ``closest``: the nearest candidate when none
    matches but one is at least 10× closer than the reference. ``tried``: how
    many candidates were replayed.
    """

    reference: str
    reference_leaf_max: dict
    bad_leaves: tuple
    matches: tuple
    closest: Match | None
    tried: int

    @property
    def found(self) -> bool:
        """True when at least one known form reproduced the run."""
        return bool(self.matches)

    @property
    def names(self) -> list[str]:
        """The matching forms as ``form`` / ``form+mutation`` / ``hparam=value`` names."""
        return [_name(m.candidate) for m in self.matches]

    def __str__(self) -> str:
        return _message(self)


def _name(c: Candidate) -> str:
    if c.hparam is not None:
        return f"{c.hparam}={c.hparams[c.hparam]:g}"
    return c.form + (f"+{c.mutation}" if c.mutation else "")


# ------------------------------------------------------------------ candidates
def candidates(rule: str, hparams: Mapping, form: str | None = None) -> list[list[Candidate]]:
    """The suspects for a reference ``(rule, hparams, form)``, in two stages (see module doc)."""
    ref = neighbours.get_form(rule, form)
    hp = dict(neighbours.build(rule, hparams, form).hparams)
    label = ref.says
    cand = _cand_for(rule)
    stage1 = [cand(f.says, f.kind, f.name, _own(hp, f), None, f.found_in,
                    _HINTS.get((rule, f.name), "")) for f in neighbours.forms(rule)
              if f.name != ref.name]
    stage1 += [cand(f"{label} with the sign of the step flipped", "mistake", ref.name, hp,
                     "sign_flip", "", "θ moves up the gradient."),
               cand(f"{label} with the learning rate one step late (η_(t−1) at update t)",
                     "mistake", ref.name, hp, "lr_late", "",
                     "η set after the update instead of before it?")]
    if hp["weight_decay"]:
        other = "decoupled" if hp["weight_decay_mode"] == "l2" else "l2"
        what = {"l2": "L2 weight decay (λθ added to the gradient)",
                "decoupled": "decoupled weight decay (θ −= η λ θ after the step)"}
        stage1 += [
            cand(f"{label} with {what[other]} instead of {what[hp['weight_decay_mode']]}",
                  "variant", ref.name, {**hp, "weight_decay_mode": other}, None, "",
                  "torch Adam(weight_decay=λ) is L2; torch AdamW, optax.adamw and Keras' "
                  "weight_decay= are decoupled."),
            cand(f"{label} without weight decay", "mistake", ref.name,
                  {**hp, "weight_decay": 0.0}, None, "", "")]
    stage2 = []
    for name, values in COMMON_VALUES.items():
        if name not in hp or (name == "weight_decay" and not hp[name]):
            continue
        for value in values:
            if value != hp[name]:
                stage2.append(cand(f"{label} with {name}={value:g} instead of {hp[name]:g}",
                                    "hparam", ref.name, {**hp, name: value}, None, "", "",
                                    hparam=name))
    return [stage1, stage2]


def _own(hp: dict, f: neighbours.Form) -> dict:
    """``hp`` less the extra hyperparameters of other forms, plus ``f``'s defaults."""
    rule_hp = {k: v for k, v in hp.items() if k in neighbours.build(f.rule).hparams}
    return {**rule_hp, **{k: hp.get(k, v) for k, v in f.extra.items()}}


def _cand_for(rule: str):
    def make(says, kind, form, hp, mutation, found_in, hint, hparam=None) -> Candidate:
        return Candidate(rule=rule, says=says, kind=kind, form=form, hparams=hp,
                         mutation=mutation, found_in=found_in, hint=hint, hparam=hparam)
    return make


# ------------------------------------------------------------------ diagnosis
def _leaf_max(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for k in a:
        d = np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))
        out[k] = float(np.max(d)) if np.all(np.isfinite(d)) else float("inf")
    return out


def _replay_diffs(c: Candidate, theta0, grads, lrs, yours) -> dict[str, float] | None:
    try:
        opt = c.build()
    except ValueError:                        # a hyperparameter value this form refuses
        return None
    with np.errstate(all="ignore"):
        rep = neighbours.replay(opt, theta0, grads, lrs)
    return _leaf_max(rep.params, yours)


def diagnose(rule: str, hparams: Mapping | None, yours: Mapping[str, np.ndarray],
             grads: Mapping[str, np.ndarray], lrs, *, tol: float,
             form: str | None = None) -> Diagnosis:
    """Which candidate computes ``yours`` (θ₀ … θ_T per leaf, from ``grads[k][t]`` and ``lrs[t]``).

    Every candidate is replayed in float64 from ``yours[k][0]``; a candidate
    *matches* a leaf when it stays within ``tol`` of your iterates at every
    step. The first stage with a candidate matching every leaf wins (the
    closest such candidate); otherwise each departing leaf gets the first
    candidate that matches it.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    theta0 = {k: np.asarray(v[0], np.float64) for k, v in yours.items()}
    ref_opt = neighbours.build(rule, hparams, form)
    with np.errstate(all="ignore"):
        ref_max = _leaf_max(neighbours.replay(ref_opt, theta0, grads, lrs).params, yours)
    bad = tuple(k for k, d in ref_max.items() if not d <= tol)
    reference = neighbours.get_form(rule, form).says
    verdict = functools.partial(Diagnosis, reference=reference, reference_leaf_max=ref_max,
                                bad_leaves=bad)
    if not bad:
        return verdict(matches=(), closest=None, tried=0)
    per_leaf: dict[str, Match] = {}
    closest, tried = None, 0
    for stage in candidates(rule, hparams or {}, form):
        whole = []
        for c in stage:
            diffs = _replay_diffs(c, theta0, grads, lrs, yours)
            tried += 1
            if diffs is None:
                continue
            worst = max(diffs.values())
            if worst <= tol:
                whole.append(Match(c, tuple(diffs), worst))
            for k in bad:
                if diffs[k] <= tol and k not in per_leaf:
                    per_leaf[k] = Match(c, (k,), diffs[k])
            on_bad = max(diffs[k] for k in bad)
            if closest is None or on_bad < closest.max_abs_diff:
                closest = Match(c, bad, on_bad)
        if whole:
            return verdict(matches=(min(whole, key=lambda m: m.max_abs_diff),), closest=None,
                           tried=tried)
    if set(per_leaf) == set(bad):
        return verdict(matches=tuple(per_leaf[k] for k in bad), closest=None, tried=tried)
    ref_bad = max(ref_max[k] for k in bad)
    near = closest if closest is not None and closest.max_abs_diff * 10 < ref_bad else None
    return verdict(matches=(), closest=near, tried=tried)


# ------------------------------------------------------------------ message
DOCS = "docs/oracle.md#neighbour-forms"


def _what(m: Match) -> str:
    """'Adam with ε inside the square root (max |Δ| 1e-16), a known mistake'."""
    c = m.candidate
    text = f"{c.says} (max |Δ| {m.max_abs_diff:.1e})"
    if c.kind == "mistake":
        text += ", a known mistake"
    elif c.found_in and c.kind == "variant":
        text += f", {c.found_in}"
    return text


def _hint(m: Match) -> str:
    return f" {m.candidate.hint}" if m.candidate.hint else ""


def _message(d: Diagnosis) -> str:
    if not d.bad_leaves:
        return ("Replayed on your gradients, the reference agrees on every leaf: the difference "
                "comes from the gradients your step was given, not from the update.")
    if d.matches and set(d.matches[0].leaves) >= set(d.reference_leaf_max):
        m = d.matches[0]
        return f"It equals {_what(m)}.{_hint(m)} See {DOCS}."
    if d.matches:
        good = [k for k in d.reference_leaf_max if k not in d.bad_leaves]
        parts = [f"on leaf '{m.leaves[0]}' it equals {_what(m)}" for m in d.matches]
        others = (f"; replayed on your gradients, the other leaves ({', '.join(good)}) agree "
                  f"with {d.reference} to {max(d.reference_leaf_max[k] for k in good):.1e}"
                  if good else "")
        return ("Leaf by leaf: " + "; ".join(parts) + others
                + ". A hyperparameter or buffer mixed up between parameter arrays? See "
                + f"{DOCS}.")
    tail = f"None of the {d.tried} known forms and common mistakes matches ({DOCS} lists them)"
    if d.closest is not None:
        tail += f"; the closest is {_what(d.closest)} on the departing leaves"
    return tail + "."
