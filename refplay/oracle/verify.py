r"""Check trajectories that code in any language wrote against golden vectors.

``refplay oracle export --out GOLDEN`` writes the cases (:mod:`refplay.oracle.golden`).
Your implementation, in any language, reads each ``GOLDEN/cases/<id>.json``,
starts from ``params[·][0]``, applies its update with ``grads[·][t]`` and
``schedule.lr[t]`` for ``t = 0 .. T-1``, and writes ``YOURS/cases/<id>.json``::

    format          "refplay-oracle-result"
    format_version  1
    id              the case's id
    params          {leaf: array of shape [T+1, *leaf_shape]}: your θ_0 .. θ_T
    state           (optional) {slot: {leaf: array [T+1, *leaf_shape]}}: your buffers,
                    named as in the case's "state" ("m", "v", ...)
    implementation  (optional) free text, e.g. "adam.jl v0.3"

Arrays as in the golden files: ``{"shape": [...], "data": [...]}``, row-major;
write numbers with enough digits to round-trip (17 significant digits for
float64). :func:`verify` compares every golden case with your file of the
same id: a verdict per case and, where a case differs, the message of
:func:`refplay.oracle.compare` — the first update and leaf that depart, the
step-size ratio, and which known form your update computes instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from refplay.oracle import golden
from refplay.oracle.compare import DEFAULT_TOL, Comparison, compare_trajectories

__all__ = ["RESULT_FORMAT", "RESULT_FORMAT_VERSION", "CaseVerdict", "verify", "load_result",
           "format_verdicts"]

RESULT_FORMAT = "refplay-oracle-result"
RESULT_FORMAT_VERSION = 1


class CaseVerdict(NamedTuple):
    """One case: ``status`` is ``"agrees"``, ``"differs"``, ``"missing"`` (no file of
    yours) or ``"invalid"`` (a file that does not follow the layout; ``note`` says why).
    ``comparison`` is set for the first two; there ``note`` names the first buffer
    that departs, when both sides wrote their state."""

    id: str
    status: str
    comparison: Comparison | None
    note: str


def load_result(path: str | os.PathLike, case: dict) -> dict:
    """Your file for ``case`` (a :func:`golden.load_case` dict): ``params`` and ``state``
    as float64 arrays, shapes checked against the case. ``ValueError`` naming the field."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != RESULT_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: format={got!r}, expected {RESULT_FORMAT!r}")
    if obj.get("format_version") != RESULT_FORMAT_VERSION:
        raise ValueError(f"{path}: format_version={obj.get('format_version')!r}, expected "
                         f"{RESULT_FORMAT_VERSION}")
    if obj.get("id") != case["id"]:
        raise ValueError(f"{path}: id={obj.get('id')!r}, expected {case['id']!r}")
    params = _arrays(obj.get("params"), case["params"], path, "params")
    state = {}
    for slot, tree in (obj.get("state") or {}).items():
        if slot in case.get("state", {}):
            state[slot] = _arrays(tree, case["state"][slot], path, f"state[{slot!r}]")
    return {"params": params, "state": state}


def _arrays(obj, like: dict, path: Path, field: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict) or set(obj) != set(like):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: {field} must have the leaves {sorted(like)}, got {keys}")
    out = {}
    for k, ref in like.items():
        a = obj[k]
        if not isinstance(a, dict) or set(a) != {"shape", "data"}:
            raise ValueError(f"{path}: {field}[{k!r}] must be an object with keys 'shape' "
                             "and 'data'")
        arr = np.asarray(a["data"], dtype=np.float64)
        if list(a["shape"]) != list(ref.shape) or arr.size != ref.size:
            raise ValueError(f"{path}: {field}[{k!r}] has shape {a['shape']} with "
                             f"{arr.size} values; expected {list(ref.shape)}")
        out[k] = arr.reshape(ref.shape)
    return out


def verify(golden_dir: str | os.PathLike, your_dir: str | os.PathLike) -> list[CaseVerdict]:
    """A verdict for every case of ``golden_dir``'s manifest (see the module docstring)."""
    golden_dir, your_dir = Path(golden_dir), Path(your_dir)
    if not your_dir.is_dir():
        raise FileNotFoundError(f"{your_dir} is not a directory")
    manifest = golden.load_manifest(golden_dir)
    verdicts = []
    for entry in manifest["cases"]:
        mine = your_dir / "cases" / f"{entry['id']}.json"
        if not mine.exists():
            verdicts.append(CaseVerdict(id=entry["id"], status="missing", comparison=None,
                                        note=f"no {mine}"))
            continue
        case = golden.load_case(golden_dir / entry["json"])
        try:
            yours = load_result(mine, case)
        except ValueError as exc:
            verdicts.append(CaseVerdict(id=entry["id"], status="invalid", comparison=None,
                                        note=str(exc)))
            continue
        verdicts.append(_verdict(case, yours))
    return verdicts


def _verdict(case: dict, yours: dict) -> CaseVerdict:
    tol = case.get("tolerance", DEFAULT_TOL[case["dtype"]])
    rep = compare_trajectories(case["rule"], case["hparams"], case["lr"], case["params"],
                               yours["params"], case["grads"], tol=tol,
                               problem=case["problem"]["name"], dtype=case["dtype"],
                               form=case.get("form"))
    return CaseVerdict(id=case["id"], status="agrees" if rep.ok else "differs", comparison=rep,
                       note=_state_note(case, yours, tol))


def _state_note(case: dict, yours: dict, tol: float) -> str:
    """'your buffer v departs first, at t=1 on leaf 'w' (max |Δ| ...)', or ''."""
    first = None
    for slot, tree in yours["state"].items():
        for k, mine in tree.items():
            d = np.abs(mine - case["state"][slot][k]).reshape(mine.shape[0], -1).max(axis=1)
            bad = np.flatnonzero(~(d <= tol))
            if bad.size and (first is None or bad[0] < first[0]):
                first = (int(bad[0]), slot, k, float(d[bad[0]]))
    if first is None:
        return "your buffers agree with the case's state" if yours["state"] else ""
    t, slot, k, d = first
    return (f"your buffer {slot!r} departs first, after {t} updates on leaf {k!r} "
            f"(max |Δ| {d:.1e})")


def format_verdicts(verdicts: list[CaseVerdict]) -> str:
    """One line per case (the full diagnosis under each differing one) and a summary."""
    lines = []
    for v in verdicts:
        if v.status == "agrees":
            lines.append(f"agrees   {v.id}  max|Δθ| {v.comparison.max:.1e} "
                         f"(tol {v.comparison.tol:g})")
        elif v.status == "differs":
            lines.append(f"DIFFERS  {v.id}  max|Δθ| {v.comparison.max:.1e}")
            lines.append(f"         {v.comparison.headline()}")
        else:
            lines.append(f"{v.status.upper():8s} {v.id}  {v.note}")
            continue
        if v.note:
            lines.append(f"         {v.note}")
    counts = {s: sum(v.status == s for v in verdicts)
              for s in ("agrees", "differs", "invalid", "missing")}
    lines.append(f"\n{counts['agrees']}/{len(verdicts)} cases agree; {counts['differs']} differ, "
                 f"{counts['invalid']} invalid, {counts['missing']} missing")
    return "\n".join(lines)
