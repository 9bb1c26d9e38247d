"""Shared fixtures. Optional packages: see ``tests/helpers.py``."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

# Under CI, property tests draw the same examples every run (no flaky reds from a
# newly found example; the examples a developer finds locally are still random).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
