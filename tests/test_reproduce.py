"""refplay.reproduce: the registry, the docs page, the command, and each figure at --quick size."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from refplay import reproduce
from refplay.cli import reproduce as cli
from refplay.procedures import studies
from refplay.procedures.result import ProcedureResult
from refplay.reproduce import base, docs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ registry
def test_registry_lists_figures_in_the_playbooks_order_and_loads_each_entry():
    ids = reproduce.ids()
    assert ids[:3] == ["fig1", "fig2", "fig3"]
    assert ids == [f for f in reproduce.PLAYBOOK_FIGURES if f in ids]
    for figure in reproduce.ids():
        entry = reproduce.get(figure)
        assert entry.id == figure
        assert entry.upstream and all(u.url.startswith(base.UPSTREAM_BASE) for u in entry.upstream)
        assert entry.claim and entry.caveat and entry.section
        assert entry.section_url.startswith(base.PLAYBOOK_URL + "#")


def _only_first_three(monkeypatch):
    monkeypatch.setattr(reproduce, "FIGURES", {f: m for f, m in reproduce.FIGURES.items()
                                               if f in ("fig1", "fig2", "fig3")})


def test_registry_refuses_unknown_and_not_yet_reproduced_figures(monkeypatch):
    _only_first_three(monkeypatch)
    with pytest.raises(ValueError, match="'fig4' is not reproduced yet.*fig1"):
        reproduce.get("fig4")
    with pytest.raises(ValueError, match="'fig10' is not a playbook figure"):
        reproduce.get("fig10")
    with pytest.raises(TypeError, match="figure must be a string"):
        reproduce.get(1)


def test_figure_3s_upstream_marks_the_broken_link_and_offers_the_existing_image():
    upstream = {u.name: u for u in reproduce.get("fig3").upstream}
    assert upstream["have_we_sampled_enough.png"].broken
    assert not upstream["validation_error_vs_num_trials.png"].broken
    assert [u.name for u in reproduce.get("fig1").upstream] == ["bad_search_space.png",
                                                                "good_search_space.png"]


def test_result_round_trips_through_its_dict():
    r = _result("fig1", Path("/tmp/x.png"), holds=False)
    back = base.ReproResult.from_dict(r.to_dict())
    assert back == r and back.pngs == {"panel": Path("/tmp/x.png")}


def test_study_names_carry_a_hash_of_what_they_compute():
    from refplay.procedures import boundaries
    space = boundaries.space(1e-5, 1e-3, 400)
    a = studies.halton_spec("fig1_bad", workload="mnist1d_cnn", search_space=space, num_trials=8,
                            max_train_steps=400, eval_every=100)
    b = studies.halton_spec("fig1_bad", workload="mnist1d_cnn", search_space=space, num_trials=9,
                            max_train_steps=400, eval_every=100)
    assert a.name.startswith("fig1_bad-") and a.name != b.name
    assert a.name == studies.halton_spec("fig1_bad", workload="mnist1d_cnn", num_trials=8,
                                         search_space=boundaries.space(1e-5, 1e-3, 400),
                                         max_train_steps=400, eval_every=100).name


def test_caveat_is_written_under_the_figure_and_saved(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    base.add_caveat(fig, "Laptop analogue: a line")
    assert [t.get_text() for t in fig.texts] == ["Laptop analogue: a line"]
    path = base.save_png(fig, tmp_path / "sub" / "f.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------- docs
def _result(figure, png, holds=True, quick=False):
    return base.ReproResult(figure=figure, pngs={"panel": png}, numbers={"x": 1.5},
                            decision=f"decision of {figure}", claim_holds=holds,
                            check={"ratio": 4.25, "ok": holds}, quick=quick,
                            caveat=f"caveat of {figure}", seconds=12.0)


def test_docs_page_puts_each_png_beside_the_upstream_image_with_claim_and_verdict(tmp_path):
    entries = [reproduce.get("fig1"), reproduce.get("fig3")]
    pngs = [tmp_path / "figures" / "a.png", tmp_path / "figures" / "b.png"]
    results = [_result("fig1", pngs[0]), _result("fig3", pngs[1], holds=False, quick=True)]
    page = docs.write(entries, results, tmp_path / "figures.md")
    text = page.read_text()
    assert "![fig1 panel](figures/a.png)" in text           # relative to the page
    assert "(" + base.UPSTREAM_BASE + "bad_search_space.png)" in text
    assert "![playbook validation_error_vs_num_trials.png](" + base.UPSTREAM_BASE in text
    # the broken upstream link is named, never shown as an image
    assert "![playbook have_we_sampled_enough.png]" not in text
    assert "[`have_we_sampled_enough.png`](" + base.UPSTREAM_BASE + "have_we_sampled_enough.png)" \
        in text
    assert "ratio = 4.25; ok = yes → the claim **holds**." in text
    assert "the claim **does not hold** (at the `--quick` size)" in text
    assert "decision of fig3" in text and "caveat of fig1" in text
    assert text.count("| **holds** |") == 1 and text.count("| **does not hold** |") == 1
    assert "CL11" in text


def test_docs_refuses_results_that_do_not_pair_with_entries(tmp_path):
    with pytest.raises(ValueError, match="entry 'fig1' is paired with the result of 'fig3'"):
        docs.markdown([reproduce.get("fig1")], [_result("fig3", tmp_path / "a.png")], tmp_path)
    with pytest.raises(ValueError, match="must pair up"):
        docs.markdown([reproduce.get("fig1")], [], tmp_path)


# ----------------------------------------------------------------------- CLI
def _parse(argv):
    parser = argparse.ArgumentParser(prog="refplay")
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["reproduce", *argv])


def test_cli_refuses_bad_figures_and_options_before_running_anything(tmp_path, monkeypatch):
    _only_first_three(monkeypatch)
    for argv, message in ((["fig1", "fig4"], "'fig4' is not reproduced yet"),
                          (["all", "fig1"], "'all' cannot be combined"),
                          (["figure1"], "not a playbook figure"),
                          (["fig1", "--docs", "x.md"], "--docs needs 'all'"),
                          (["fig1", "--workers", "-1"], "--workers must be >= 0"),
                          (["fig1", "--jobs", "0"], "--jobs must be >= 1")):
        args = _parse([*argv, "--out", str(tmp_path / "out")])
        with pytest.raises(ValueError, match=message):
            args.func(args)
    assert not (tmp_path / "out").exists()


def _fake_entry(figure):
    def procedure(quick, workspace, workers=0):
        fig = Figure()
        fig.add_subplot().plot([0, 1])
        return ProcedureResult(
            question="a fake question?", decision="keep going", numbers={"value": 0.25},
            figures={"only": fig})

    def check(result):
        return base.Check(holds=True, numbers={"value": result.numbers["value"]})
    return base.Entry(id=figure, title=f"Fake {figure}", section="A section", anchor="a-section",
                      upstream=(base.Upstream("fake.png"),), claim_id="CL0",
                      claim="a fake claim", caveat="a fake", procedure=procedure, check=check,
                      panels=(base.Panel("only", "only", f"{figure}.png"),))


FULL = [38, 64, 97, 64, 13, 45, 43, 142, 4]      # the entries' full_time, seconds


@pytest.mark.parametrize("cpus,seconds,jobs,workers,want", [
    (2, FULL, None, None, (2, 0)),      # two figures, one CPU each, trials in-process
    (4, FULL, None, None, (2, 2)),      # the longest (28 %) needs its share: 2 workers
    (8, FULL, None, None, (2, 4)),
    (1, FULL, None, None, (1, None)),
    (8, [10] * 9, None, None, (8, 0)),            # even figures: one CPU each
    (8, [10] * 4, None, None, (4, 2)),            # four even figures: two CPUs each
    (2, [0, 0, 0], None, None, (2, 0)),           # untimed: as if even
    (2, [90], None, None, (1, None)),             # one figure: a pool over every CPU
    (2, FULL, 1, None, (1, None)),                # one figure at a time, as before
    (2, FULL, 3, 2, (3, 2)),                      # what the user asks for
])
def test_cpus_are_shared_out_among_the_figures(monkeypatch, cpus, seconds, jobs, workers, want):
    from refplay.study import executors
    monkeypatch.setattr(executors, "available_cpus", lambda: cpus)
    assert cli.share_cpus(seconds, jobs, workers) == want


def test_side_by_side_figures_start_longest_first_at_their_size(monkeypatch):
    times = {"fig1": ("74 s", "8 s"), "fig2": ("≈ 3 min", "30 s"), "fig3": ("", ""),
             "fig4": ("90 s", "1 min")}
    entries = [_fake_entry(f) for f in times]
    entries = [dataclasses.replace(e, full_time=times[e.id][0], quick_time=times[e.id][1])
               for e in entries]
    assert cli.longest_first(entries, quick=False) == ["fig2", "fig4", "fig1", "fig3"]
    assert cli.longest_first(entries, quick=True) == ["fig4", "fig2", "fig1", "fig3"]


def test_cli_all_prints_numbers_decision_claim_and_writes_pngs_json_and_page(tmp_path, capsys,
                                                                            monkeypatch):
    fakes = {f: _fake_entry(f) for f in ("fig1", "fig2")}
    monkeypatch.setattr(reproduce, "ids", lambda: list(fakes))
    monkeypatch.setattr(reproduce, "get", lambda f: fakes[f])
    out = tmp_path / "docs" / "figures"
    args = _parse(["all", "--quick", "--out", str(out), "--workers", "0", "--jobs", "1",
                   "--workspace", str(tmp_path / "ws")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "== fig1: Fake fig1 [quick]" in printed and "== fig2" in printed
    assert "value: 0.25" in printed and "decision: keep going" in printed
    assert "claim CL0: a fake claim" in printed and "-> HOLDS (value=0.25)" in printed
    assert "claims: 2 hold, 0 do not" in printed
    assert (out / "fig1.png").read_bytes()[:8] == PNG_MAGIC
    assert base.ReproResult.from_dict(__import__("json").loads((out / "fig2.json").read_text())
                                      ).numbers == {"value": 0.25}
    page = (tmp_path / "docs" / "figures.md").read_text()     # OUT.md beside OUT
    assert "![fig1 only](figures/fig1.png)" in page
    assert "refplay reproduce all --quick --out" in page


# ------------------------------------------------- each figure at --quick size
def _png_ok(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width > 400 and height > 300          # a real figure, not an empty canvas


@pytest.mark.slow
def test_fig1_quick_bad_range_expands_upward_good_range_is_ok(tmp_path):
    r = reproduce.get("fig1").run(quick=True, out_dir=tmp_path / "out",
                                  workspace=tmp_path / "ws", workers=0)
    assert r.numbers["bad"]["decision"] == "expand_high"
    assert r.numbers["bad"]["top3_positions"][0] > 0.8
    assert r.numbers["good"]["decision"] == "ok"
    assert 0.2 < r.numbers["good"]["top3_positions"][0] < 0.8
    # the best trial of the good range beats the best of the bad one
    assert r.numbers["good"]["best_error"] < r.numbers["bad"]["best_error"]
    assert r.claim_holds
    assert set(r.pngs) == {"bad", "good"}                  # both panels of Figure 1
    for panel in ("bad", "good"):
        _png_ok(r.pngs[panel])
        assert len(r.figures[panel].axes) == 1
        assert any("Laptop analogue" in t.get_text() for t in r.figures[panel].texts)


@pytest.mark.slow
def test_fig2_quick_bucketed_best_within_one_bucket_and_strongest_decay_worst(tmp_path):
    r = reproduce.get("fig2").run(quick=True, out_dir=tmp_path / "out",
                                  workspace=tmp_path / "ws", workers=0)
    exact = r.numbers["exact_best_error"]
    assert len(exact) == 5 and max(exact) == exact[-1]          # 1e-2 is the worst value
    assert abs(r.check["exact_argmin_index"] - r.check["bucketed_argmin_index"]) <= 1
    assert r.claim_holds
    assert set(r.pngs) == {"exact", "bucketed"}
    for name in r.pngs:
        _png_ok(r.pngs[name])
        assert len(r.figures[name].axes) == 1
        assert r.figures[name].axes[0].get_xscale() == "log"


@pytest.mark.slow
def test_fig3_quick_iqr_shrinks_and_rerun_resumes_from_the_workspace(tmp_path):
    entry = reproduce.get("fig3")
    r = entry.run(quick=True, out_dir=tmp_path / "out", workspace=tmp_path / "ws", workers=0)
    assert r.check["iqr_ratio"] > 2
    assert r.check["medians_non_increasing"] and r.check["min_whisker_constant"]
    assert r.numbers["median_20"] <= r.numbers["median_6"]
    assert r.claim_holds
    assert math.isfinite(r.numbers["retrain_std"])
    _png_ok(r.pngs["boxes"])
    assert len(r.figures["boxes"].axes) == 1
    # the studies are in the workspace: a second run reads them and gives the same numbers
    again = entry.run(quick=True, out_dir=tmp_path / "out2", workspace=tmp_path / "ws",
                      workers=0)
    assert again.numbers == r.numbers


def test_docs_table_says_how_long_each_full_size_run_takes(tmp_path):
    import dataclasses
    timed = dataclasses.replace(reproduce.get("fig1"), full_time="≈ 9 min")
    untimed = dataclasses.replace(reproduce.get("fig3"), full_time="")
    entries = [timed, untimed]
    results = [_result("fig1", tmp_path / "a.png"), _result("fig3", tmp_path / "b.png")]
    text = docs.markdown(entries, results, tmp_path)
    assert "| holds? | full-size run |" in text
    assert "| **holds** | ≈ 9 min |" in text and "| **holds** | not timed yet |" in text
