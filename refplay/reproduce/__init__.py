"""``refplay reproduce``: the playbook's figures, re-run on a laptop beside the originals.

One module per figure, each defining ``ENTRY`` (a :class:`~refplay.reproduce.base.Entry`)::

    from refplay import reproduce

    entry = reproduce.get("fig1")
    result = entry.run(quick=True, out_dir="runs/reproduce", workspace="runs/reproduce/ws",
                       workers=2)
    result.decision, result.claim_holds, result.pngs

Adding a figure is one module (``refplay/reproduce/figN.py`` with an
``ENTRY``) plus one line in :data:`FIGURES`. Entry modules are imported on
first use, so ``refplay --help`` does not load the trainer or matplotlib.
"""

from __future__ import annotations

import importlib

from refplay.reproduce.base import Entry, ReproResult, Upstream

__all__ = ["FIGURES", "Entry", "ReproResult", "Upstream", "get", "ids"]

# Figure id -> the module that defines its ENTRY, in the playbook's order.
FIGURES: dict[str, str] = {
    "fig1": "refplay.reproduce.fig1",
    "fig2": "refplay.reproduce.fig2",
    "fig3": "refplay.reproduce.fig3",
    "fig4": "refplay.reproduce.fig4",
    "fig5": "refplay.reproduce.fig5",
    "fig6": "refplay.reproduce.fig6",
    "fig7": "refplay.reproduce.fig7",
    "fig8": "refplay.reproduce.fig8",
    "fig9": "refplay.reproduce.fig9",
}

# The playbook's figures; the ones not in FIGURES are not reproduced yet.
PLAYBOOK_FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9")


def ids() -> list[str]:
    """The registered figure ids, in the playbook's order."""
    return list(FIGURES)


def get(figure: str) -> Entry:
    """The entry of ``figure`` (e.g. ``"fig1"``); a ValueError names the registered ones."""
    if not isinstance(figure, str):
        raise TypeError(f"figure must be a string such as 'fig1', got {figure!r}")
    if figure not in FIGURES:
        if figure in PLAYBOOK_FIGURES:
            raise ValueError(f"figure {figure!r} is not reproduced yet; reproduced: {ids()}")
        raise ValueError(f"figure={figure!r} is not a playbook figure; choose one of {ids()} "
                         f"or 'all'")
    entry = importlib.import_module(FIGURES[figure]).ENTRY  # lazy: CLI start-up
    if not isinstance(entry, Entry) or entry.id != figure:
        raise TypeError(f"{FIGURES[figure]}.ENTRY must be an Entry with id {figure!r}, "
                        f"got {entry!r}")
    return entry
