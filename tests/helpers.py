"""Test helpers shared by the format tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = textwrap.dedent(
    r"""
    import os, pickle, random, resource, sys
    sys.path.insert(0, {root!r})
    # a hostile file must never make us allocate much: cap the address space (not under ASan,
    # whose shadow memory needs a large reservation; ASan reports huge allocations itself)
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import numpy as np
    import mfparse
    data = open({path!r}, "rb").read()
    fmt = {fmt!r}
    seed = {seed}

    def attempt(buf):
        try:
            with mfparse.open(buf, format=fmt) as m:
                for t in m.tensors():
                    if t.offset is not None and t.nbytes < (1 << 24):
                        a = m[t.name]
                        a.sum() if a.dtype.kind in "biuf" else None
                m.tree()
                m.metadata
            return "ok"
        except mfparse.MFParseError as e:
            if not str(e):
                raise AssertionError("empty error message")
            return "error"

    counts = {{"ok": 0, "error": 0}}
    n = len(data)
    if n <= {all_prefixes}:
        prefixes = range(n)
    else:
        step = max(1, n // {sampled})
        prefixes = sorted(set(range(0, min(n, 1024))) | set(range(max(0, n - 256), n)) | set(range(0, n, step)))
    for k in prefixes:
        counts[attempt(data[:k])] += 1
    rnd = random.Random(seed)
    for _ in range({flips}):
        b = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(n)
            b[i] = rnd.randrange(256)
        counts[attempt(bytes(b))] += 1
    print(counts)
    """
)


def check_robust(path, fmt=None, seed=0, flips=300, all_prefixes=6000, sampled=3000, limit_gb=4, timeout=600):
    """Every truncated prefix and `flips` random byte flips of the file at `path` must open to
    an MFParseError or a correct-looking result: no crash, no hang, no huge allocation.
    Runs in a child process with an address-space limit; returns the child's counts line."""
    code = _CHILD.format(root=ROOT, path=os.fspath(path), fmt=fmt, seed=seed, flips=flips,
                         all_prefixes=all_prefixes, sampled=sampled, limit=int(limit_gb * (1 << 30)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"child failed (rc {r.returncode}, seed {seed}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout.strip()


# ---- protobuf wire format as bytes (hostile and hand-made messages) ------------------------------

def varint(n: int) -> bytes:
    """A base-128 varint; negative numbers as protobuf writes them (64-bit two's complement)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vfield(num: int, v: int) -> bytes:
    """A varint field."""
    return varint(num << 3) + varint(v)
