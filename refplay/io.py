"""Atomic file writes and pickle-free loads.

Every file refplay writes goes to a temporary file in the same directory and
is moved into place with ``os.replace``, so a crash never leaves a half-written
file behind (DESIGN.md principle 6).

Two promises, two costs. A *durable* write (the default) also flushes the
file to the disk (``fsync``) before the rename, so it survives a power loss
or an OS crash: the file holds the old or the new bytes, never a mix. With
``durable=False`` the bytes stay in the OS's page cache until the OS writes
them back: still safe against a killed process (kill -9, out of memory, a
crash of Python), since the OS keeps what the process wrote, but after a
power loss the file may be missing, empty or stale. Checkpoints take that
trade (:mod:`refplay.train.checkpoints`): they are written at every
evaluation, an fsync costs milliseconds (two disk flushes on ext4, the
file's and the rename's), and a damaged checkpoint is detected and skipped
on resume. :func:`sync` makes such files durable later, in one go.

Files get the permissions ``open()`` would give them (``0o666`` less the
process's umask), so results are readable by the group like the study
database: ``tempfile.mkstemp`` alone would leave every file at ``0o600``.
"""

from __future__ import annotations

import contextlib
import functools
import io as _bytes_io
import json
import os
import re
import struct
import tempfile
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_UMASK_LOCK = threading.Lock()
_PROC_STATUS = Path("/proc/self/status")       # Linux >= 4.7 lists "Umask:" here


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    Linux reports it in ``/proc/self/status``. Elsewhere the only way is to set
    a umask and put the old one back; a lock keeps two of our own threads from
    interleaving that, and the value is restored at once.
    """
    try:
        status = _PROC_STATUS.read_text()
    except OSError:
        status = ""
    match = re.search(r"^Umask:\s*([0-7]+)$", status, flags=re.MULTILINE)
    if match:
        return int(match.group(1), 8)
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


#: Environment variable naming the folder that tutorial and example outputs go under.
OUT_ENV = "REFPLAY_OUT"
#: Its default, relative to the working directory (git-ignored in the repository).
DEFAULT_OUT = "runs"


def output_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder for the outputs of ``name`` (a tutorial, an example), created if missing.

    ``root / name`` where ``root`` is the argument, else ``$REFPLAY_OUT``, else
    ``runs`` under the working directory: figures, CSVs and checkpoint folders
    never land loose in the repository.
    """
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"output name={name!r} is not allowed: use one folder name, e.g. "
                         f"'02_quasi_random_search'")
    root = root if root is not None else (os.environ.get(OUT_ENV) or DEFAULT_OUT)
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write_bytes(path: Path, write, durable: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())   # mkstemp's 0o600 -> open()'s mode
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *,
             durable: bool = True) -> Path:
    """Write ``arrays`` to ``path`` (``.npz``) atomically. Object arrays are refused.

    ``durable=False`` skips the fsync: safe against a killed process, not
    against a power loss (see the module docstring).
    """
    plain = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; only numeric/bool/str arrays are saved")
        plain[k] = a
    return _atomic_write_bytes(Path(path), lambda f: _write_npz(f, plain), durable)


# The .npz format: a zip archive of .npy files, stored (not compressed). np.savez
# writes it through zipfile, ~50 µs of Python per array; a checkpoint has dozens
# of small arrays, so a trial spent most of a checkpoint's time there. The same
# format written directly costs a few µs per array (header, CRC, bytes).
_ZIP_LOCAL = struct.Struct("<IHHHHHIIIHH")              # local file header
_ZIP_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")      # central directory entry
_ZIP_END = struct.Struct("<IHHHHIIH")                   # end of central directory
_ZIP_VERSION = 20                                       # 2.0: stored files, no zip64
_ZIP_MADE_BY = (3 << 8) | _ZIP_VERSION                  # Unix, as zipfile writes it
_ZIP_DATE = (1 << 5) | 1                                # 1980-01-01 00:00: same bytes every time
_ZIP_UTF8 = 0x800                                       # flag: the name is UTF-8
_ZIP_LIMIT = 2**31                                      # beyond it zip64 is needed: np.savez


def _write_npz(f, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to the file ``f`` as ``np.savez`` would (what ``np.load`` reads).

    Arrays are written in C order; a structured dtype, a huge file or very
    many arrays go through ``np.savez`` itself.
    """
    total = sum(a.nbytes for a in arrays.values())
    if (len(arrays) >= 2**16 - 1 or total >= _ZIP_LIMIT
            or any(a.dtype.names is not None or a.dtype.subdtype is not None
                   for a in arrays.values())):
        np.savez(f, **arrays)
        return
    central, offset = [], 0
    for key, a in arrays.items():
        name = f"{key}.npy".encode()
        flags = 0 if name.isascii() else _ZIP_UTF8
        a = np.asarray(a, order="C")
        header = _npy_header(a.dtype, a.shape)
        data = a.reshape(-1).view(np.uint8)                # the raw bytes, any dtype
        crc = zlib.crc32(data, zlib.crc32(header))
        size = len(header) + data.size
        f.write(_ZIP_LOCAL.pack(0x04034B50, _ZIP_VERSION, flags, 0, 0, _ZIP_DATE, crc, size,
                                size, len(name), 0))
        f.write(name)
        f.write(header)
        f.write(data)
        central.append(_ZIP_CENTRAL.pack(0x02014B50, _ZIP_MADE_BY, _ZIP_VERSION, flags, 0, 0,
                                         _ZIP_DATE, crc, size, size, len(name), 0, 0, 0, 0,
                                         0o600 << 16, offset) + name)
        offset += _ZIP_LOCAL.size + len(name) + size
    directory = b"".join(central)
    f.write(directory)
    f.write(_ZIP_END.pack(0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0))


@functools.lru_cache(maxsize=4096)
def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header (format 1.0) of a C-ordered array, as ``np.save`` writes it."""
    out = _bytes_io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape})
    return out.getvalue()


def sync(paths) -> None:
    """Flush ``paths`` (files written with ``durable=False``) and their folders to the disk.

    After it returns, the files and their names survive a power loss, as if
    they had been written durably. Missing files are skipped.
    """
    folders = set()
    for path in map(Path, paths):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders.add(path.parent)
    for folder in folders:          # the renames live in the folder's entries
        # Not every OS can open a folder (Windows): there the rename is the file system's job.
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


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


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` atomically (figures: a PNG is never seen half-written).

    ``durable=False`` skips the fsync, as for :func:`save_npz`.
    """
    return _atomic_write_bytes(Path(path), lambda f: f.write(data), durable)
