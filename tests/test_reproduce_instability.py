"""Reproduce entries for the playbook's Figures 4-9 (instability, warmup, clipping).

Figures 4-8 run on the hand-written Transformer (``refplay.train.unstable``), each its own
experiment; their quick sizes train a subset of the full experiment's trials (same model,
steps and settings: fewer rates, warmups or seeds). Each test asserts the direction of its
figure's claim, measured at the pinned seed and reported in docs/instability.md and
docs/figures.md -- including the claims that do not hold on this workload, whose tests
check that the verdict follows from the numbers.
"""

from __future__ import annotations

import argparse
import importlib
import json

import pytest

from refplay.cli import reproduce as cli
from refplay.reproduce import base
from refplay.reproduce.base import Entry
from refplay.train.result import TrialStatus

IDS = ("fig4", "fig5", "fig6", "fig7", "fig8", "fig9")


@pytest.mark.parametrize("figure", IDS)
def test_entry_names_its_figure_claim_and_caveat(figure):
    entry = importlib.import_module(f"refplay.reproduce.{figure}").ENTRY
    assert isinstance(entry, Entry) and entry.id == figure
    assert entry.upstream and all(u.name.endswith(".png") for u in entry.upstream)
    assert "Laptop analogue" in entry.caveat and "MNIST-1D" in entry.caveat
    assert entry.claim and entry.section_url.startswith("https://github.com/")


def test_figures_4_to_8_are_five_different_experiments():
    """No two of them run the same procedure on the same setup (the playbook reuses no run
    between them; Figure 5 uses Figure 4's models, but in its own runs)."""
    runs = set()
    for figure in ("fig4", "fig5", "fig6", "fig7", "fig8"):
        entry = importlib.import_module(f"refplay.reproduce.{figure}").ENTRY
        setup = entry.arguments.get("setup")
        runs.add((entry.procedure, None if setup is None else setup.name))
    assert len(runs) == 5
    assert len({importlib.import_module(f"refplay.reproduce.{f}").ENTRY.procedure
                for f in ("fig4", "fig5", "fig6", "fig7", "fig8")}) == 5


# The lock of each figure's studies in the run's shared workspace (tests/conftest.py):
# Figure 9 shares its clipping study with tests/test_procedures_instability.py, Figures 5, 7
# (its sweep) and 9 with tutorial 10, so each trains once per run and the other user
# re-reads it.
LOCKS = {"fig4": "fig4", "fig5": "frequent_evals", "fig6": "fig6", "fig7": "fig7",
         "fig8": "fig8", "fig9": "clipping"}


def reproduce(figure: str, shared_workspace, out_dir):
    """``refplay reproduce FIGURE --quick`` in the shared workspace, under the figure's lock."""
    entry = importlib.import_module(f"refplay.reproduce.{figure}").ENTRY
    with shared_workspace.lock(LOCKS[figure]):
        return entry, entry.run(quick=True, out_dir=out_dir, workspace=shared_workspace.path,
                                workers=0)


def test_figures_side_by_side_give_what_each_gives_alone(shared_workspace, tmp_path, capsys):
    # `refplay reproduce fig9 fig5 --jobs 2`: each figure in its own worker process, reading
    # (or training) the same studies as the in-process runs of this module.
    alone = {f: reproduce(f, shared_workspace, tmp_path / "alone")[1] for f in ("fig9", "fig5")}
    parser = argparse.ArgumentParser(prog="refplay")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reproduce", "fig9", "fig5", "--quick", "--jobs", "2",
                              "--out", str(tmp_path / "out"),
                              "--workspace", str(shared_workspace.path)])
    first, second = sorted((LOCKS["fig5"], LOCKS["fig9"]))    # tutorials' order: no deadlock
    with shared_workspace.lock(first), shared_workspace.lock(second):
        assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "2 figure(s) in" in printed
    for figure, r in alone.items():
        saved = json.loads((tmp_path / "out" / f"{figure}.json").read_text())
        assert saved["numbers"] == json.loads(json.dumps(r.numbers, default=str))
        assert saved["claim_holds"] == r.claim_holds
        assert f"numbers: {tmp_path / 'out' / figure}.json" in printed
        _pngs_written(base.ReproResult.from_dict(saved))


def _pngs_written(r) -> None:
    for path in r.pngs.values():
        assert path.exists() and path.stat().st_size > 10_000


