"""Checkpoints: the latest one for resuming, the N best for retrospective selection.

The playbook ("Saving checkpoints and retrospectively selecting the best
checkpoint"): "Set up the pipeline to keep track of the N best checkpoints
seen so far during training. At the end of training, model selection is then
a matter of choosing the best checkpoint seen during training. We call this
**retrospective optimal checkpoint selection**."

A checkpoint directory holds, once at least N evaluations have happened,
exactly N + 1 ``.npz`` files:

* ``latest.npz`` — the full training state at the most recent evaluation
  (parameters, model state, optimizer state, step, data-iterator position,
  evaluation history, per-step gradient norms), from which a killed trial
  resumes;
* ``step_00001200.npz`` … — the same content at each of the N best
  evaluations so far, ranked by the selection metric (lower is better; ties
  go to the earlier step; NaN ranks last).

Every file is written atomically (``refplay.io.save_npz``) and read with
``allow_pickle=False``. An evaluation writes one file, ``latest.npz``: first
the previous ``latest.npz`` is renamed to the ``step_….npz`` of its step (a
rename moves no bytes), then the new one is written under the free name,
then the best files its history no longer ranks are deleted, the previous
one included when it does not rank. A best file is thus the ``latest.npz``
of its step, or a copy of it made once at the end of the trial
(:meth:`CheckpointStore.finish`). The order of the operations makes a crash
at any moment harmless: a best file appears *before* the ``latest.npz``
whose history ranks it, and files are deleted only *after*; a crash between
the rename and the write leaves the renamed file as the newest checkpoint,
which is where a resumed trial starts (:meth:`CheckpointStore.load_latest`
makes it ``latest.npz`` again and removes any leftovers: stray best files,
half-written temporaries).

**Durability.** During a trial the files are written without an fsync
(``durable=False``, see :mod:`refplay.io`) and never over an existing file.
That is safe against a killed process (kill -9, out of memory): the OS keeps
what the process wrote. It is not a promise against a power loss or an OS
crash during the trial, after which a checkpoint may be missing or damaged;
:meth:`CheckpointStore.load_latest` then skips it for the next readable one
(or a fresh start), and since every step is a pure function of the seed and
the step, the resumed trial still ends bitwise as an uninterrupted one: only
the steps since that checkpoint are recomputed. :meth:`CheckpointStore.finish`
flushes the kept files to the disk once, at the end of the trial. The
reason is time: an fsync per evaluation cost 2-7 % of a small trial, and on
ext4 replacing a file forces its data towards the disk (``auto_da_alloc``),
milliseconds, where a rename to a free name takes microseconds.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from refplay import _validate, io

LATEST = "latest.npz"
_BEST_PATTERN = re.compile(r"^step_(\d{8,})\.npz$")


def best_filename(step: int) -> str:
    """File name of the checkpoint taken at ``step``: ``step_00001200.npz``."""
    return f"step_{int(step):08d}.npz"


def rank_steps(history: Sequence[tuple[int, float]]) -> list[int]:
    """Steps of ``history`` (pairs ``(step, metric)``) from best to worst.

    Lower metric is better; ties go to the earlier step; NaN ranks last.
    """
    def key(item: tuple[int, float]):
        step, value = item
        value = float(value)
        return (math.isnan(value), value if not math.isnan(value) else 0.0, int(step))
    return [int(step) for step, _ in sorted(history, key=key)]


def best_steps(history: Sequence[tuple[int, float]], keep_best: int) -> list[int]:
    """The ``keep_best`` best steps of ``history``, best first."""
    return rank_steps(history)[:keep_best]


# --------------------------------------------------------------- tree packing
def pack(prefix: str, tree: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"params/dense_1/w": ...}`` from ``prefix="params"`` and a tree."""
    return {f"{prefix}/{k}": np.asarray(v) for k, v in tree.items()}


