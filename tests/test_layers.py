"""Imports only point down: the layer table of docs/architecture.md ("Layers"), enforced over
every import in mfparse/ (module level and inside functions, and the Cython sources), plus no
import cycles, no private names imported across layers, and no reach into ModelFile._reader."""

from __future__ import annotations

import ast
import os
import re

import pytest

from helpers import ROOT

PKG = os.path.join(ROOT, "mfparse")
DOC = os.path.join(ROOT, "docs", "architecture.md")

#: cycles the layering allows, with why (none today; docs/architecture.md says how the scanner avoids one)
ALLOWED_CYCLES: dict = {}

#: names the package (mfparse/__init__.py) defines itself rather than re-exports, by layer
ROOT_OWN = {"__version__": "mfparse.records", "dequantize": "mfparse.quantize"}  # a constant counts as the bottom

if not os.path.isdir(PKG) or not os.path.exists(DOC):
    # the installed-package run (.ci/test-installed) has tests/ and docs/ but no mfparse/ sources;
    # the module-level tables below read them, so skip before building them
    pytest.skip("needs the source tree (docs/ and mfparse/)", allow_module_level=True)


def source(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def layer_table() -> list[tuple[int, str, list[str]]]:
    """[(rank, layer name, module patterns)] from the doc's table, bottom layer first."""
    text = source(DOC)
    section = text[text.index("## Layers"):]
    section = section[:section.index("\n## ", 4)]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s+([^|]+?)\s*\|([^|]+)\|", line)
        if m:
            rows.append((int(m.group(1)), m.group(2), re.findall(r"`([^`]+)`", m.group(3))))
    assert rows, "docs/architecture.md lost its layer table"
    return sorted(rows)


def modules() -> dict[str, str]:
    """{dotted module name: path} of every .py under mfparse/, plus mfparse._native."""
    out = {"mfparse._native": os.path.join(PKG, "_native.pyx")}
    for d, _dirs, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(d, f)
    return out


MODS = modules()


def layer_of(mod: str, table) -> tuple[int, str]:
    """The layer a module belongs to (the longest matching pattern of the table)."""
    best = None
    rel = mod[len("mfparse."):] if mod != "mfparse" else "__init__"
    for rank, name, pats in table:
        for pat in pats:
            hit = (rel == pat.rstrip("/").replace("/", ".") or rel.startswith(pat.rstrip("/").replace("/", ".") + ".")
                   if pat.endswith("/") else rel == pat.replace("/", "."))
            if hit and (best is None or len(pat) > best[0]):
                best = (len(pat), (rank, name))
    assert best is not None, f"{mod} is in no layer of docs/architecture.md's table: place it there"
    return best[1]


def resolve(name: str) -> str:
    """The module an imported dotted name lives in (longest known prefix)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODS:
            return ".".join(parts)
        parts.pop()
    raise AssertionError(f"import of unknown module {name}")


def root_exports() -> dict[str, str]:
    """{name: module} for what mfparse/__init__.py re-exports (module-level from-imports)."""
    tree = ast.parse(source(MODS["mfparse"]))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mfparse."):
            for a in node.names:
                out[a.asname or a.name] = resolve(f"{node.module}.{a.name}")
    return out


ROOT_EXPORTS = root_exports()


def root_name(name: str) -> str:
    """The module that `mfparse.<name>` comes from."""
    if f"mfparse.{name}" in MODS:
        return f"mfparse.{name}"
    if name in ROOT_EXPORTS:
        return ROOT_EXPORTS[name]
    if name in ROOT_OWN:
        return ROOT_OWN[name]
    return "mfparse"


def imports(mod: str) -> list[tuple[str, int, str]]:
    """[(target module, line, what)] for every import of mfparse code in a module: module level
    and inside functions; `import mfparse` counts as the modules of the attributes it is used for."""
    path = MODS[mod]
    out = []
    if path.endswith(".pyx"):  # the extension: its .pyx and every included .pxi
        for f in sorted(os.listdir(PKG)):
            if f.startswith("_native") and f.endswith((".pyx", ".pxi")):
                for i, line in enumerate(source(os.path.join(PKG, f)).splitlines(), 1):
                    # (cimports of .pxd files are C declarations, not imports of Python code)
                    m = re.match(r"\s*(?:from\s+(mfparse[\w.]*)\s+import|import\s+(mfparse[\w.]*))", line)
                    if m:
                        target = next(g for g in m.groups() if g)
                        out.append((resolve(target), i, f"{f}: {line.strip()}"))
        return out
    tree = ast.parse(source(path))
    is_pkg = path.endswith("__init__.py")
    bare = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "mfparse":
                    bare = bare or a.asname is None
                elif a.name.startswith("mfparse."):
                    out.append((resolve(a.name), node.lineno, f"import {a.name}"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod if is_pkg else mod.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            if base != "mfparse" and not base.startswith("mfparse."):
                continue
            for a in node.names:
                if base == "mfparse":
                    target = root_name(a.name)
                else:
                    full = f"{base}.{a.name}"
                    target = full if full in MODS else resolve(base)
                out.append((target, node.lineno, f"from {base} import {a.name}"))
    if bare:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mfparse":
                out.append((root_name(node.attr), node.lineno, f"mfparse.{node.attr}"))
    return [t for t in out if t[0] != mod]


def test_every_module_has_a_layer():
    table = layer_table()
    for mod in MODS:
        layer_of(mod, table)
    names = [n for _, n, _ in table]
    assert len(set(names)) == len(names)


def test_imports_only_point_down():
    table = layer_table()
    up = []
    for mod in sorted(MODS):
        mine = layer_of(mod, table)
        for target, line, what in imports(mod):
            theirs = layer_of(target, table)
            if theirs[0] > mine[0]:
                up.append(f"{MODS[mod][len(ROOT) + 1:]}:{line} ({mine[1]}) imports {target} ({theirs[1]}): {what}")
    assert not up, "imports that point up:\n" + "\n".join(up)


def graph() -> dict[str, set[str]]:
    return {mod: {t for t, _, _ in imports(mod)} for mod in MODS}


def strongly_connected(g: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components with more than one module."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = [c for c in strongly_connected(graph()) if frozenset(c) not in ALLOWED_CYCLES]
    assert not cycles, "import cycles (module-level and function-local imports):\n" + "\n".join(
        " <-> ".join(sorted(c)) for c in cycles)


def test_allowed_cycles_still_exist():
    """An allowed cycle that is gone must leave ALLOWED_CYCLES (and the doc) too."""
    found = {frozenset(c) for c in strongly_connected(graph())}
    assert set(ALLOWED_CYCLES) <= found, set(ALLOWED_CYCLES) - found


def test_no_private_names_across_layers():
    table = layer_table()
    bad = []
    for mod in sorted(MODS):
        for target, line, what in imports(mod):
            m = re.fullmatch(r"from (\S+) import (\w+)|mfparse\.(\w+)", what)
            name = m and (m.group(2) or m.group(3))
            if (name and name.startswith("_") and not name.startswith("__") and f"{m.group(1)}.{name}" not in MODS
                    and f"mfparse.{name}" not in MODS and layer_of(target, table) != layer_of(mod, table)):
                bad.append(f"{MODS[mod][len(ROOT) + 1:]}:{line}: {what}")
    assert not bad, "private names imported from another layer:\n" + "\n".join(bad)


def test_modelfile_internals_stay_in_the_api():
    """Nothing outside mfparse/model.py (where ModelFile lives) reads ModelFile._reader: format
    operations go through the public `ModelFile.reader` (and formats.base.reader_of)."""
    bad = []
    for mod, path in sorted(MODS.items()):
        if mod == "mfparse.model" or not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(source(path))):
            if isinstance(node, ast.Attribute) and node.attr == "_reader":
                bad.append(f"{path[len(ROOT) + 1:]}:{node.lineno}")
    assert not bad, "ModelFile._reader read outside mfparse/model.py: " + ", ".join(bad)


def test_the_checker_catches_a_lazy_up_call(tmp_path, monkeypatch):
    """An import inside a function counts (the up-calls this test was written for were all lazy
    imports), and `import mfparse` counts as the modules of the names used from it."""
    p = tmp_path / "fake.py"
    p.write_text("def f(x):\n    import mfparse\n\n    return mfparse.open(x)\n")
    monkeypatch.setitem(MODS, "mfparse.formats.fake", str(p))
    assert [t for t, _, _ in imports("mfparse.formats.fake")] == ["mfparse.api"]
    table = layer_table()
    assert layer_of("mfparse.api", table)[0] > layer_of("mfparse.formats.fake", table)[0]
    assert root_name("scan") == "mfparse.scan" and root_name("MFParseError") == "mfparse.errors"
