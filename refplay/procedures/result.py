"""``ProcedureResult``: what a playbook procedure returns — a decision and what it rests on.

DESIGN.md principle 8: "A procedure answers a question." Every function in
:mod:`refplay.procedures` runs (or reads) trials and returns the playbook's
question in its words, the decision the playbook would make next, every
number that decision rests on, the figures that show it, the trials it used,
and what a laptop run can and cannot show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from refplay import io
from refplay.plots import style

__all__ = ["ProcedureResult"]


@dataclass(frozen=True, kw_only=True)
class ProcedureResult:
    """The outcome of a playbook procedure.

    Attributes:
        question: the playbook's question, in its words.
        decision: what the playbook would do next, e.g. ``"expand lr upward"``.
        numbers: every number the decision rests on (JSON-ready values).
        figures: name -> ``matplotlib.figure.Figure``.
        trials: the ``(study, trial)`` ids or ``TrialResult`` objects it used.
        caveats: what a laptop run can and cannot show.
    """

    question: str
    decision: str
    numbers: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    trials: list = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The question, the decision, the numbers and the caveats, as plain text."""
        lines = [f"Question: {self.question}", f"Decision: {self.decision}", "Numbers:"]
        lines += [f"  {k}: {_format(v)}" for k, v in self.numbers.items()]
        if self.caveats:
            lines.append("Caveats:")
            lines += [f"  - {c}" for c in self.caveats]
        return "\n".join(lines)

    def save_figures(self, out_dir: str | Path, *, dpi: int = 110) -> dict[str, Path]:
        """Write each figure as ``out_dir/<name>.png`` (atomically); returns the paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, fig in self.figures.items():
            path = out_dir / f"{name}.png"
            style.save_png(fig, path, dpi=dpi)
            paths[name] = path
        return paths

    def save_numbers(self, path: str | Path) -> Path:
        """The question, decision, numbers and caveats as JSON (atomically)."""
        return io.save_json(path, {"question": self.question, "decision": self.decision,
                                   "numbers": self.numbers, "caveats": list(self.caveats)})


def _format(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)
