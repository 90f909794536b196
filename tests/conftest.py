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
# every report mfparse.scan's fast path gives in the tests is checked against the full scan's
# (mfparse/scan/quick.py; MFPARSE_SCAN_FASTPATH=1 or 0 in the environment overrides)
os.environ.setdefault("MFPARSE_SCAN_FASTPATH", "check")

if INSTALLED:
    import mfparse as _mfparse

    if "site-packages" not in _mfparse.__file__.split(os.sep):
        raise pytest.UsageError(f"MFPARSE_TEST_INSTALLED=1 but mfparse comes from {_mfparse.__file__}")


#: the reference libraries of the differential tests (requirements-dev.in). With
#: MFPARSE_REQUIRE_REFS=1 (the Makefile's test targets set it; so does CI=true) a missing one fails
#: the tests that import it instead of skipping them: a differential module must not turn into a
#: silent skip. Optional features (tqdm progress bars, ...) keep skipping.
REFERENCES = {"torch", "onnx", "onnxruntime", "h5py", "safetensors", "gguf", "tflite", "flatbuffers", "joblib",
              "matplotlib", "numpy", "ml_dtypes"}
if os.environ.get("CI", "").lower() in ("1", "true") and "MFPARSE_REQUIRE_REFS" not in os.environ:
    os.environ["MFPARSE_REQUIRE_REFS"] = "1"
REQUIRE_REFS = os.environ.get("MFPARSE_REQUIRE_REFS") == "1"

if REQUIRE_REFS:
    _importorskip = pytest.importorskip

    def _import_reference(modname, *args, **kwargs):
        try:
            return _importorskip(modname, *args, **kwargs)
        except pytest.skip.Exception as e:
            if modname.split(".")[0] not in REFERENCES:
                raise
            pytest.fail(f"MFPARSE_REQUIRE_REFS=1: reference library {modname!r} is missing ({e.msg}); "
                        "install requirements-dev.txt", pytrace=False)

    pytest.importorskip = _import_reference


def pytest_report_header(config):
    import mfparse

    return (f"mfparse: {os.path.dirname(mfparse.__file__)}" + (" (installed)" if INSTALLED else "")
            + (" (reference libraries required)" if REQUIRE_REFS else ""))


@pytest.fixture
def seed(request):
    """A seed for the tests that draw random mutants: MFPARSE_SEED=N (`make test` sets a fixed
    one, so CI is repeatable), else a new random one; printed so a failure can be replayed."""
    import random

    given = os.environ.get("MFPARSE_SEED", "random")
    value = random.randrange(1 << 30) if given == "random" else int(given)
    print(f"{request.node.nodeid}: seed {value}")
    return value
