"""Shared pytest fixtures. The repo root is on sys.path (tests import mfparse from the tree)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def seed(request):
    """A random seed, printed so a failure can be replayed (MFPARSE_SEED=N to force one)."""
    import random

    value = int(os.environ.get("MFPARSE_SEED", random.randrange(1 << 30)))
    print(f"{request.node.nodeid}: seed {value}")
    return value
