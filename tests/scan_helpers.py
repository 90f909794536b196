"""Helpers for the scan tests: byte-level zip surgery and finding assertions."""

from __future__ import annotations

import struct
import zlib

import mfparse


def scan(data, **kw):
    r = mfparse.scan(data, **kw)
    assert not any("internal error" in e for e in r.errors), r.errors
    return r


def has(report, severity=None, glob=None, kind=None, member=None, why=None):
    """The findings of a report matching every given field (glob: exact dotted name, or a
    callable predicate on it)."""
    out = []
    for f in report.findings:
        if severity is not None and f.severity != severity:
            continue
        if glob is not None and (not glob(f.global_name) if callable(glob) else f.global_name != glob):
            continue
        if kind is not None and f.kind != kind:
            continue
        if member is not None and f.member != member:
            continue
        if why is not None and why not in f.why:
            continue
        out.append(f)
    return out


def assert_unsafe(report, severity="dangerous", glob=None, kind=None, member=None, why=None):
    assert report.verdict == "unsafe", str(report)
    found = has(report, severity, glob, kind, member, why)
    assert found, f"no {severity} finding {glob or ''} {kind or ''} {why or ''} in:\n{report}"
    return found[0]


# ---- zip surgery ----------------------------------------------------------------------------

def _records(data: bytes):
    """[(kind, offset)] of local headers ('L') and central entries ('C') in a zipfile-written zip."""
    out = []
    i = 0
    while True:
        j = data.find(b"PK", i)
        if j < 0:
            break
        sig = data[j:j + 4]
        if sig == b"PK\x03\x04":
            out.append(("L", j))
        elif sig == b"PK\x01\x02":
            out.append(("C", j))
        i = j + 2
    return out


def _entry_of(data: bytes, name: bytes):
    """(local header offset, central entry offset) of member `name`."""
    loc = cen = None
    for kind, off in _records(data):
        if kind == "L":
            n = struct.unpack_from("<H", data, off + 26)[0]
            if data[off + 30:off + 30 + n] == name:
                loc = off
        else:
            n = struct.unpack_from("<H", data, off + 28)[0]
            if data[off + 46:off + 46 + n] == name:
                cen = off
    assert loc is not None and cen is not None, name
    return loc, cen


def set_flags(data: bytes, name: str, bits: int) -> bytes:
    """Set general-purpose flag bits on a member in both its local header and central entry."""
    b = bytearray(data)
    loc, cen = _entry_of(data, name.encode())
    struct.pack_into("<H", b, loc + 6, struct.unpack_from("<H", b, loc + 6)[0] | bits)
    struct.pack_into("<H", b, cen + 8, struct.unpack_from("<H", b, cen + 8)[0] | bits)
    return bytes(b)


def rename_local(data: bytes, name: str, new: str) -> bytes:
    """Change a member's name in its local header only (same length)."""
    assert len(new) == len(name)
    b = bytearray(data)
    loc, _ = _entry_of(data, name.encode())
    b[loc + 30:loc + 30 + len(name)] = new.encode()
    return bytes(b)


def break_crc(data: bytes, name: str) -> bytes:
    """Flip the CRC-32 of a member in its local header and central entry."""
    b = bytearray(data)
    loc, cen = _entry_of(data, name.encode())
    for at in (loc + 14, cen + 16):
        struct.pack_into("<I", b, at, struct.unpack_from("<I", b, at)[0] ^ 0xDEADBEEF)
    return bytes(b)


def overlap(data: bytes, name: str, into: str, share: bool = False) -> bytes:
    """Overlapping entries (a zip-bomb technique). Stored member `name` grows, in both headers,
    over the local header and data of the member `into` that follows it, with a CRC-32 that
    matches what it now covers; with share, `into`'s central entry points at `name`'s local
    header instead (the same bytes counted twice)."""
    b = bytearray(data)
    loc, cen = _entry_of(data, name.encode())
    loc2, cen2 = _entry_of(data, into.encode())
    if share:
        struct.pack_into("<I", b, cen2 + 42, loc)
        return bytes(b)
    start = loc + 30 + sum(struct.unpack_from("<HH", data, loc + 26))
    end = loc2 + 30 + sum(struct.unpack_from("<HH", data, loc2 + 26)) + struct.unpack_from("<I", data, cen2 + 20)[0]
    crc = zlib.crc32(data[start:end])
    for at in (loc + 14, cen + 16):
        struct.pack_into("<III", b, at, crc, end - start, end - start)
    return bytes(b)


def set_central_size(data: bytes, name: str, size: int) -> bytes:
    """Change the uncompressed size a member's central entry declares."""
    b = bytearray(data)
    _, cen = _entry_of(data, name.encode())
    struct.pack_into("<I", b, cen + 24, size)
    return bytes(b)
