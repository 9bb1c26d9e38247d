"""refplay.io: atomic writes with the permissions ``open()`` would give, pickle-free loads."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from refplay import io


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


WRITERS = {
    "write_text": lambda p: io.write_text(p, "hello"),
    "save_json": lambda p: io.save_json(p, {"a": 1}),
    "save_npz": lambda p: io.save_npz(p, {"x": np.arange(3)}),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_atomic_files_get_the_mode_open_would_give(tmp_path, umask, writer, mask):
    """Results are readable like the database: 0o666 less the umask, not mkstemp's 0o600."""
    umask(mask)
    reference = tmp_path / "plain.txt"
    with open(reference, "w") as f:          # what every other program writes
        f.write("x")
    path = WRITERS[writer](tmp_path / "out.bin")
    assert _mode(path) == 0o666 & ~mask == _mode(reference)


def test_a_replaced_file_gets_the_current_umask_too(tmp_path, umask):
    umask(0o077)
    path = io.write_text(tmp_path / "a.txt", "first")
    assert _mode(path) == 0o600
    umask(0o022)
    io.write_text(path, "second")
    assert _mode(path) == 0o644 and path.read_text() == "second"


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o000])
def test_current_umask_reads_without_changing_it(umask, mask):
    umask(mask)
    assert io.current_umask() == mask
    assert io.current_umask() == mask              # reading twice: still unchanged
    assert os.umask(mask) == mask                  # ... and the process's umask is as set


def test_current_umask_without_proc_falls_back_and_restores(umask, monkeypatch, tmp_path):
    """Where /proc has no Umask line, the set-and-restore path gives the same answer."""
    monkeypatch.setattr(io, "_PROC_STATUS", tmp_path / "no-such-file")
    umask(0o027)
    assert io.current_umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = io.write_text(tmp_path / "r.json", "old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)     # the crash comes after the bytes were written
    with pytest.raises(OSError, match="disk full"):
        io.write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_round_trips(tmp_path):
    arrays = {"w": np.linspace(0, 1, 5, dtype=np.float32), "step": np.int64(7)}
    loaded = io.load_npz(io.save_npz(tmp_path / "a.npz", arrays))
    assert loaded["w"].tobytes() == arrays["w"].tobytes() and int(loaded["step"]) == 7
    assert json.loads(io.save_json(tmp_path / "a.json", {"x": [1, 2]}).read_text()) == {"x": [1, 2]}


def test_object_arrays_are_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="'bad'"):
        io.save_npz(tmp_path / "a.npz", {"bad": np.array([{}], dtype=object)})
    assert not list(tmp_path.iterdir())


def _all_kinds_of_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "params/dense/w": rng.standard_normal((3, 4)).astype(np.float32),
        "step": np.asarray(7), "fingerprint": np.asarray('{"seed": 0, "näme": "é"}'),
        "mask": np.array([True, False, True]),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "strided": np.arange(20.0)[::3], "empty": np.zeros((0, 3), np.float32),
        "no_strings": np.array([], dtype="U3"), "when": np.array(["2020-01-01"], dtype="M8[D]"),
        "bytes": np.arange(5, dtype=np.uint8), "complex": np.array([1 + 2j]),
        "half": np.ones(3, np.float16), "nan": np.array([np.nan, np.inf, -0.0]),
        "ünicode/name": np.arange(3),
    }


def test_npz_files_read_back_as_np_savez_writes_them(tmp_path):
    """save_npz writes the .npz format itself (np.savez is slow per array): np.load and
    zipfile read it, every array comes back with its dtype, shape and bytes, in order."""
    arrays = _all_kinds_of_arrays()
    path = io.save_npz(tmp_path / "a.npz", arrays)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None                       # every CRC checks out
        assert archive.namelist() == [f"{k}.npy" for k in arrays]
    loaded = io.load_npz(path)
    np.savez(tmp_path / "reference.npz", **arrays)
    reference = io.load_npz(tmp_path / "reference.npz")
    assert list(loaded) == list(reference) == list(arrays)
    for key, want in reference.items():
        got = loaded[key]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), key
        assert got.tobytes() == want.tobytes(), key
    # Same arrays, same bytes: no time stamp inside.
    assert io.save_npz(tmp_path / "b.npz", arrays).read_bytes() == path.read_bytes()


def test_npz_with_a_structured_array_goes_through_np_savez(tmp_path):
    records = np.zeros(2, dtype=[("a", "f4"), ("b", "i8")])
    records["b"] = [3, 4]
    loaded = io.load_npz(io.save_npz(tmp_path / "r.npz", {"records": records, "x": np.ones(2)}))
    assert loaded["records"].dtype == records.dtype
    assert loaded["records"].tobytes() == records.tobytes()


@pytest.fixture
def fsyncs(monkeypatch):
    """Count the calls of os.fsync (still flushing for real)."""
    calls = []
    real = os.fsync

    def counting(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_durable_writes_fsync_and_non_durable_ones_write_the_same_bytes_without(tmp_path,
                                                                                 fsyncs):
    arrays = {"w": np.linspace(0, 1, 5, dtype=np.float32), "step": np.int64(7)}
    io.save_npz(tmp_path / "durable.npz", arrays)
    assert len(fsyncs) == 1
    io.save_npz(tmp_path / "fast.npz", arrays, durable=False)
    io.write_bytes(tmp_path / "fast.bin", b"abc", durable=False)
    assert len(fsyncs) == 1
    assert (tmp_path / "fast.npz").read_bytes() == (tmp_path / "durable.npz").read_bytes()
    assert (tmp_path / "fast.bin").read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["durable.npz", "fast.bin", "fast.npz"]


def test_sync_flushes_each_file_and_its_folder_once_and_skips_missing_ones(tmp_path, fsyncs):
    a = io.save_npz(tmp_path / "a.npz", {"x": np.arange(3)}, durable=False)
    b = io.write_bytes(tmp_path / "b.bin", b"b", durable=False)
    io.sync([a, b, tmp_path / "never_written.npz"])
    assert len(fsyncs) == 3                          # two files and their one folder


def test_a_failed_non_durable_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = io.save_npz(tmp_path / "a.npz", {"x": np.arange(3)}, durable=False)
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError, match="full"):
        io.save_npz(path, {"x": np.arange(4)}, durable=False)
    monkeypatch.undo()
    assert io.load_npz(path)["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


# ------------------------------------------------------------------ output folders
def test_output_dir_defaults_to_runs_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(io.OUT_ENV, raising=False)
    path = io.output_dir("02_quasi_random_search")
    assert path == Path("runs") / "02_quasi_random_search" and (tmp_path / path).is_dir()
    assert io.output_dir("02_quasi_random_search") == path          # exists already: fine


def test_output_dir_root_from_the_environment_then_the_argument(tmp_path, monkeypatch):
    monkeypatch.setenv(io.OUT_ENV, str(tmp_path / "elsewhere"))
    elsewhere = tmp_path / "elsewhere" / "t"
    assert io.output_dir("t") == elsewhere and elsewhere.is_dir()
    assert io.output_dir("t", root=tmp_path / "arg") == tmp_path / "arg" / "t"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../up", 3])
def test_output_dir_refuses_anything_but_one_folder_name(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="output name="):
        io.output_dir(name)
    assert list(tmp_path.iterdir()) == []
