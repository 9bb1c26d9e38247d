"""A damaged checkpoint never kills a trial: it resumes from the newest readable one
(or from scratch), says what it skipped and why, and leaves the damaged bytes as they are."""

from __future__ import annotations

import numpy as np
import pytest

from refplay import io
from refplay.train import checkpoints as ckpt
from refplay.train import run_trial
from tests.test_train import ADAM, tiny_workload

RUN = dict(seed=0, max_train_steps=40, eval_every=10, keep_best=2)

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: b"this is not a zip file\n" * 50,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_latest_resumes_from_the_newest_readable_checkpoint(tmp_path, damage):
    wl = tiny_workload()
    fresh = run_trial(wl, ADAM, **RUN)
    run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    latest = tmp_path / ckpt.LATEST
    damaged_bytes = DAMAGE[damage](latest.read_bytes())
    latest.write_bytes(damaged_bytes)

    resumed = run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    assert resumed.status == "complete"
    (skipped,) = resumed.extras.pop("checkpoint_skipped")
    assert skipped["file"].endswith("latest.npz.damaged") and skipped["reason"]
    assert resumed.same_computation(fresh)
    # The damaged file is kept, byte for byte, beside a healthy new latest.npz.
    assert (tmp_path / "latest.npz.damaged").read_bytes() == damaged_bytes
    assert latest.exists() and latest.read_bytes() != damaged_bytes


def test_every_checkpoint_damaged_means_a_fresh_start(tmp_path):
    wl = tiny_workload()
    fresh = run_trial(wl, ADAM, **RUN)
    run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    originals = {}
    for path in sorted(tmp_path.glob("*.npz")):
        path.write_bytes(b"")
        originals[path.name] = b""
    resumed = run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    skipped = resumed.extras.pop("checkpoint_skipped")
    assert len(skipped) == len(originals) == 3
    assert resumed.same_computation(fresh)
    assert sorted(p.name for p in tmp_path.glob("*.damaged")) == sorted(
        f"{name}.damaged" for name in originals)


def test_newest_readable_changes_nothing(tmp_path):
    wl = tiny_workload()
    run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    (tmp_path / ckpt.LATEST).write_bytes(b"PK\x03\x04 broken")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    path, arrays, skipped = ckpt.CheckpointStore(tmp_path, 2).newest_readable()
    assert path.name.startswith("step_") and int(arrays["step"]) > 0
    assert [p.name for p, _ in skipped] == [ckpt.LATEST]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    np.testing.assert_array_equal(arrays["step"], int(path.name[5:13]))


def test_a_crash_between_moving_latest_aside_and_writing_the_new_one_resumes_there(
        tmp_path, monkeypatch):
    """Each save first renames latest.npz to its step's file, then writes the new latest.npz
    under the free name: a crash in between leaves no latest.npz, only the renamed file."""
    wl = tiny_workload()
    fresh = run_trial(wl, ADAM, **{**RUN, "keep_best": 0})
    real, calls = io.save_npz, []

    def crash_on_third(path, arrays, **options):
        calls.append(int(arrays["step"]))
        if len(calls) == 3:
            raise OSError("the process dies here")
        return real(path, arrays, **options)

    monkeypatch.setattr(io, "save_npz", crash_on_third)
    crashed = run_trial(wl, ADAM, **{**RUN, "keep_best": 0}, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    assert crashed.status == "failed" and "the process dies here" in crashed.reason
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.best_filename(calls[1])]

    resumed = run_trial(wl, ADAM, **{**RUN, "keep_best": 0}, checkpoint_dir=tmp_path)
    assert resumed.same_computation(fresh)
    assert "checkpoint_skipped" not in resumed.extras
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.LATEST]


def test_the_resume_point_becomes_latest_again(tmp_path):
    wl = tiny_workload()
    run_trial(wl, ADAM, **RUN, checkpoint_dir=tmp_path)
    (tmp_path / ckpt.LATEST).unlink()
    store = ckpt.CheckpointStore(tmp_path, RUN["keep_best"])
    path, expected, _ = store.newest_readable()
    arrays = store.load_latest()
    assert not path.exists() and (tmp_path / ckpt.LATEST).exists()
    assert int(arrays["step"]) == int(expected["step"])
    assert int(io.load_npz(tmp_path / ckpt.LATEST)["step"]) == int(expected["step"])
