"""The scanner's fast path for small files: one C call (csrc/mf_scan.c) reads the file, sniffs it,
interprets its pickles and judges every event, for the common cases: a plain pickle, and a zip of
stored members (a torch.save checkpoint) whose directory every zip reader reads alike.

The full scan (mfparse.scan.containers.scan_buffer) stays the reference. The C code answers only
when nothing in the file is unusual: every pickle read to its STOP, no container, no polyglot, no
event the judge reports other than imports, no name that is not printable ASCII, no member a zip
inspector reads. It returns the distinct imports, each marked allowed or not; the ones off the
allowlist get their severity and reason from policy.judge_global here, exactly as the full scan's
Judge gets them. Anything else (a bail) goes to the full scan, with the bytes already read. So a
report from here is the report the full scan gives (tests/test_scan_fastpath.py compares both, to
the field, on every hostile pickle the tests build); the fast path never decides "safe" on its own.

The tables it judges with are built once per process from mfparse/scan/policy.py, pickles.py and
containers.py (the single source). It mirrors the stock registry only: once a checker, sniffer
or zip inspector is plugged in (containers.register_checker), every file takes the full scan.

MFPARSE_SCAN_FASTPATH=0 in the environment (or ENABLED = False) turns it off.
"""

from __future__ import annotations

import _compat_pickle
import os
import time

from mfparse import _native
from mfparse.scan import containers, pickles, policy
from mfparse.scan.report import Context, Finding, ScanReport, Where, sort_findings, verdict_of

#: the fast path is used (MFPARSE_SCAN_FASTPATH=0 turns it off)
ENABLED = os.environ.get("MFPARSE_SCAN_FASTPATH", "1") != "0"
#: MFPARSE_SCAN_FASTPATH=check: every report of the fast path is compared with the full scan's
#: (an AssertionError when they differ); the test suite runs so (tests/conftest.py)
CHECK = os.environ.get("MFPARSE_SCAN_FASTPATH") == "check"

#: files larger than this take the full scan (which maps them)
SMALL_FILE = 1 << 20

# class bits (csrc/mf_scan.h)
ALLOWED, BUILD_OK, SETITEM_OK = 1 << 0, 1 << 1, 1 << 2
ARG_BYTEARRAY, ARG_CODEC, ARG_RECONSTRUCT, ARG_NESTED = 1 << 3, 1 << 4, 1 << 5, 1 << 6
# kinds of marks (findings about zip members that are not imports)
MARK_ANOMALIES, MARK_CRC = 1, 2

_TABLES = None
# the stock registry the C code mirrors (copies of containers' sniffers, checkers, zip inspectors
# and member first bytes), and the objects last seen equal to it
_STOCK = None
_SEEN = None


def name_classes() -> dict:
    """{Python 3 dotted name: class bits}: what the C judge knows of a name."""
    out: dict = {}
    for names, bit in ((policy.ALLOWED, ALLOWED), (pickles._BUILD_OK, BUILD_OK), (pickles._SETITEM_OK, SETITEM_OK),
                       (pickles._BYTEARRAY, ARG_BYTEARRAY), (pickles._CODECS, ARG_CODEC),
                       (pickles._RECONSTRUCT, ARG_RECONSTRUCT), (pickles.NESTED_LOADERS, ARG_NESTED)):
        for n in names:
            out[n] = out.get(n, 0) | bit
    return out


def tables():
    """The C tables (built on first use)."""
    global _TABLES, _STOCK
    if _TABLES is None:
        trig = containers.inspected_names()
        bounds = {"alloc_bomb": pickles.ALLOC_BOMB, "memo_index": pickles.RESOURCE_MEMO_INDEX,
                  "marks": pickles.RESOURCE_MARKS, "expansion_nodes": pickles.EXPANSION_NODES,
                  "expansion_ratio": pickles.EXPANSION_RATIO, "max_stack": pickles.MAX_STACK}
        _TABLES = _native.ScanTables(
            name_classes(), dict(_compat_pickle.NAME_MAPPING), dict(_compat_pickle.IMPORT_MAPPING),
            bytes(sorted(pickles.OPCODES)), bytes(sorted(pickles.OPCODES | containers._MEMBER_MAGIC_FIRST)),
            [c.encode() for c in sorted(policy.SAFE_CODECS)], [n.encode() for n in trig["exact"]],
            [n.encode() for n in trig["base"]], [n.lower().encode() for n in trig["base_suffix"]],
            [n.encode() for n in trig["suffix"]], [n.lower().encode() for n in containers.PICKLE_NAMES], bounds)
        c = containers
        _STOCK = (list(c.SNIFFERS), dict(c.CHECKERS), list(c.ZIP_INSPECTORS), set(c._MEMBER_MAGIC_FIRST))
        _recheck()
    return _TABLES


