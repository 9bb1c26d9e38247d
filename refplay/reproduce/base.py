"""One reproduced playbook figure: what it is (``Entry``) and what a run gave (``ReproResult``).

An entry names a figure of the playbook, the section it illustrates, the
upstream image(s) it stands beside, the claim it checks (section 3 of the
design notes, e.g. CL11) and what the laptop analogue can and cannot show.
Its ``run(quick, out_dir, workspace, workers)`` runs the figure's studies
through :mod:`refplay.procedures` (resumable, parallel over ``workers``),
reads the numbers with :mod:`refplay.analysis`, draws with
:mod:`refplay.plots`, and returns a :class:`ReproResult`: the PNG paths, the
numbers, the decision the figure supports, and whether the claim holds,
with the numbers of that check.

The only drawing done here is layout: :func:`add_caveat` writes the
"laptop analogue" line under a figure drawn by :mod:`refplay.plots`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from refplay import analysis, study
from refplay.plots.style import DPI, add_caveat, save_png

__all__ = ["Entry", "ReproResult", "Upstream", "UPSTREAM_BASE", "PLAYBOOK_URL", "DPI",
           "add_caveat", "save_png",
           "halton_spec", "named_spec", "load_frame"]

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
        return UPSTREAM_BASE + self.name


@dataclass(frozen=True)
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
        return {"figure": self.figure, "pngs": {k: str(v) for k, v in self.pngs.items()},
                "numbers": self.numbers, "decision": self.decision,
                "claim_holds": bool(self.claim_holds), "check": self.check,
                "quick": bool(self.quick), "caveat": self.caveat,
                "seconds": None if not math.isfinite(self.seconds) else self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "ReproResult":
        seconds = d.get("seconds")
        return cls(figure=d["figure"], pngs={k: Path(v) for k, v in d["pngs"].items()},
                   numbers=dict(d["numbers"]), decision=d["decision"],
                   claim_holds=bool(d["claim_holds"]), check=dict(d["check"]),
                   quick=bool(d["quick"]), caveat=d.get("caveat", ""),
                   seconds=math.nan if seconds is None else seconds)


RunFunction = Callable[..., ReproResult]


@dataclass(frozen=True)
class Entry:
    """A playbook figure and how to reproduce it.

    Attributes:
        id: ``"fig1"`` ... ``"fig9"``; the command-line name.
        title: the playbook's caption, shortened.
        section: the playbook section the figure illustrates (its heading).
        anchor: the heading's anchor in the playbook's README.
        upstream: the playbook's image(s) for this figure.
        claim_id: the claim it checks (``"CL11"``), ``""`` if none.
        claim: the claim, in words, with its pass criterion.
        caveat: what the laptop run can and cannot show (also drawn on the figure).
        run: ``run(quick, out_dir, workspace, workers) -> ReproResult``.
    """

    id: str
    title: str
    section: str
    anchor: str
    upstream: tuple[Upstream, ...]
    claim_id: str
    claim: str
    caveat: str
    run: RunFunction

    @property
    def section_url(self) -> str:
        return f"{PLAYBOOK_URL}#{self.anchor}"


def halton_spec(prefix: str, **fields):
    """A Halton ``StudySpec`` named ``prefix-<hash>`` (see :func:`named_spec`)."""
    return named_spec(prefix, sampler="halton", **fields)


def named_spec(prefix: str, **fields):
    """A ``StudySpec`` named ``prefix-<hash of what it computes>``.

    The hash makes the quick and full sizes (and any later change of the
    design) separate studies in one workspace, so each resumes on its own and
    none is refused for a changed identity.
    """
    spec = study.StudySpec(name=prefix, **fields)
    digest = hashlib.sha256(json.dumps(spec.identity(), sort_keys=True).encode()).hexdigest()
    return dataclasses.replace(spec, name=f"{prefix}-{digest[:10]}")


def load_frame(spec, workspace: str | os.PathLike):
    """The :class:`~refplay.analysis.TrialsFrame` of a study that has run in ``workspace``."""
    with study.Store(workspace, readonly=True) as store:
        return analysis.load(store, spec.name)
