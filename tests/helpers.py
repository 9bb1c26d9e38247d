"""Test helpers importable as ``from tests.helpers import optional_import``.

``optional_import(name)`` imports an optional package. Locally a missing
package skips the test; under CI (``REFPLAY_REQUIRE_OPTIONAL=1``) it *fails*,
so no test is silently skipped where the package is supposed to be installed.
"""

from __future__ import annotations

import importlib
import os

import pytest


def optional_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("REFPLAY_REQUIRE_OPTIONAL") == "1":
            pytest.fail(f"optional package {name!r} is required under CI but missing: {exc}")
        pytest.skip(f"optional package {name!r} not installed")
