"""Line-level lint of the C core and its bindings, run as a test (msgspec's test_cpylint.py does
the same for its C file). Two rules of docs/architecture.md that a compiler cannot check:

1. Only the cursor moves the cursor: no statement outside csrc/mf_core.[ch] and the text layer
   (csrc/mf_text.[ch]) writes a `pos` field, except the sites listed in POS_WRITES with the
   reason each one is safe.
2. Every arena is freed by its owner: in C, the function that calls mf_arena_init(&a, ...) also
   calls mf_arena_free(&a); in the bindings, a local arena is initialised right before a `try:`
   whose `finally:` frees it, and an arena held by an extension type (`self.arena`) is
   initialised in `__cinit__` and freed in that type's `__dealloc__`.
"""

from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the cursor itself and the text layer built on it
CURSOR_FILES = {"mf_core.c", "mf_core.h", "mf_text.c", "mf_text.h"}

# (file, statement) -> why moving pos by hand is safe there. Keep it short: prefer mf_skip,
# mf_take, mf_seek and mf_u8 (checked) to growing this list.
POS_WRITES = {
    ("mf_flatbuf.c", "t->pos = pos;"): "not a cursor: mf_fb_table.pos, the table offset checked just above",
    ("mf_flatbuf.c", "out->pos = pos + 4;"): "not a cursor: mf_fb_vec.pos, the vector checked just above",
    ("mf_pickle.c", "c->pos = nl + 1;"): "nl comes from memchr over [pos, end), so nl + 1 <= end",
    ("mf_pickle.c", "op = *c.pos++;"): "the opcode loop, hot; pos == end is checked on the line before",
    ("mf_proto.h", "c->pos = p + 1;"): "varint fast path, hot; one byte checked left",
    ("mf_proto.h", "c->pos = p + 2;"): "varint fast path, hot; two bytes checked left",
    ("mf_proto.h", "c->pos = p + used + v;"): "field fast path, hot; used + v checked against left",
    ("mf_proto.h", "c->pos = p + used;"): "field fast path, hot; used checked against left",
    ("mf_proto.c", "c->pos = p + 1;"): "varint, one byte checked left",
    ("mf_proto.c", "c->pos = p + i + 1;"): "varint, i < left checked in the loop",
    ("mf_proto.c", "c->pos += v;"): "length checked against mf_remaining on the lines before",
    ("mf_proto.c", "c->pos += 8;"): "after mf_need(c, 8)",
    ("mf_proto.c", "c->pos += 4;"): "after mf_need(c, 4)",
    ("mf_proto.c", "c->pos += n;"): "length checked against mf_remaining on the lines before",
    ("mf_proto.c", "c.pos += w;"): "probe of a message head: mf_remaining(&c) >= w checked on the line before",
    ("mf_proto.c", "c.pos += v;"): "probe of a message head: v <= mf_remaining(&c) checked on the line before",
    ("mf_sstable.c", "uint8_t tag = *c.pos++;"): "snappy loop, hot; `while (c.pos < c.end)`",
    ("mf_tf.c", "c->pos += 2;"): "slice key escape: end - pos >= 2 checked at the top of the loop",
    ("mf_tf.c", "c->pos++;"): "slice key byte: end - pos >= 2 checked at the top of the loop",
    ("mf_torch.c", "c.pos = buf + pos;"): "legacy storages start where the pickles ended (pos <= len)",
    ("mf_torch.c", "c.pos += nbytes;"): "nbytes <= mf_remaining(&c) checked on the lines before",
}

POS_WRITE = re.compile(r"(?:\.|->)pos\s*(?:\+\+|--|[-+]?=(?!=))|(?:\+\+|--)\s*[A-Za-z_][\w.>-]*(?:\.|->)pos\b")


def _code_lines(path):
    """(line number, statement text) of a C file, comments removed."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return list(enumerate(text.split("\n"), 1))


def test_only_the_cursor_moves_pos():
    found, used = [], set()
    for path in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.[ch]"))):
        name = os.path.basename(path)
        if name in CURSOR_FILES:
            continue
        for no, line in _code_lines(path):
            if not POS_WRITE.search(line):
                continue
            key = (name, line.strip())
            if key in POS_WRITES:
                used.add(key)
            else:
                found.append(f"csrc/{name}:{no}: {line.strip()}")
    assert not found, "pos written outside the cursor (use mf_skip/mf_take/mf_seek or mf_text.h):\n" + "\n".join(found)
    assert not set(POS_WRITES) - used, f"allowlist entries no longer needed: {sorted(set(POS_WRITES) - used)}"


def _c_functions(path):
    """(name, body lines) of each top-level function of a C file (K&R-ish layout: the body
    opens at the end of the signature line and closes with a '}' in column 0)."""
    funcs, name, body = [], None, []
    for _, line in _code_lines(path):
        if name is None:
            m = re.match(r"^[A-Za-z_][\w \t*]*?\b(\w+)\s*\([^;]*\)\s*\{\s*$", line)
            if m:
                name, body = m.group(1), []
        elif line.startswith("}"):
            funcs.append((name, body))
            name = None
        else:
            body.append(line)
    return funcs


def test_c_arenas_are_freed_where_they_are_made():
    problems, checked = [], 0
    paths = sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c")) + glob.glob(os.path.join(ROOT, "fuzz", "*.c")))
    for path in paths:
        rel = os.path.relpath(path, ROOT)
        for fname, body in _c_functions(path):
            text = "\n".join(body)
            for arena in re.findall(r"mf_arena_init\(\s*&?\s*([\w.>-]+)", text):
                checked += 1
                if not re.search(r"mf_arena_free\(\s*&?\s*" + re.escape(arena) + r"\s*\)", text):
                    problems.append(f"{rel}: {fname}() initialises arena {arena} and never frees it")
    assert not problems, "\n".join(problems)
    assert checked >= 15  # the function splitter found the arenas of mf_quant.c and fuzz/


def _py_blocks(lines, start):
    """The lines of the block whose header is lines[start] (indentation-based)."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        out.append(line)
    return out


