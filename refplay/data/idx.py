"""Read IDX files: the format of MNIST and Fashion-MNIST.

Nothing here downloads anything: point :func:`load_mnist_idx` at a folder
holding the four files you downloaded (gzipped or not).

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/)::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 d bytes   the size of each dimension, big-endian uint32
    then        prod(sizes) elements, big-endian, C order

Malformed files raise ValueError saying what is wrong: a wrong magic number,
an unknown element type, a header or data shorter than announced (a
truncated download), or trailing bytes.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from refplay import _validate
from refplay.data.dataset import Dataset

__all__ = ["load_idx", "load_mnist_idx", "IDX_DTYPES"]

IDX_DTYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected by content, not name)."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:   # truncated or corrupted gzip stream
        raise ValueError(f"{path}: corrupted or truncated gzip file ({exc})") from None


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) into an array of native byte order."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(f"{path}: wrong magic number 0x{data[:4].hex()}; an IDX file starts "
                         f"with two zero bytes, e.g. 0x00000803 for MNIST images")
    if type_code not in IDX_DTYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX element type 0x{type_code:02X}; allowed: {allowed}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header_len} bytes, "
                         f"the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize     # Python ints: no overflow on bad headers
    got = len(data) - header_len
    if got < expected:
        raise ValueError(f"{path}: truncated data: shape {shape} of {dtype.name} needs "
                         f"{expected} bytes after the header, the file has {got}")
    if got > expected:
        raise ValueError(f"{path}: {got - expected} unexpected trailing bytes after the "
                         f"{expected} bytes of data for shape {shape}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"neither {name} nor {name}.gz found in {directory}")


def load_mnist_idx(directory: str | os.PathLike, kind: str = "train", *,
                   dtype=np.float32) -> Dataset:
    """MNIST or Fashion-MNIST from the standard files in ``directory``.

    ``kind="train"`` reads ``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte`` (each optionally ``.gz``); ``kind="t10k"`` the
    test files. Images become ``x`` of shape ``(N, 1, H, W)`` (NCHW, the layout
    of :mod:`refplay.nn`) scaled to ``[0, 1]`` in ``dtype``; labels are int64
    in ``[0, 10)``.
    """
    kind = _validate.one_of("kind", kind, ("train", "t10k"))
    dtype = _validate.float_dtype("dtype", dtype)
    directory = Path(directory)
    image_path = _find(directory, f"{kind}-images-idx3-ubyte")
    label_path = _find(directory, f"{kind}-labels-idx1-ubyte")
    images, labels = load_idx(image_path), load_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_path}: expected uint8 images of shape (N, H, W), "
                         f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{label_path}: expected uint8 labels of shape (N,), "
                         f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{image_path} has {len(images)} images but {label_path} has "
                         f"{len(labels)} labels")
    x = (images[:, None, :, :] / np.array(255, dtype=dtype)).astype(dtype)
    return Dataset(x, labels.astype(np.int64), num_classes=10, name=f"idx/{kind}")