def _recheck() -> bool:
    """Compare the registry with the stock one (after register_checker or a replaced list)."""
    global _SEEN
    c = containers
    ok = (c.SNIFFERS == _STOCK[0] and c.CHECKERS == _STOCK[1] and c.ZIP_INSPECTORS == _STOCK[2]
          and c._MEMBER_MAGIC_FIRST == _STOCK[3])
    _SEEN = (c.REGISTRY_VERSION, c.SNIFFERS, len(c.SNIFFERS), c.CHECKERS, len(c.CHECKERS), c.CHECKERS.get("zip"),
             c.ZIP_INSPECTORS, len(c.ZIP_INSPECTORS), c._MEMBER_MAGIC_FIRST, len(c._MEMBER_MAGIC_FIRST), ok)
    return ok


def _stock() -> bool:
    """Is the registry the stock one the C code mirrors? (a cheap identity check; anything
    registered, replaced or appended since the last look compares the whole registry again)"""
    s = _SEEN
    c = containers
    if (c.REGISTRY_VERSION == s[0] and c.SNIFFERS is s[1] and c.CHECKERS is s[3] and c.ZIP_INSPECTORS is s[6]
            and c._MEMBER_MAGIC_FIRST is s[8] and len(s[1]) == s[2] and len(s[3]) == s[4]
            and c.CHECKERS.get("zip") is s[5] and len(s[6]) == s[7] and len(s[8]) == s[9]):
        return s[10]
    return _recheck()


def scan(path, t0: float):
    """The fast path's answer for what mfparse.scan was given: a ScanReport when it judged the
    file; else the bytes it read (a path: the full scan goes on with them), or None (the full
    scan reads the file itself: not a small regular file, an unreadable one, a file object)."""
    t = _TABLES if _TABLES is not None else tables()
    if not _stock():
        return None
    if isinstance(path, (str, os.PathLike)):
        name = os.fspath(path)
        if not isinstance(name, str):
            return None  # bytes paths: the full scan (display names are str)
        got = _native.scan_quick_path(os.fsencode(name), t, SMALL_FILE)
        if got.__class__ is tuple:
            return report(name, got, t0)
        return got
    if path.__class__ is bytes:
        got = _native.scan_quick(path, t)
        if got is not None:
            return report(None, got, t0)
    return None


def report(path, got: tuple, t0: float) -> ScanReport:
    """The ScanReport of a fast-path answer (size, pickles, {global: count}, imports off the
    allowlist as (module, name, member, pickle, count, offset, index), zip member marks or None):
    findings as Judge.import_ makes them."""
    size, npickles, seen, others, marks = got
    if marks is not None:
        return _report_marked(path, got, t0)
    findings = []
    verdict = "safe"
    if others:
        new = tuple.__new__
        judge = policy.judge_global
        for module, name, member, pk, count, off, _ in others:
            sev, why = judge(module, name, False)
            if sev is not None:
                findings.append(new(Finding, (sev, why, module, name, member, pk, off, "import", count, "file")))
        if len(findings) > 1:
            findings = sort_findings(findings)
        verdict = verdict_of(findings, ())
    return ScanReport(path, verdict, findings, [], [], seen, npickles, size, time.perf_counter() - t0)


def compare(fast: ScanReport, full: ScanReport) -> None:
    """Raise AssertionError when the fast path's report is not the full scan's (the time aside).
    Not while the tests make arena allocations fail (_native._test_arena_limits): the full scan
    then runs on what the fast path left of the allowance."""
    if _native._test_arena_active():
        return
    a, b = fast.to_dict(), full.to_dict()
    a.pop("seconds")
    b.pop("seconds")
    if a != b:
        raise AssertionError(f"mfparse.scan fast path and full scan disagree on {fast.path!r}:\n"
                             f"fast: {a}\nfull: {b}")


def _report_marked(path, got: tuple, t0: float) -> ScanReport:
    """A report with findings about zip members (their flags, local headers, CRC-32) among the
    imports: made in the full scan's order, with the container code's own findings."""
    size, npickles, seen, others, marks = got
    ctx = Context(path, size)
    top = Where(None, 0, 0)
    k = 0
    for at, kind, anomalies, member, off in marks:
        while k < len(others) and others[k][6] < at:
            _import_finding(ctx, others[k])
            k += 1
        if kind == MARK_ANOMALIES:
            containers.member_anomalies(ctx, top, member, anomalies, off)
        else:
            containers.crc_finding(ctx, top, member, off)
    for rest in others[k:]:
        _import_finding(ctx, rest)
    ctx.globals = seen
    ctx.pickles = npickles
    return ctx.report(time.perf_counter() - t0)


def _import_finding(ctx: Context, row: tuple) -> None:
    module, name, member, pk, count, off, _ = row
    sev, why = policy.judge_global(module, name, False)
    if sev is not None:
        ctx.finding(sev, why, Where(member, 0), pickle=pk, offset=off, module=module, qualname=name, count=count)