@pytest.mark.slow
def test_fig9_clipping(shared_workspace, tmp_path):
    entry, r = reproduce("fig9", shared_workspace, tmp_path)
    _pngs_written(r)
    assert r.claim_holds is True and r.check["unclipped_status"] == "infeasible"
    assert r.decision and r.caveat == entry.quick_caveat or r.caveat == entry.caveat


@pytest.mark.slow
def test_fig4_the_changed_model_fails_at_the_high_rate_and_warmup_rescues_it(
        shared_workspace, tmp_path):
    _, r = reproduce("fig4", shared_workspace, tmp_path)
    _pngs_written(r)
    c, n = r.check, r.numbers
    hi = n["lrs"].index(n["target_lr"])
    # Post-LN is worse than Pre-LN at the high rate by more than 2 standard errors ...
    assert all(g > c["margin"] for g in c["gap_at_target"])
    # ... it collapses at the top of the grid, where Pre-LN still trains ...
    assert n["statuses"]["unstable"][0][-1] == TrialStatus.INFEASIBLE
    assert n["statuses"]["stable"][0][-1] == TrialStatus.COMPLETE
    # ... and the warmup lets it train at the high rate, better than without.
    assert c["rescued"] and c["rescued_errors"][0] < n["errors"]["unstable"][0][hi]
    assert c["target_over_lr_star"] >= 3 and r.claim_holds


@pytest.mark.slow
def test_fig5_only_the_every_step_view_shows_the_early_rise(shared_workspace, tmp_path):
    _, r = reproduce("fig5", shared_workspace, tmp_path)
    _pngs_written(r)
    c = r.check
    post = c["runs"].index("unstable seed 0")
    pre = c["runs"].index("stable seed 0")
    # Both models' validation loss rises above its start within the first 10 steps, which the
    # every-50-steps view never shows; the changed model then collapses, the standard one
    # learns. (Which of them rises more changes with the seed: 1.23x / 1.08x on seed 0,
    # 1.04x / 1.40x on seed 1 at the full size.)
    assert all(j > 1.0 for j in c["jump"]) and all(t <= 10 for t in c["jump_step"])
    assert all(c["coarse_below_start"])
    assert c["recovered"][pre] and not c["recovered"][post]
    # CL23 asks for a 2x rise: the verdict follows the numbers (1.2x here, docs/figures.md).
    assert r.claim_holds == any(c["hidden"]) == any(j >= 2 for j in c["jump"])


@pytest.mark.slow
def test_fig6_each_longer_warmup_fails_later(shared_workspace, tmp_path):
    _, r = reproduce("fig6", shared_workspace, tmp_path)
    _pngs_written(r)
    steps = r.check["failing_step"]["seed 0"]
    failed = [steps[w] for w in sorted(steps, key=int) if steps[w] is not None]
    assert len(failed) >= 3 and failed == sorted(failed) and len(set(failed)) == len(failed)
    low, high = r.check["threshold_lr"]
    assert 0 < low <= high < r.numbers["target_lr"] * 1.0001
    assert r.claim_holds


@pytest.mark.slow
def test_fig7_collapse_above_lr_star_and_the_verdict_follows_the_boundary_check(
        shared_workspace, tmp_path):
    _, r = reproduce("fig7", shared_workspace, tmp_path)
    _pngs_written(r)
    c, n = r.check, r.numbers
    # The largest rates collapse (infeasible) and lr* is below them ...
    assert n["statuses"][-1] == TrialStatus.INFEASIBLE
    assert c["lr_star"] < c["divergence_threshold"]
    # ... and at 5 x lr* the run that first trained goes back up to chance (Figure 7b).
    assert 5 in c["factors_with_rise"]
    # Figure 7a's claim (lr* at the infeasible edge) is the boundary check's verdict: on this
    # workload the sweep's best sits a factor 4 below the first collapse (docs/figures.md).
    assert r.claim_holds == (c["boundary_decision"] == "instability_limited")


@pytest.mark.slow
def test_fig8_warmup_moves_the_post_ln_best_rate_up(shared_workspace, tmp_path):
    _, r = reproduce("fig8", shared_workspace, tmp_path)
    _pngs_written(r)
    c = r.check
    assert c["ratio"]["unstable"] >= 2.0                                    # CL22, Post-LN
    assert c["unstable+warmup"]["lr_star"] > c["unstable"]["lr_star"]
    assert r.claim_holds          # the quick size sweeps Post-LN only: its ratio decides
