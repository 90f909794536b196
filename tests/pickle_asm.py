"""A small pickle assembler for tests: hostile pickles are written opcode by opcode, as bytes.

Nothing here unpickles anything. Example:

    >>> P(2).glob("os", "system").unicode("touch x").tuple1().reduce().stop().data
"""

from __future__ import annotations

import struct
import zipfile
import io


class P:
    """Append opcodes; every method returns self. `.data` is the pickle so far."""

    def __init__(self, proto: int | None = None):
        self.b = bytearray()
        if proto is not None:
            self.proto(proto)

    @property
    def data(self) -> bytes:
        return bytes(self.b)

    def raw(self, b: bytes):
        self.b += b
        return self

    def op(self, code: bytes):
        return self.raw(code)

    # structure
    def proto(self, v):
        return self.raw(b"\x80" + bytes([v]))

    def frame(self, n):
        return self.raw(b"\x95" + struct.pack("<Q", n))

    def stop(self):
        return self.raw(b".")

    def mark(self):
        return self.raw(b"(")

    def pop(self):
        return self.raw(b"0")

    def dup(self):
        return self.raw(b"2")

    # scalars and strings
    def none(self):
        return self.raw(b"N")

    def int(self, v):
        if 0 <= v < 256:
            return self.raw(b"K" + bytes([v]))
        if -(1 << 31) <= v < (1 << 31):
            return self.raw(b"J" + struct.pack("<i", v))
        return self.raw(b"L%dL\n" % v)

    def int0(self, v):
        return self.raw(b"I%d\n" % v)

    def unicode(self, s: str):
        e = s.encode("utf-8")
        if len(e) < 256:
            return self.raw(b"\x8c" + bytes([len(e)]) + e)
        return self.raw(b"X" + struct.pack("<I", len(e)) + e)

    def binunicode(self, s: str):
        e = s.encode("utf-8")
        return self.raw(b"X" + struct.pack("<I", len(e)) + e)

    def unicode0(self, s: str):
        return self.raw(b"V" + s.encode("raw_unicode_escape") + b"\n")

    def string(self, s: str):
        return self.raw(b"S" + repr(s).encode("ascii") + b"\n")

    def binstring(self, s: bytes | str):
        e = s.encode("latin-1") if isinstance(s, str) else s
        return self.raw(b"T" + struct.pack("<i", len(e)) + e)

    def short_binstring(self, s: bytes | str):
        e = s.encode("latin-1") if isinstance(s, str) else s
        return self.raw(b"U" + bytes([len(e)]) + e)

    def bytes_(self, b: bytes):
        if len(b) < 256:
            return self.raw(b"C" + bytes([len(b)]) + b)
        return self.raw(b"B" + struct.pack("<I", len(b)) + b)

    # containers
    def empty_tuple(self):
        return self.raw(b")")

    def empty_list(self):
        return self.raw(b"]")

    def empty_dict(self):
        return self.raw(b"}")

    def tuple(self):
        return self.raw(b"t")

    def tuple1(self):
        return self.raw(b"\x85")

    def tuple2(self):
        return self.raw(b"\x86")

    def tuple3(self):
        return self.raw(b"\x87")

    def list(self):
        return self.raw(b"l")

    def dict(self):
        return self.raw(b"d")

    def append(self):
        return self.raw(b"a")

    def appends(self):
        return self.raw(b"e")

    def setitem(self):
        return self.raw(b"s")

    def setitems(self):
        return self.raw(b"u")

    # memo
    def put(self, i):
        return self.raw(b"p%d\n" % i)

    def binput(self, i):
        return self.raw(b"q" + bytes([i]))

    def long_binput(self, i):
        return self.raw(b"r" + struct.pack("<I", i))

    def memoize(self):
        return self.raw(b"\x94")

    def get(self, i):
        return self.raw(b"g%d\n" % i)

    def binget(self, i):
        return self.raw(b"h" + bytes([i]))

    def long_binget(self, i):
        return self.raw(b"j" + struct.pack("<I", i))

    # imports and calls
    def glob(self, module: str, name: str):
        return self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def stack_global(self):
        return self.raw(b"\x93")

    def sglob(self, module: str, name: str):
        return self.unicode(module).unicode(name).stack_global()

    def inst(self, module: str, name: str):
        return self.raw(b"i" + module.encode() + b"\n" + name.encode() + b"\n")

    def obj(self):
        return self.raw(b"o")

    def reduce(self):
        return self.raw(b"R")

    def newobj(self):
        return self.raw(b"\x81")

    def newobj_ex(self):
        return self.raw(b"\x92")

    def build(self):
        return self.raw(b"b")

    def ext1(self, code):
        return self.raw(b"\x82" + bytes([code]))

    def ext2(self, code):
        return self.raw(b"\x83" + struct.pack("<H", code))

    def ext4(self, code):
        return self.raw(b"\x84" + struct.pack("<i", code))

    def persid(self, pid: str):
        return self.raw(b"P" + pid.encode() + b"\n")

    def binpersid(self):
        return self.raw(b"Q")

    # helpers
    def args(self, *vals):
        """Push a tuple of str/int/bytes/None values."""
        self.mark()
        for v in vals:
            self.val(v)
        return self.tuple()

    def val(self, v):
        if v is None:
            return self.none()
        if isinstance(v, bool):
            return self.raw(b"\x88" if v else b"\x89")
        if isinstance(v, int):
            return self.int(v)
        if isinstance(v, str):
            return self.unicode(v)
        if isinstance(v, bytes):
            return self.bytes_(v)
        raise TypeError(v)

    def call(self, module: str, name: str, *vals, stack_global=False):
        (self.sglob(module, name) if stack_global else self.glob(module, name))
        return self.args(*vals).reduce()


