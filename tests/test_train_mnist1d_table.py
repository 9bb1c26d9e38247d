"""The MNIST-1D table script (``benchmarks/mnist1d_table.py``) in quick mode.

The full table (8,000 steps, 3 seeds) is a benchmark, not a test; here a
300-step run of every model on both datasets must already show the paper's
qualitative result: every model well above chance (10 %), the CNN ahead of
the MLP and of logistic regression on ordinary data, the CNN losing its lead
when ``shuffle_seq=True`` destroys the locality its convolutions rely on while
the linear model and the MLP (blind to the order of their inputs) do not, and
logistic regression already at the paper's 32 %.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mnist1d_table.py"


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("mnist1d_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_table_shows_the_papers_ordering(table, tmp_path, capsys):
    out = table.main(["--quick", "--out", str(tmp_path / "table.json")])
    printed = capsys.readouterr().out
    assert "paper" in printed and "shuffle_seq" in printed
    acc = {(r["model"], r["shuffle_seq"]): r["mean"] for r in out["rows"]}
    assert set(acc) == set(table.PAPER)
    assert all(a > 25.0 for a in acc.values())                      # chance is 10 %
    assert acc[("cnn", False)] > acc[("mlp", False)] > acc[("logreg", False)]
    assert acc[("cnn", False)] - acc[("cnn", True)] > 15.0            # locality matters to the CNN
    assert abs(acc[("logreg", False)] - acc[("logreg", True)]) < 5.0  # not to a linear model,
    assert abs(acc[("mlp", False)] - acc[("mlp", True)]) < 8.0        # nor to a dense one
    # The convex model has converged after 300 steps: already the paper's number.
    assert abs(acc[("logreg", False)] - table.PAPER[("logreg", False)]) <= 5.0
    assert {r["test_accuracy"] for r in out["runs"]} == set(acc.values())   # one seed per cell
    assert (tmp_path / "table.json").exists()
    assert all(r["wall_seconds"] > 0 for r in out["runs"])


def test_targets_are_checked_against_the_published_numbers(table):
    rows = [{"model": m, "shuffle_seq": s, "mean": p} for (m, s), p in table.PAPER.items()]
    assert all(ok for _, ok in table.check_targets(rows))
    off = [dict(r, mean=r["mean"] + 3.5) if r["model"] == "mlp" and not r["shuffle_seq"] else r
           for r in rows]
    failed = [text for text, ok in table.check_targets(off) if not ok]
    assert len(failed) == 2 and any(t.startswith("mlp:") for t in failed)   # the number, the drop
