"""Shared pytest fixtures. The repo root is on sys.path (tests import mfparse from the tree),
except with MFPARSE_TEST_INSTALLED=1: then the tests run against the installed mfparse (the wheel,
as .ci/test-installed does) and fail at once if it would come from a source tree."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALLED = os.environ.get("MFPARSE_TEST_INSTALLED") == "1"
if not INSTALLED and ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if INSTALLED:
    import mfparse as _mfparse

    if "site-packages" not in _mfparse.__file__.split(os.sep):
        raise pytest.UsageError(f"MFPARSE_TEST_INSTALLED=1 but mfparse comes from {_mfparse.__file__}")


def pytest_report_header(config):
    import mfparse

    return f"mfparse: {os.path.dirname(mfparse.__file__)}" + (" (installed)" if INSTALLED else "")


@pytest.fixture
def seed(request):
    """A random seed, printed so a failure can be replayed (MFPARSE_SEED=N to force one)."""
    import random

    value = int(os.environ.get("MFPARSE_SEED", random.randrange(1 << 30)))
    print(f"{request.node.nodeid}: seed {value}")
    return value
