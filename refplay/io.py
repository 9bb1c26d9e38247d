"""Atomic file writes and pickle-free loads.

Every file refplay writes goes to a temporary file in the same directory and
is moved into place with ``os.replace``, so a crash never leaves a half-written
file behind (DESIGN.md principle 6).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _atomic_write_bytes(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` (``.npz``) atomically. Object arrays are refused."""
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"array {k!r} has dtype object; only numeric/bool/str arrays are saved")
    return _atomic_write_bytes(Path(path), lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file with ``allow_pickle=False``."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as pretty JSON atomically."""
    data = json.dumps(obj, indent=2, sort_keys=False, allow_nan=True).encode()
    return _atomic_write_bytes(Path(path), lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    return _atomic_write_bytes(Path(path), lambda f: f.write(text.encode()))
