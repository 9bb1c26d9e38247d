"""Reproduce entries for the playbook's Figures 4-9 (instability, warmup, clipping)."""

from __future__ import annotations

import importlib

import pytest

from refplay.reproduce.base import Entry

IDS = ("fig4", "fig5", "fig6", "fig7", "fig8", "fig9")


@pytest.mark.parametrize("figure", IDS)
def test_entry_names_its_figure_claim_and_caveat(figure):
    entry = importlib.import_module(f"refplay.reproduce.{figure}").ENTRY
    assert isinstance(entry, Entry) and entry.id == figure
    assert entry.upstream and all(u.name.endswith(".png") for u in entry.upstream)
    assert "Laptop analogue" in entry.caveat and "MNIST-1D" in entry.caveat
    assert entry.claim and entry.section_url.startswith("https://github.com/")


# Figures 4-9 reproduce the procedures of tests/test_procedures_instability.py with the
# same arguments: both use the run's shared workspace (tests/conftest.py), so each study
# trains once per run and the other user re-reads it. The locks are the procedures'.
LOCKS = {"fig4": "warmup", "fig6": "warmup", "fig7": "warmup", "fig8": "warmup",
         "fig5": "early_instability", "fig9": "clipping"}


def reproduce(figure: str, shared_workspace, out_dir):
    """``refplay reproduce FIGURE --quick`` in the shared workspace, under the figure's lock."""
    entry = importlib.import_module(f"refplay.reproduce.{figure}").ENTRY
    with shared_workspace.lock(LOCKS[figure]):
        return entry, entry.run(quick=True, out_dir=out_dir, workspace=shared_workspace.path,
                                workers=0)


@pytest.mark.slow
@pytest.mark.parametrize("figure", ("fig9", "fig5"))
def test_quick_reproduction_writes_pngs_and_checks_its_claim(figure, shared_workspace, tmp_path):
    entry, r = reproduce(figure, shared_workspace, tmp_path)
    assert r.figure == figure and r.quick
    for path in r.pngs.values():
        assert path.exists() and path.stat().st_size > 10_000
    assert r.claim_holds is True, r.check          # measured at the pinned seed (docs/instability.md)
    assert r.decision and r.caveat == entry.caveat
    if figure == "fig5":
        assert r.check["max_spike_height"] >= 2.0 and r.check["sparse_monotone"]
    else:
        assert r.check["unclipped_status"] == "infeasible"


@pytest.mark.slow
@pytest.mark.parametrize("figure, panels", [("fig4", {"lr_sweep"}), ("fig6", {"warmup"}),
                                            ("fig7", {"7a", "7b"}), ("fig8", {"lr_sweep"})])
def test_quick_warmup_and_stability_figures(figure, panels, shared_workspace, tmp_path):
    """The warmup figures' claims hold at the pinned seed; Figure 7's does not on this workload
    (the first failing rate is 16x lr*, so the sweep is not instability-limited): the test
    checks that the verdict follows from the numbers, as docs/instability.md reports."""
    _, r = reproduce(figure, shared_workspace, tmp_path)
    assert set(r.pngs) == panels
    for path in r.pngs.values():
        assert path.exists() and path.stat().st_size > 10_000
    c = r.check
    if figure == "fig4":      # CL24: a 10%-of-steps warmup makes 3 x lr* feasible
        assert r.claim_holds and c["feasible_with_warmup"]
        assert c["three_x_lr"] >= 3 * c["lr_star"] * (1 - 1e-12)
        assert c["largest_feasible_warmup"] >= 2 * c["largest_feasible"]
    elif figure == "fig6":    # the shortest stable warmup is at most 10% of the steps
        assert r.claim_holds and c["within_10pct"] and not c["no_warmup_stable"]
    elif figure == "fig7":
        assert r.claim_holds == (c["boundary_decision"] == "instability_limited")
        assert c["divergence_threshold"] > c["lr_star"]
    else:                     # CL22: warmup raises the best stable lr at least 2x
        assert r.claim_holds and c["unstable"]["ratio"] >= 2.0
