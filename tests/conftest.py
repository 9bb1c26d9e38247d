"""Shared fixtures. Optional packages: see ``tests/helpers.py``.

The suite runs on both cores with pytest-xdist (``python -m pytest -n 2 --dist loadgroup``,
the README's command). Each worker is its own process with its own session, so
:func:`pytest_collection_modifyitems` keeps the tests that share a module-scoped
fixture (a study workspace filled once per module) on one worker, every other
test goes wherever a core is free, and :func:`shared_workspace` is the one study
workspace all workers of a run share.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

try:
    import fcntl
except ImportError:          # Windows: no flock; each worker then keeps its own workspace
    fcntl = None

# Under CI, property tests draw the same examples every run (no flaky reds from a
# newly found example; the examples a developer finds locally are still random).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


_SHARED_SCOPES = ("class", "module", "package")


def pytest_collection_modifyitems(config, items):
    """Under xdist, group each module's tests that use a fixture wider than a test.

    ``--dist loadgroup`` sends a group to one worker, so such a fixture (e.g. a
    module's study workspace, whose later tests re-read the studies of earlier
    ones) is built once, not once per worker; the other tests of the module
    stay free to run on either core.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    _long_modules_first(items)
    for item in items:
        # pytest's own record of the fixtures an item uses (no public accessor).
        definitions = getattr(item, "_fixtureinfo", None)
        if definitions is None:
            continue
        scopes = {d.scope for defs in definitions.name2fixturedefs.values() for d in defs}
        if scopes & set(_SHARED_SCOPES):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))



def _long_modules_first(items) -> None:
    """Move the modules with long end-to-end tests (the tutorials, then those
    marked ``slow``) to the front, each module's tests kept together and in order.

    Two workers finish together only if the longest tests start early: run
    last, the tutorials (one to two minutes each) left one core idle. The
    tutorials go first also because some of them train studies of the shared
    workspace that later tests only read (``tests/test_tutorials.py``).
    """
    def is_tutorials(module) -> bool:
        return module.__name__.endswith("test_tutorials")

    def is_long(module) -> bool:
        return is_tutorials(module) or any(
            i.get_closest_marker("slow") for i in by_module[module])

    by_module: dict = {}
    for item in items:
        by_module.setdefault(item.module, []).append(item)
    long_first = sorted(by_module, key=lambda m: (not is_tutorials(m), not is_long(m)))  # stable
    items[:] = [item for module in long_first for item in by_module[module]]


class SharedWorkspace:
    """A study workspace shared by every test (and every xdist worker) of one run.

    Studies are named by a hash of what they compute, so a study that one test
    trained is only read by the next test that asks for it. Train (and read)
    under :meth:`lock`, one name per group of studies, so that two workers
    never run the same study at once (the study runner refuses a second
    driver, even one that would only read). A tutorial run as a script uses
    the workspace through ``REFPLAY_TUTORIAL_WORKSPACE`` while its test holds
    the locks (``tests/test_tutorials.py``)::

        def test_fig4(shared_workspace, tmp_path):
            with shared_workspace.lock("warmup"):
                r = fig4.ENTRY.run(quick=True, out_dir=tmp_path,
                                   workspace=shared_workspace.path, workers=0)
    """

    def __init__(self, path: Path, shared: bool) -> None:
        self.path = path
        self.shared = shared      # False: this worker's own folder (no flock on this OS)
        path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self, name: str):
        """Hold the lock ``name`` across workers (a no-op when the folder is not shared)."""
        if not self.shared:
            yield
            return
        with open(self.path / f".{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)      # released when the file closes
            yield


@pytest.fixture(scope="session")
def shared_workspace(tmp_path_factory) -> SharedWorkspace:
    """One study workspace for the whole run; see :class:`SharedWorkspace`.

    Under xdist every worker has its own base temporary folder
    (``.../pytest-N/popen-gw0``); their common parent belongs to this run, so
    the workspace there is shared by the workers and by no other run.
    """
    base = tmp_path_factory.getbasetemp()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or fcntl is None:
        return SharedWorkspace(base / "shared_workspace", shared=False)
    return SharedWorkspace(base.parent / "shared_workspace", shared=True)