def storage_pid(p: P, key: str, numel: int, cls: str = "FloatStorage", legacy: bool = False) -> P:
    """Push torch's persistent id of a storage (zip files; legacy adds the view slot)."""
    p.mark().unicode("storage").glob("torch", cls).unicode(key).unicode("cpu").int(numel)
    if legacy:
        p.none()
    return p.tuple().binpersid()


def tensor(p: P, key: str, numel: int, offset: int, size, stride, legacy: bool = False) -> P:
    """Push torch._utils._rebuild_tensor_v2(storage key, offset, size, stride, False, OrderedDict())."""
    p.glob("torch._utils", "_rebuild_tensor_v2").mark()
    storage_pid(p, key, numel, legacy=legacy)
    p.int(offset).args(*size).args(*stride).raw(b"\x89")
    p.glob("collections", "OrderedDict").empty_tuple().reduce()
    return p.tuple().reduce()


def shared_bomb(levels: int, leaf=None, kind: str = "list") -> P:
    """A pickle whose level k holds level k-1 twice through memo references: about 12 bytes a
    level, 2**levels leaves when walked as a tree. leaf(p) pushes the innermost value (an empty
    list by default); kind "list", "tuple" or "dict" (keys "a" and "b")."""
    p = P(2)
    (leaf or P.empty_list)(p)
    p.long_binput(0)
    for i in range(1, levels + 1):
        if kind == "dict":
            p.mark().unicode("a").long_binget(i - 1).unicode("b").long_binget(i - 1).dict()
        else:
            p.mark().long_binget(i - 1).long_binget(i - 1).raw(b"l" if kind == "list" else b"t")
        p.long_binput(i)
    return p


def call_pickle(module: str, name: str, *vals, proto: int = 2) -> bytes:
    """A complete pickle that calls module.name(*vals)."""
    return P(proto).call(module, name, *vals).stop().data


def zip_bytes(members, compress=zipfile.ZIP_STORED) -> bytes:
    """A zip archive of {name: bytes} (or [(name, bytes)]) written by zipfile."""
    bio = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(bio, "w", compression=compress) as z:
        for name, data in items:
            z.writestr(name, data)
    return bio.getvalue()


def torch_zip(data_pkl: bytes, prefix: str = "archive", extra=None, compress=zipfile.ZIP_STORED) -> bytes:
    """A torch.save-shaped archive: <prefix>/data.pkl, version, byteorder, data records."""
    members = [(f"{prefix}/data.pkl", data_pkl), (f"{prefix}/byteorder", b"little"), (f"{prefix}/version", b"3\n")]
    for name, data in (extra or {}).items():
        members.append((f"{prefix}/{name}", data))
    return zip_bytes(members, compress)
