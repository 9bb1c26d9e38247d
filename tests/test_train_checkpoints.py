"""A damaged checkpoint never kills a trial: it resumes from the newest readable one
(or from scratch), says what it skipped and why, and leaves the damaged bytes as they are."""

from __future__ import annotations

import numpy as np
import pytest

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