# between mf_arena_init and the `try:` that frees it only C calls and plain assignments may run
NO_RAISE = re.compile(r"^\s*((clear_error|memset|mf_\w+)\(.*\)|[\w.]+ = [\w.]+)\s*$")


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "mfparse", "_native.pyx")),
                    reason="needs the source tree's mfparse/ (the installed-package run has the C sources only)")
def test_binding_arenas_have_an_owner():
    problems = []
    for path in sorted(glob.glob(os.path.join(ROOT, "mfparse", "*.pxi")) + [os.path.join(ROOT, "mfparse",
                                                                                       "_native.pyx")]):
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            m = re.search(r"mf_arena_init\(&([\w.]+)", line)
            if not m:
                continue
            arena = m.group(1)
            where = f"{rel}:{i + 1}"
            if arena.startswith("self."):
                # the owner is the extension type: initialised in __cinit__, freed in __dealloc__
                cls = next(j for j in range(i, -1, -1) if lines[j].startswith("cdef class "))
                block = _py_blocks(lines, cls)
                func = next(lines[j] for j in range(i, cls, -1) if re.match(r"\s+def ", lines[j]))
                if "def __cinit__" not in func:
                    problems.append(f"{where}: {arena} initialised outside __cinit__ ({func.strip()})")
                dealloc = [k for k, ln in enumerate(block) if "def __dealloc__" in ln]
                free = f"mf_arena_free(&{arena})"
                if not dealloc or not any(free in ln for ln in _py_blocks(block, dealloc[0])):
                    problems.append(f"{where}: {lines[cls].strip()} has no __dealloc__ calling {free}")
                continue
            # a local arena: `try:` right after (only C calls between), `finally:` frees it
            j = i + 1
            while j < len(lines) and lines[j].strip() != "try:" and (not lines[j].strip() or NO_RAISE.match(lines[j])):
                j += 1
            if j == len(lines) or lines[j].strip() != "try:":
                problems.append(f"{where}: {lines[j].strip()!r} may raise between mf_arena_init and try:")
                continue
            indent = len(lines[j]) - len(lines[j].lstrip())
            fin = next((k for k in range(j + 1, len(lines)) if lines[k] == " " * indent + "finally:"), None)
            if fin is None or not any(f"mf_arena_free(&{arena})" in ln for ln in _py_blocks(lines, fin)):
                problems.append(f"{where}: the try: after mf_arena_init(&{arena}) has no finally: freeing it")
    assert not problems, "\n".join(problems)


def test_every_external_c_name_has_the_mf_prefix():
    """A function of csrc/ is static or named mf_* (or is a short name a header links as mf_*),
    so that nothing the extension's C core defines can clash with another library's symbols."""
    aliases = set()
    for path in glob.glob(os.path.join(ROOT, "csrc", "*.h")):
        with open(path) as f:
            aliases |= set(re.findall(r"^#define (\w+) mf_\w+$", f.read(), re.M))
    bad = []
    for path in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c"))):
        for no, line in _code_lines(path):
            m = re.match(r"^[A-Za-z_][\w \t*]*?\b(\w+)\s*\(", line)  # a definition or prototype at file scope
            if m and not re.search(r"\b(static|typedef|return|if|for|while|switch)\b", line[:m.end()]) and (
                    not m.group(1).startswith("mf_") and m.group(1) not in aliases):
                bad.append(f"{os.path.relpath(path, ROOT)}:{no}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_built_extension_exports_only_prefixed_symbols():
    import shutil
    import subprocess

    from mfparse import _native

    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(["nm", "-D", "--defined-only", _native.__file__], capture_output=True, text=True,
                         check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    # the build hides everything but the init (setup.py: -fvisibility=hidden)
    assert names == {"PyInit__native"}
