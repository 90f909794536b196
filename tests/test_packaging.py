"""Packaging and set-up (issues 13 and 18): the lock, the licence, the build settings, the type
stub and what the installed wheel carries. Checks of source-tree files run in a source tree (or
an unpacked sdist); checks of the installed package run against whichever mfparse is imported."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys

import pytest

import mfparse
from mfparse import _native
from helpers import ROOT

IN_TREE = all(os.path.exists(os.path.join(ROOT, p)) for p in ("pyproject.toml", "csrc", "MANIFEST.in", "Makefile"))
tree_only = pytest.mark.skipif(not IN_TREE, reason="tests copied out of the source tree (installed-wheel run)")


def _read(*parts) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _pyproject() -> dict:
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _requirements(text: str) -> dict[str, str]:
    """{normalized name: the rest of the line} for each requirement line (no comments, options)."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("-"):
            continue
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(.*)", line)
        out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2).strip()
    return out


# ---- the lock ---------------------------------------------------------------------------------

@tree_only
def test_lock_pins_every_input_exactly_with_hashes():
    wanted = _requirements(_read("requirements-dev.in"))
    lock_text = _read("requirements-dev.txt")
    assert "make lock" in lock_text.splitlines()[4], "the lock says how it was made"
    locked = _requirements(lock_text)
    assert set(wanted) <= set(locked), f"not locked: {set(wanted) - set(locked)} (run `make lock`)"
    for name, spec in locked.items():
        assert spec.startswith("=="), (name, spec)
    # every pinned package has at least one hash
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock_text.split("\n", 6)[-1])
    for block in blocks:
        if re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*==", block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    assert locked["torch"].startswith("==2.13.0"), "torch stays the CPU build on this machine's disk"
    assert locked["cython"].startswith("==3."), locked["cython"]
    assert "cython" in wanted and "<4" in wanted["cython"]


@tree_only
def test_pyproject_runtime_dependencies_are_ranges():
    proj = _pyproject()["project"]
    for dep in proj["dependencies"] + [d for ds in proj["optional-dependencies"].values() for d in ds]:
        assert "==" not in dep, dep
    assert _pyproject()["build-system"]["requires"] == ["setuptools>=77", "Cython>=3.0,<4"]


@tree_only
def test_makefile_installs_the_lock_and_nothing_on_the_host():
    mk = _read("Makefile")
    assert re.search(r"^\$\(STAMP\): \$\(LOCK\)$", mk, re.M) and "LOCK := requirements-dev.txt" in mk
    assert "--require-hashes -r $(LOCK)" in mk
    assert re.search(r"^lock:", mk, re.M) and "pip-compile" in mk
    # apt-get may be named in comments and messages, never run
    code = [re.sub(r'"[^"]*"', '""', line) for line in mk.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "apt-get" in line]
    assert "apt-get install clang libclang-rt-14-dev" in mk


# ---- licence and build settings -----------------------------------------------------------------

@tree_only
def test_license_matches_pyproject():
    text = _read("LICENSE")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    proj = _pyproject()["project"]
    assert proj["license"] == "Apache-2.0" and proj["license-files"] == ["LICENSE"]


@tree_only
def test_sdist_manifest_carries_the_tests():
    manifest = _read("MANIFEST.in").splitlines()
    for line in ("graft tests", "graft docs", "prune build"):
        assert line in manifest
    assert "fvisibility=hidden" in _read("setup.py")


def test_extension_exports_only_its_init():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("needs nm (binutils)")
    out = subprocess.run([nm, "-D", "--defined-only", _native.__file__], capture_output=True, text=True, check=True)
    symbols = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert symbols == ["PyInit__native"], symbols


# ---- the type stub --------------------------------------------------------------------------------

def _stub() -> ast.Module:
    path = os.path.join(os.path.dirname(mfparse.__file__), "_native.pyi")
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def test_stub_names_what_the_extension_defines():
    tree = _stub()
    stub = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub[node.target.id] = node
    stub = {k: v for k, v in stub.items() if not k.startswith("_")}
    public = {k for k, v in vars(_native).items() if not k.startswith("_") and not inspect.ismodule(v)}
    assert set(stub) == public
    for name, node in stub.items():
        obj = getattr(_native, name)
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args]
            assert params == list(inspect.signature(obj).parameters), name
        elif isinstance(node, ast.ClassDef):
            assert inspect.isclass(obj), name
            members = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            real = {k for k in vars(obj) if not k.startswith("_")}
            assert members - {"__init__", "__len__"} == real, name


# ---- the installed wheel --------------------------------------------------------------------------

def test_installed_wheel_contents():
    if "site-packages" not in mfparse.__file__.split(os.sep):
        pytest.skip("mfparse is imported from a source tree, not an installed wheel")
    from importlib import metadata

    dist = metadata.distribution("mfparse")
    files = {str(f) for f in dist.files}
    assert "mfparse/_native.pyi" in files and "mfparse/py.typed" in files
    assert {f"mfparse/schemas/{n}.json" for n in ("scan", "inspect", "bench")} <= files  # JSON Schemas
    assert not [f for f in files if f.endswith((".pyx", ".pxi", ".c"))]
    assert any(f.endswith("licenses/LICENSE") for f in files), sorted(f for f in files if "dist-info" in f)
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    assert sys.prefix in mfparse.__file__
