"""IDX loader on small files written here, valid and corrupted (raw and gzip)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from refplay import data

_TYPE_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
               np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding, written from the format description (independent of the loader)."""
    header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, payload: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip_every_element_type(tmp_path, rng, dtype, gz):
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = _write(tmp_path / "a.idx", _idx_bytes(array), gz)
    loaded = data.load_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


def test_header_is_big_endian(tmp_path):
    # 0x0101 = 257 rows: would read as 0x00010100 if the size were little-endian
    array = np.arange(257 * 2, dtype=np.int16).reshape(257, 2)
    path = _write(tmp_path / "b.idx", _idx_bytes(array))
    np.testing.assert_array_equal(data.load_idx(path), array)
    assert data.load_idx(path)[256, 1] == 513          # values big-endian too


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b"\x01" + b[1:], "wrong magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX element type"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:-5], "truncated data"),
    (lambda b: b + b"\x00\x00", "trailing bytes"),
    (lambda b: b[:9], "truncated header"),
    (lambda b: b[:3], "too short"),
    (lambda b: b"", "too short"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_files_raise_clear_errors(tmp_path, corrupt, message, gz):
    good = _idx_bytes(np.arange(60, dtype=np.uint8).reshape(5, 3, 4))
    path = _write(tmp_path / "bad.idx", corrupt(good), gz)
    with pytest.raises(ValueError, match=message) as info:
        data.load_idx(path)
    assert "bad.idx" in str(info.value)


def test_absurd_header_sizes_are_truncated_data_not_an_overflow(tmp_path):
    # four dimensions of 2**32 - 1: 2**128 elements, far beyond int64
    header = bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[2**32 - 1] * 4)
    path = _write(tmp_path / "huge.idx", header + b"\x00" * 16)
    with pytest.raises(ValueError, match="truncated data"):
        data.load_idx(path)


def test_truncated_gzip_download(tmp_path):
    payload = gzip.compress(_idx_bytes(np.arange(3000, dtype=np.uint8).reshape(3, 1000)))
    path = tmp_path / "cut.gz"
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="gzip"):
        data.load_idx(path)


def _mnist_dir(tmp_path, rng, kind="train", n=12, gz=True, n_labels=None):
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, n if n_labels is None else n_labels).astype(np.uint8)
    suffix = ".gz" if gz else ""
    _write(tmp_path / f"{kind}-images-idx3-ubyte{suffix}", _idx_bytes(images), gz)
    _write(tmp_path / f"{kind}-labels-idx1-ubyte{suffix}", _idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("kind", ["train", "t10k"])
@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_idx(tmp_path, rng, kind, gz):
    images, labels = _mnist_dir(tmp_path, rng, kind, gz=gz)
    ds = data.load_mnist_idx(tmp_path, kind)
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == np.float32
    assert ds.num_classes == 10 and ds.y.dtype == np.int64
    np.testing.assert_allclose(ds.x[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y, labels)
    assert data.load_mnist_idx(tmp_path, kind, dtype=np.float64).x.dtype == np.float64


def test_load_mnist_idx_errors(tmp_path, rng):
    _mnist_dir(tmp_path, rng, "train", n=12, n_labels=11)
    with pytest.raises(ValueError, match="12 images but .* 11 labels"):
        data.load_mnist_idx(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_mnist_idx(tmp_path, "t10k")
    with pytest.raises(ValueError, match="kind"):
        data.load_mnist_idx(tmp_path, "test")
    # labels that are not 1-D uint8 are rejected by name
    _write(tmp_path / "train-labels-idx1-ubyte.gz", _idx_bytes(np.zeros((12, 2), np.uint8)), True)
    with pytest.raises(ValueError, match="labels of shape"):
        data.load_mnist_idx(tmp_path, "train")