def unpack(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack`; keeps the stored (insertion) order of the leaves."""
    head = prefix + "/"
    return {k[len(head):]: np.array(v, copy=True) for k, v in arrays.items() if k.startswith(head)}


# ---------------------------------------------------------------------- store
class CheckpointStore:
    """The checkpoint files of one trial in ``directory``.

    ``keep_best`` (N ≥ 0) best checkpoints are kept by the history of the
    selection metric, plus ``latest.npz``.
    """

    def __init__(self, directory: str | os.PathLike, keep_best: int = 1) -> None:
        self.directory = Path(directory)
        self.keep_best = _validate.integer("keep_best", keep_best, low=0)
        # (step, best steps of its history) of latest.npz as this store last wrote
        # or read it; None: not known yet (read from the file when needed).
        self._latest: tuple[int, list[int]] | None = None

    @property
    def latest_path(self) -> Path:
        return self.directory / LATEST

    def best_path(self, step: int) -> Path:
        return self.directory / best_filename(step)

    def save(self, step: int, arrays: Mapping[str, np.ndarray],
             history: Sequence[tuple[int, float]]) -> list[Path]:
        """Checkpoint ``arrays`` taken at ``step``; ``history`` includes ``step``.

        One file is written: ``latest.npz``. The file it held until now
        becomes the best file of its step first, by a rename, and stays when
        that step is still among the ``keep_best`` best. Returns the paths kept
        so far: the best files (best first), then ``latest.npz``; :meth:`finish`
        adds the best file of the last step when it ranks.
        """
        keep = best_steps(history, self.keep_best)
        previous = self._latest_step()
        if previous is not None and previous != step:
            # 1. Before any latest that ranks it: the previous latest moves aside, by name only.
            os.replace(self.latest_path, self.best_path(previous))
        io.save_npz(self.latest_path, arrays, durable=False)  # 2. the resume point moves forward
        self._latest = (int(step), keep)
        self._prune(keep)                               # 3. only then forget the others
        return self.paths(history)

    def finish(self) -> None:
        """End of a trial: ``latest.npz``'s step, when it ranks, gets its best file too,
        and every kept file is flushed to the disk.

        A byte copy, written atomically, once per trial; afterwards the folder
        holds every best file and ``latest.npz``, as the module docstring says,
        and they survive a power loss.
        """
        step = self._latest_step()
        if step is not None and step in self._latest[1] and not self.best_path(step).exists():
            io.write_bytes(self.best_path(step), self.latest_path.read_bytes(), durable=False)
        if self.directory.exists():
            io.sync([self.latest_path, *self._best_files().values()])

    def _latest_step(self) -> int | None:
        """The step of ``latest.npz`` (read from its ``step`` and history arrays when this
        store has not written it); ``None`` when there is none or it cannot be read."""
        if not self.latest_path.exists():
            self._latest = None
            return None
        if self._latest is None:
            try:
                with np.load(self.latest_path, allow_pickle=False) as z:
                    history = history_from_arrays({k: z[k] for k in z.files
                                                   if k.startswith("history/")})
                    self._latest = (int(z["step"]), best_steps(history, self.keep_best))
            except Exception:  # noqa: BLE001 - an unreadable latest is never renamed or copied
                return None
        return self._latest[0]

    def newest_readable(self) -> tuple[Path | None, dict[str, np.ndarray] | None,
                                       list[tuple[Path, str]]]:
        """The newest checkpoint that can be read, without changing any file.

        Tries ``latest.npz``, then the best files from the latest step down.
        Returns ``(path, arrays, skipped)``: ``path`` and ``arrays`` are
        ``None`` when no checkpoint can be read, and ``skipped`` lists each
        damaged file (truncated, empty, not an ``.npz``, missing its step)
        with the reason it was skipped.
        """
        skipped: list[tuple[Path, str]] = []
        if not self.directory.exists():
            return None, None, skipped
        candidates = [self.latest_path] if self.latest_path.exists() else []
        candidates += [path for _, path in sorted(self._best_files().items(), reverse=True)]
        for path in candidates:
            try:
                arrays = io.load_npz(path)
                if "step" not in arrays:
                    raise ValueError("it holds no 'step' array")
            except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, by name
                skipped.append((path, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]))
                continue
            return path, arrays, skipped
        return None, None, skipped

    def load_latest(self) -> dict[str, np.ndarray] | None:
        """The arrays of the newest readable checkpoint (``None`` when there is none).

        Normally ``latest.npz``. A damaged checkpoint (a truncated write on a
        full disk, a file overwritten by hand) is skipped for the next newest
        one, or for a fresh start, and moved aside to ``<name>.damaged`` with
        its bytes untouched; :attr:`skipped` then lists what was skipped and
        why. A best file read instead of ``latest.npz`` is renamed to it (the
        resume point is always ``latest.npz``). Also deletes what a crash may
        have left behind: temporaries of interrupted atomic writes, and best
        files no longer ranked in the history stored in the checkpoint (keys
        ``"history/steps"`` and ``"history/metric"``).
        """
        self.skipped: list[tuple[Path, str]] = []
        self._latest = None
        if not self.directory.exists():
            return None
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        path, arrays, skipped = self.newest_readable()
        for bad, reason in skipped:
            aside = bad.with_name(bad.name + ".damaged")
            os.replace(bad, aside)            # a rename: the damaged bytes are kept as they are
            self.skipped.append((aside, reason))
        if arrays is None:
            for best in self._best_files().values():
                best.unlink(missing_ok=True)
            return None
        if path != self.latest_path:
            os.replace(path, self.latest_path)      # the resume point is latest.npz again
        self._prune(best_steps(history_from_arrays(arrays), self.keep_best))
        return arrays

    def load_step(self, step: int) -> dict[str, np.ndarray]:
        """The arrays of the best checkpoint taken at ``step``."""
        path = self.best_path(step)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} "
                                    f"(kept: {sorted(self._best_files())})")
        return io.load_npz(path)

    def paths(self, history: Sequence[tuple[int, float]]) -> list[Path]:
        """Files that exist for ``history``: the best ones (best first), then latest."""
        keep = [self.best_path(s) for s in best_steps(history, self.keep_best)]
        return [p for p in (*keep, self.latest_path) if p.exists()]

    def _best_files(self) -> dict[int, Path]:
        out = {}
        for path in self.directory.iterdir():
            m = _BEST_PATTERN.match(path.name)
            if m:
                out[int(m.group(1))] = path
        return out

    def _prune(self, keep: Sequence[int]) -> None:
        for step, path in self._best_files().items():
            if step not in keep:
                path.unlink(missing_ok=True)


def history_to_arrays(history: Sequence[tuple[int, float]]) -> dict[str, np.ndarray]:
    """The selection history as two arrays (``history/steps``, ``history/metric``)."""
    return {"history/steps": np.asarray([s for s, _ in history], dtype=np.int64),
            "history/metric": np.asarray([m for _, m in history], dtype=np.float64)}


def history_from_arrays(arrays: Mapping[str, np.ndarray]) -> list[tuple[int, float]]:
    """Inverse of :func:`history_to_arrays`."""
    steps = arrays.get("history/steps", np.zeros(0, np.int64))
    metric = arrays.get("history/metric", np.zeros(0))
    return [(int(s), float(m)) for s, m in zip(steps, metric)]
