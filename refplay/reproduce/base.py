"""One reproduced playbook figure, as data: ``Entry`` = (procedure, arguments, panels, check).

An entry names a figure of the playbook, the section it illustrates, the
upstream image(s) it stands beside, the claim it checks, in words, and what
the laptop analogue can and cannot show. What it *runs* is data:

* ``procedure`` and ``arguments``: a function of :mod:`refplay.procedures`
  (resumable, parallel over ``workers``), called as
  ``procedure(quick=..., workspace=..., workers=..., **arguments)``;
* ``panels``: which of the procedure's figures become which PNGs;
* ``check``: ``check(result) -> Check``, whether the figure's claim holds on
  the procedure's numbers (the procedure itself knows no claim).

:meth:`Entry.run` is the one run body every figure shares: it calls the
procedure, checks the claim, writes the caveat under each panel and the
PNGs, and returns a :class:`ReproResult`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from refplay.plots.style import DPI, add_caveat, save_png

__all__ = ["Entry", "Panel", "Check", "ReproResult", "Upstream", "UPSTREAM_BASE",
           "PLAYBOOK_URL", "DPI", "add_caveat", "save_png"]

UPSTREAM_BASE = "https://raw.githubusercontent.com/google-research/tuning_playbook/main/assets/"
PLAYBOOK_URL = "https://github.com/google-research/tuning_playbook"


@dataclass(frozen=True)
class Upstream:
    """An image of the playbook: the file name under ``assets/`` and a note about it.

    ``broken`` marks a file the playbook's text links but its ``assets/``
    folder does not hold (the link is given, the image is not shown).
    """

    name: str
    note: str = ""
    broken: bool = False

    @property
    def url(self) -> str:
        """Where the playbook's repository serves the image."""
        return UPSTREAM_BASE + self.name


@dataclass(frozen=True, kw_only=True)
class ReproResult:
    """What one reproduction gave.

    Attributes:
        figure: the entry id, e.g. ``"fig1"``.
        pngs: panel name -> PNG path (``"bad"``, ``"good"`` for Figure 1).
        numbers: every number the decision rests on (JSON-ready).
        decision: what the playbook would do next, given these numbers.
        claim_holds: whether the figure's qualitative claim holds on this run.
        check: the numbers of that check (e.g. ``{"iqr_ratio": 4.1}``).
        quick: whether this was the ``--quick`` size.
        caveat: what this run can and cannot show (the line drawn under its figures).
        seconds: wall time of the run (studies already in the workspace are
            only read, so a resumed run is faster).
        figures: panel name -> ``matplotlib.figure.Figure`` (in memory only;
            not part of the saved JSON).
    """

    figure: str
    pngs: dict
    numbers: dict
    decision: str
    claim_holds: bool
    check: dict
    quick: bool
    caveat: str = ""
    seconds: float = math.nan
    figures: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON form (``figures`` left out)."""
        return {"figure": self.figure, "pngs": {k: str(v) for k, v in self.pngs.items()},
                "numbers": self.numbers, "decision": self.decision,
                "claim_holds": bool(self.claim_holds), "check": self.check,
                "quick": bool(self.quick), "caveat": self.caveat,
                "seconds": None if not math.isfinite(self.seconds) else self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "ReproResult":
        """Inverse of :meth:`to_dict`."""
        seconds = d.get("seconds")
        return cls(figure=d["figure"], pngs={k: Path(v) for k, v in d["pngs"].items()},
                   numbers=dict(d["numbers"]), decision=d["decision"],
                   claim_holds=bool(d["claim_holds"]), check=dict(d["check"]),
                   quick=bool(d["quick"]), caveat=d.get("caveat", ""),
                   seconds=math.nan if seconds is None else seconds)


class Panel(NamedTuple):
    """One PNG of a reproduced figure, drawn by the procedure."""

    name: str                   # the panel's name in ReproResult.pngs, e.g. "7a"
    key: str                    # the procedure's figure key, e.g. "lr_sweep"
    file: str                   # the PNG's file name under --out
    title: str | None = None    # a title set over the procedure's (Figure 4 reuses 8's sweep)


class Check(NamedTuple):
    """Whether a figure's claim holds, the numbers that say so, and the figure's decision."""

    holds: bool
    numbers: dict
    decision: str | None = None     # None: the procedure's decision


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A playbook figure and how to reproduce it (see the module docstring).

    Attributes:
        id: ``"fig1"`` ... ``"fig9"``; the command-line name.
        title: the playbook's caption, shortened.
        section: the playbook section the figure illustrates (its heading).
        anchor: the heading's anchor in the playbook's README.
        upstream: the playbook's image(s) for this figure.
        claim_id: the claim's label in the project's notes (``"CL11"``), ``""`` if none.
        claim: the claim, in words, with its pass criterion.
        caveat: what the full-size laptop run can and cannot show (drawn under the figure).
        quick_caveat: the same at the ``--quick`` size, when it says other numbers.
        differences: what still differs from the playbook's image, seen side by side, and
            why (scale, workload); written by someone who looked at both.
        procedure: the :mod:`refplay.procedures` function that measures, decides and draws.
        arguments: keyword arguments of ``procedure`` beside quick, workspace and workers.
        quick_arguments: more of them at the ``--quick`` size only (over ``arguments``).
        panels: which of the procedure's figures become which PNGs.
        check: ``check(result) -> Check`` on the procedure's ``ProcedureResult``.
        full_time: how long the full-size run takes on 2 cores, as measured
            (``"≈ 45 min"``); ``""`` until someone has timed it.
        quick_time: the same for the ``--quick`` size. ``refplay reproduce`` starts
            the longest figures first when it runs several side by side.
    """

    id: str
    title: str
    section: str
    anchor: str
    upstream: tuple[Upstream, ...]
    claim_id: str
    claim: str
    caveat: str
    procedure: Callable
    panels: tuple[Panel, ...]
    check: Callable
    arguments: Mapping = field(default_factory=dict)
    quick_arguments: Mapping = field(default_factory=dict)
    quick_caveat: str | None = None
    differences: str = ""
    full_time: str = ""
    quick_time: str = ""

    @property
    def section_url(self) -> str:
        """The playbook section the figure illustrates."""
        return f"{PLAYBOOK_URL}#{self.anchor}"

    def run(self, quick: bool, out_dir, workspace, workers: int | None = 0) -> ReproResult:
        """Run the procedure (or re-read its studies), check the claim, write the PNGs."""
        start = time.perf_counter()
        arguments = {**self.arguments, **(self.quick_arguments if quick else {})}
        result = self.procedure(quick=quick, workspace=workspace, workers=workers, **arguments)
        check = self.check(result)
        caveat = (self.quick_caveat or self.caveat) if quick else self.caveat
        pngs, figures = {}, {}
        for panel in self.panels:
            fig = result.figures[panel.key]
            if panel.title:
                fig.suptitle(panel.title, fontsize=11)
            add_caveat(fig, caveat)
            pngs[panel.name] = save_png(fig, Path(out_dir) / panel.file)
            figures[panel.name] = fig
        return ReproResult(figure=self.id, pngs=pngs, numbers=result.numbers,
                           decision=check.decision or result.decision,
                           claim_holds=bool(check.holds), check=check.numbers, quick=quick,
                           caveat=caveat, seconds=time.perf_counter() - start,
                           figures=figures)
