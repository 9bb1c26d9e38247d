"""Golden vectors: reference trajectories on disk, for checking code in any language.

``refplay oracle export --out DIR`` (or :func:`export`) writes::

    DIR/manifest.json              index of the cases (format, version, list of cases)
    DIR/cases/<id>.json            one case, self-contained, plain JSON
    DIR/cases/<id>.npz             the same arrays for numpy users

A case is one rule with its hyperparameters, run on one problem for
``steps`` steps with the warmup-then-cosine learning rate, in one dtype.
Its JSON object has these fields (format version 2)::

    format          "refplay-oracle-golden"
    format_version  2
    id              e.g. "adam-mlp-eps0.01-float64", "adam-mlp-beta2_0.95-float32"
    rule            "sgd" | "momentum" | "nesterov" | "rmsprop" | "adam" | "nadam"
    form            "playbook", or a neighbour form (refplay.oracle.neighbours), e.g. "torch"
    hparams         refplay.optim.get(rule, **hparams), e.g. {"beta1": 0.9, "beta2": 0.999,
                    "eps": 0.01, "weight_decay": 0.0, "weight_decay_mode": "l2"}
    equation        {"text": plain-text update, "latex": the same in LaTeX}
    dtype           "float64" | "float32": the dtype of every computation in the run
    tolerance       max |Δθ| a correct implementation in this dtype stays within
    steps           T
    schedule        {"kind": "warmup_cosine", "base_lr", "warmup_steps", "decay_steps",
                     "lr": [η_0, ..., η_{T-1}]}   (use these values, not the formula)
    problem         {"name", "formula", "data": {name: array}, "theta0": {leaf: array}}
    params          {leaf: array of shape [T+1, *leaf_shape]}: θ_0 .. θ_T
    grads           {leaf: array of shape [T, *leaf_shape]}: g_t = ∇l(θ_t) used by update t
    losses          [l(θ_0), ..., l(θ_T)]
    state           (only with --state) {slot: {leaf: array [T+1, *leaf_shape]}}: the
                    optimizer's buffers (m, v, ...) initially and after each update

An *array* is ``{"shape": [...], "data": [...]}`` with ``data`` the values
in row-major (C) order. Numbers are written with Python's shortest
round-trip repr, so parsing them as float64 gives the stored values exactly
(float32 values are exactly representable in float64; cast back to float32).

To check an optimizer without implementing the problem, start from
``params[·][0]`` and feed ``grads[·][t]`` with ``schedule.lr[t]`` at update
``t``: a correct implementation reproduces ``params[·][t+1]`` (to
``tolerance``). Write what yours computes in the layout of
:mod:`refplay.oracle.verify` and ``refplay oracle verify`` says, per case,
whether it agrees and if not, where and why. The ``.npz`` holds ``lr``,
``losses``, ``params/<leaf>``, ``grads/<leaf>``, ``data/<name>``,
``theta0/<leaf>`` (and ``state/<slot>/<leaf>``) with the same values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from refplay import __version__, _validate, io
from refplay.oracle import neighbours
from refplay.oracle import problems as problems_lib
from refplay.oracle.compare import DEFAULT_TOL
from refplay.oracle.frameworks import ROW_NAMES, eps_values, row_hparams
from refplay.oracle.trajectory import standard_schedule, trajectory

__all__ = ["FORMAT", "FORMAT_VERSION", "READS_VERSIONS", "export", "load_case", "load_manifest",
           "case_id"]

FORMAT = "refplay-oracle-golden"
FORMAT_VERSION = 2
#: Versions this refplay reads (version 1 lacks form, equation, tolerance and state).
READS_VERSIONS = (1, 2)


def case_id(row: str, problem: str, eps: float | None, dtype: str) -> str:
    """File-name-safe id, e.g. ``adam_l2-mlp-eps1e-08-float64``."""
    eps_part = "" if eps is None else f"-eps{eps:g}"
    return f"{row.replace('+', '_')}-{problem}{eps_part}-{dtype}"


def _array(a) -> dict:
    a = np.asarray(a)
    return {"shape": list(a.shape), "data": [float(x) for x in a.ravel()]}


def _from_array(obj: dict, dtype: str, where: str) -> np.ndarray:
    if not isinstance(obj, dict) or set(obj) != {"shape", "data"}:
        raise ValueError(f"{where} must be an object with keys 'shape' and 'data'")
    return np.asarray(obj["data"], dtype=np.float64).astype(dtype).reshape(obj["shape"])


def export(out: str | os.PathLike, *, steps: int = 60, rows: Sequence[str] | None = None,
           problems: Sequence[str] | None = None,
           dtypes: Sequence[str] = ("float64", "float32"), rule: str | None = None,
           hparams: Mapping | None = None, form: str | None = None,
           state: bool = False) -> Path:
    """Write the golden vectors to ``out`` (see the module docstring); return the manifest path.

    Either ``rows`` of the framework table (default all: ``frameworks.ROW_NAMES``,
    each at its ε values), or one ``rule`` with ``hparams`` (and optionally a
    neighbour ``form``, e.g. ``"torch"``). ``problems`` default to all built-in
    problems. ``state=True`` adds the optimizer's buffers after every step.
    """
    out = Path(out)
    steps = _validate.integer("steps", steps, low=2)
    problems = list(problems_lib.PROBLEMS if problems is None else problems)
    for p in problems:
        _validate.one_of("problem", p, problems_lib.PROBLEMS)
    for d in dtypes:
        _validate.one_of("dtype", d, ("float64", "float32"))
    if rule is not None:
        if rows is not None:
            raise ValueError("give rows or rule, not both")
        neighbours.build(rule, hparams, form)               # refuse bad input before writing
        tag = _hparams_tag(hparams, form)
        specs = [(rule, dict(hparams or {}), form, None,
                  lambda p, d: "-".join([rule, p, *([tag] if tag else []), d]))]
    else:
        rows = list(ROW_NAMES if rows is None else rows)
        for r in rows:
            _validate.one_of("row", r, ROW_NAMES)
        specs = [(*row_hparams(r, eps), None, r,
                  lambda p, d, r=r, eps=eps: case_id(r, p, eps, d))
                 for r in rows for eps in eps_values(r)]
    cases = []
    for rule_, hp, form_, row, make_id in specs:
        for pname in problems:
            for dtype in dtypes:
                entry = _write_case(out, make_id(pname, dtype), rule_, hp, form_, pname, dtype,
                                    steps, state)
                cases.append({**entry, "row": row})
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "refplay_version": __version__, "steps": steps, "cases": cases}
    return io.save_json(out / "manifest.json", manifest)


def _hparams_tag(hparams: Mapping | None, form: str | None) -> str:
    """The given hparams (and form) as part of a file name, e.g. ``beta2_0.95-eps_1e-06``."""
    parts = [f"{k}_{v:g}" if isinstance(v, (int, float)) else f"{k}_{v}"
             for k, v in sorted((hparams or {}).items())]
    return "-".join(([form] if form else []) + parts)


def _write_case(out: Path, cid: str, rule: str, hp: dict, form: str | None, pname: str,
                dtype: str, steps: int, with_state: bool) -> dict:
    """Run one case, write its JSON and .npz, return its manifest entry."""
    prob = problems_lib.get(pname)
    base_lr = prob.base_lr[rule]
    lrs = standard_schedule(base_lr, steps)
    tr = trajectory(rule, hp, lrs, prob, steps, dtype, form=form)
    case = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "id": cid,
        "rule": rule, "form": tr.form, "hparams": tr.hparams,
        "equation": neighbours.equation(rule, hp, form),
        "dtype": dtype, "tolerance": DEFAULT_TOL[dtype], "steps": steps,
        "schedule": {"kind": "warmup_cosine", "base_lr": base_lr, "warmup_steps": steps // 6,
                     "decay_steps": steps - steps // 6, "lr": [float(x) for x in lrs]},
        "problem": {"name": prob.name, "formula": prob.formula,
                    "data": {k: _array(v) for k, v in prob.data.items()},
                    "theta0": {k: _array(v) for k, v in prob.theta0.items()}},
        "params": {k: _array(v) for k, v in tr.params.items()},
        "grads": {k: _array(v) for k, v in tr.grads.items()},
        "losses": [float(x) for x in tr.losses],
    }
    if with_state:
        case["state"] = {s: {k: _array(v) for k, v in t.items()} for s, t in tr.state.items()}
    io.save_json(out / "cases" / f"{cid}.json", case)
    io.save_npz(out / "cases" / f"{cid}.npz", _npz_arrays(case, tr, prob))
    return {"id": cid, "rule": rule, "form": tr.form, "problem": pname,
            "eps": hp.get("eps"), "dtype": dtype,
            "json": f"cases/{cid}.json", "npz": f"cases/{cid}.npz"}


def _npz_arrays(case: dict, tr, prob) -> dict[str, np.ndarray]:
    arrays = {"lr": np.asarray(case["schedule"]["lr"]), "losses": tr.losses}
    arrays.update({f"params/{k}": v for k, v in tr.params.items()})
    arrays.update({f"grads/{k}": v for k, v in tr.grads.items()})
    arrays.update({f"data/{k}": v for k, v in prob.data.items()})
    arrays.update({f"theta0/{k}": v for k, v in prob.theta0.items()})
    arrays.update({f"state/{s}/{k}": v for s, t in tr.state.items() for k, v in t.items()
                   if "state" in case})
    return arrays


def _check_format(obj: dict, path: Path) -> None:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (format={obj.get('format')!r})")
    if obj.get("format_version") not in READS_VERSIONS:
        raise ValueError(f"{path} has format_version={obj.get('format_version')!r}; this refplay "
                         f"reads versions {list(READS_VERSIONS)}")


def load_manifest(directory: str | os.PathLike) -> dict:
    """Read and validate ``DIR/manifest.json``."""
    path = Path(directory) / "manifest.json"
    manifest = json.loads(path.read_text())
    _check_format(manifest, path)
    return manifest


def load_case(path: str | os.PathLike) -> dict:
    """Read one case's JSON; arrays come back as numpy arrays in the case's dtype.

    Returns the JSON object with ``params``, ``grads``, ``problem.data``,
    ``problem.theta0`` turned into dicts of arrays and ``lr``/``losses`` as
    float64 arrays.
    """
    path = Path(path)
    case = json.loads(path.read_text())
    _check_format(case, path)
    dt = case["dtype"]
    _validate.one_of("dtype", dt, ("float64", "float32"))
    case["params"] = {k: _from_array(v, dt, f"params[{k!r}]") for k, v in case["params"].items()}
    case["grads"] = {k: _from_array(v, dt, f"grads[{k!r}]") for k, v in case["grads"].items()}
    prob = case["problem"]
    prob["data"] = {k: _from_array(v, "float64", f"data[{k!r}]") for k, v in prob["data"].items()}
    prob["theta0"] = {k: _from_array(v, "float64", f"theta0[{k!r}]")
                      for k, v in prob["theta0"].items()}
    if "state" in case:
        case["state"] = {s: {k: _from_array(v, dt, f"state[{s!r}][{k!r}]") for k, v in t.items()}
                         for s, t in case["state"].items()}
    case["lr"] = np.asarray(case["schedule"]["lr"], dtype=np.float64)
    case["losses"] = np.asarray(case["losses"], dtype=np.float64)
    return case
