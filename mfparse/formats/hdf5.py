"""HDF5 files (h5py, Keras .h5, MATLAB v7.3) over the C reader in csrc/mf_hdf5.c; no libhdf5.

The C side walks the group hierarchy once and reports objects, datasets and attributes;
this module turns them into TensorInfos (names are HDF5 paths without the leading "/", every
dataset listed in h5py's ``visit()`` order), numpy dtypes, attribute values and arrays.

Reading: contiguous and compact data are zero-copy views of the file. Chunked data are
assembled from their chunks (the C side walks the chunk index; listing never touches it) and
decoded with deflate (zlib), shuffle and fletcher32, and with the registered filters szip (4),
bzip2 (307), blosc (32001), lz4 (32004), zstd (32015) and blosc2 (32026) when a package that
decompresses them is installed (imported only then; the error names the package otherwise);
any other filter raises an error naming its id when the data is read. Never-written data read
as libhdf5 reads them: the fill value, or zeros.
"""

from __future__ import annotations

import importlib
import zlib
from types import MappingProxyType

from mfparse._lazy import numpy as np

from mfparse import _native
from mfparse.errors import (
    CorruptFileError,
    MFParseError,
    ResourceLimitError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from mfparse.formats.base import Reader, access, parse_windows, read_many, source_view
from mfparse.records import TensorInfo

SIGNATURE = b"\x89HDF\r\n\x1a\n"

# object kinds (csrc/mf_hdf5.h)
GROUP, DATASET, DATATYPE, SOFT, EXTERNAL, ALIAS, OTHER = (_native.H5_GROUP, _native.H5_DATASET, _native.H5_DATATYPE,
                                                        _native.H5_SOFT, _native.H5_EXTERNAL, _native.H5_ALIAS,
                                                        _native.H5_OTHER)
# datatype classes
INTEGER, FLOAT, TIME, STRING, BITFIELD, OPAQUE, COMPOUND, REFERENCE, ENUM, VLEN, ARRAY, COMPLEX = range(12)

#: names of well-known HDF5 filter ids (registered plugins included, for error messages)
FILTER_NAMES = {
    1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
    305: "lzo", 307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle",
    32013: "zfp", 32015: "zstd", 32017: "sz", 32026: "blosc2",
}

#: numeric attribute arrays with more elements than this are returned as numpy arrays, not lists
ATTR_LIST_MAX = 1 << 16

# fill value status and write time (the fill tuple of H5File.dataset)
FILL_UNDEFINED, FILL_DEFAULT, FILL_USER = 0, 1, 2
FILL_TIME_ALLOC, FILL_TIME_NEVER, FILL_TIME_IFSET = 0, 1, 2

CONTIGUOUS = MappingProxyType({"layout": "contiguous"})
COMPACT = MappingProxyType({"layout": "compact"})

#: refuse to assemble a chunked or filled array larger than this many bytes per file byte
#: unless it is at most MAX_SYNTH bytes (a never-written dataset of a few GB is legitimate,
#: a 2 KB file claiming a petabyte is not)
MAX_SYNTH = 1 << 31


def find_superblock(buf) -> int | None:
    """Offset of the HDF5 signature (0, 512, 1024, ...), or None."""
    off = _native.h5_find_superblock(buf)
    return None if off < 0 else off


def find_superblock_in(source) -> int | None:
    """find_superblock over a source: its map, or for a remote file the 8 bytes at each place
    the signature may be (0, 512, 1024, ...), fetched in one round trip."""
    if source.buf is not None:
        return find_superblock(source.buf)
    places = [0] + [512 << k for k in range(64) if (512 << k) + 8 <= source.size]
    for off, head in zip(places, read_many(source, [(o, 8) for o in places])):
        if bytes(head) == SIGNATURE:
            return off
    return None


def probe(head: bytes) -> bool:
    return head[:8] == SIGNATURE


# ---- datatypes ----------------------------------------------------------------------------------

class H5Type:
    """What a stored HDF5 datatype means to numpy and to TensorInfo.

    Attributes:
        name: canonical dtype name for TensorInfo ("float32", "string", "S10", "compound", ...).
        np: numpy dtype of one stored element as it is read back (object for variable-length).
        raw: numpy dtype of the stored bytes (np when that is not object).
        shape: extra trailing dims (array datatypes are flattened into the shape, as h5py does).
        extras: dtype facts for TensorInfo.extras.
        vlen: None, "str" or "seq".

    `np` and `raw` are built on first use: listing plain numbers, strings, references and
    variable-length data needs no numpy. Types whose validity only numpy can judge (compounds,
    complex, integers and floats of unusual sizes) build theirs at once, so that a type numpy
    cannot hold lists as "unknown" with the error in extras and raises when read.
    """

    __slots__ = ("t", "name", "_np", "_raw", "shape", "extras", "vlen", "charset", "error")

    def __init__(self, t):
        self.t = t
        self.shape = ()
        self.extras = {}
        self.vlen = None
        self.charset = None
        self.error = None
        self._np = self._raw = None
        try:
            self._init(t)
        except (TypeError, ValueError) as e:
            self._fail(CorruptFileError(f"HDF5 datatype has no numpy equivalent: {e}"))
        except MFParseError as e:
            self._fail(e)

    def _fail(self, e: MFParseError):
        """A datatype numpy cannot hold: listed as "unknown", reading raises the error."""
        self.error = e
        self.name, self._np, self._raw, self.shape, self.vlen = "unknown", None, None, (), None
        self.extras = {"hdf5_class": self.t[0], "error": e.message}

    def check(self):
        if self.error is not None:
            raise type(self.error)(self.error.message, self.error.offset)

    @property
    def np(self):
        if self._np is None and self.error is None:
            self._np = H5Type(self.t[9]).np if self.t[0] == ARRAY else element_dtype(self.t)
        return self._np

    @property
    def raw(self):
        if self._raw is None and self.error is None:
            t, size = self.t, self.t[1]
            if t[0] == ARRAY:
                base = H5Type(t[9])
                self._raw = (np.dtype((base.raw, tuple(t[10]))) if base.shape == () and not self.vlen
                             else np.dtype(f"V{size}"))
            else:
                self._raw = self.np if self.np.kind != "O" else np.dtype(f"V{size}")
        return self._raw

    def _init(self, t):
        cls, size = t[0], t[1]
        if size >= 1 << 31:
            raise UnsupportedFormatError(f"HDF5 datatype of {size} bytes per element")
        if cls == ARRAY:
            base = H5Type(t[9])
            base.check()
            self.name, self.shape, self.extras = base.name, tuple(t[10]) + base.shape, dict(base.extras)
            self.vlen, self.charset = base.vlen, base.charset
            self.extras["element_shape"] = self.shape  # h5py: dataset shape + array dtype (reads flatten it)
            return
        code = t[2]
        order = ">" if t[3] == 1 else "<"
        if code:
            self.name = _native.DTYPE_NAMES[code]
            if order == ">" and size > 1:
                self.extras["byteorder"] = ">"
            if cls == ENUM and code != _bool_code():
                self.extras["enum"] = enum_members(t)
            return
        if cls == FLOAT or (cls == INTEGER and (t[6] != size * 8 or t[7] != 0)):
            # the C reader names every layout numpy holds as it is stored (all bits used, IEEE
            # fields for floats); padding bits or another float layout would need libhdf5's
            # conversion to read right, so such data is not handed out as raw numbers (h5py
            # refuses most of them too)
            raise UnsupportedFormatError(f"HDF5 {'integer' if cls == INTEGER else 'float'} datatype of {size} "
                                         "bytes with padding bits or a non-IEEE layout")
        if cls == INTEGER:  # all bits used, but no numpy integer that wide (PyTables' 128-bit times)
            self.name = "unknown"
            self.extras["hdf5_class"] = cls
            if order == ">" and size > 1:
                self.extras["byteorder"] = ">"
            return
        if cls in (BITFIELD, ENUM):
            self.name = self.np.name if self.np.kind in "iu" else "unknown"
            if order == ">" and size > 1:
                self.extras["byteorder"] = ">"
            if cls == ENUM:
                self.extras["enum"] = enum_members(t)
            if cls == BITFIELD:
                self.extras["bitfield"] = True
        elif cls == STRING:
            cs = (t[5] >> 4) & 0xF
            if cs > 1:
                raise UnsupportedFormatError(f"HDF5 string datatype with an unknown character set ({cs})")
            self.name = f"S{size}"
            self.charset = "utf-8" if cs == 1 else "ascii"
            self.extras["charset"] = self.charset
        elif cls == VLEN:
            if t[5] & 0xF == 1:
                cs = (t[5] >> 8) & 0xF
                if cs > 1:
                    raise UnsupportedFormatError(f"HDF5 variable-length string with an unknown character set ({cs})")
                self.name, self.vlen = "string", "str"
                self.charset = "utf-8" if cs == 1 else "ascii"
                self.extras["charset"] = self.charset
            else:
                self.name, self.vlen = "vlen", "seq"
                self.extras["base"] = H5Type(t[9]).name
        elif cls == COMPOUND:
            self.np  # numpy judges the layout (overlapping or duplicate members)
            self.name = "compound"
            self.extras["fields"] = tuple((m[0].decode("utf-8", "replace"), H5Type(m[2]).name, m[1]) for m in t[8])
        elif cls == OPAQUE:
            self.name = "opaque"
            if t[11]:
                self.extras["tag"] = t[11].decode("ascii", "replace")
        elif cls == REFERENCE:
            self.name = "reference"
            self.extras["reference"] = {0: "object", 1: "region"}.get(t[5] & 0xF, "other")
        else:
            self.np  # e.g. complex: numpy decides whether it can hold it
            self.name = "unknown"
            self.extras["hdf5_class"] = cls

    @property
    def itemsize(self) -> int:
        return self.t[1]


_BOOL = []


def _bool_code() -> int:
    if not _BOOL:
        _BOOL.append(_native.DTYPE_NAMES.index("bool"))
    return _BOOL[0]


def enum_members(t) -> dict:
    """name -> value of an enum datatype's members (integers decoded without numpy)."""
    base = t[9]
    if base[0] in (INTEGER, BITFIELD) and base[1] in (1, 2, 4, 8):
        order, signed = ("big" if base[3] == 1 else "little"), base[0] == INTEGER and bool(base[4])
        if any(len(m[3]) < base[1] for m in t[8] or ()):
            raise CorruptFileError(f"enum member value shorter than its {base[1]}-byte base type")
        return {m[0].decode("utf-8", "replace"): int.from_bytes(bytes(m[3][:base[1]]), order, signed=signed)
                for m in t[8] or ()}
    dt = element_dtype(base)
    return {m[0].decode("utf-8", "replace"): np.frombuffer(m[3], dtype=dt)[0].item() for m in t[8] or ()}


def element_dtype(t) -> np.dtype:
    """The numpy dtype h5py would use for one element of datatype tuple t."""
    if t[1] >= 1 << 31:
        raise UnsupportedFormatError(f"HDF5 datatype of {t[1]} bytes per element")
    try:
        return _element_dtype(t)
    except (TypeError, ValueError) as e:
        raise CorruptFileError(f"HDF5 datatype has no numpy equivalent: {e}") from None


def _element_dtype(t) -> np.dtype:
    cls, size, code, order = t[0], t[1], t[2], t[3]
    bo = ">" if order == 1 else "<"
    if code:
        name = _native.DTYPE_NAMES[code]
        if name == "bool":
            return np.dtype("bool")
        if name == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(name).newbyteorder(bo) if size > 1 else np.dtype(name)
    if cls in (INTEGER, BITFIELD) and size in (1, 2, 4, 8):
        signed = cls == INTEGER and t[4]
        return np.dtype(f"{bo}{'i' if signed else 'u'}{size}")
    if cls == FLOAT and order <= 1 and size in (2, 4, 8):
        return np.dtype(f"{bo}f{size}")
    if cls == ENUM:
        return element_dtype(t[9])
    if cls == STRING:
        return np.dtype(f"S{size}")
    if cls == REFERENCE and size == 8:
        return np.dtype("<u8")
    if cls in (VLEN,):
        return np.dtype("O")
    if cls == ARRAY:
        return np.dtype((element_dtype(t[9]), tuple(t[10])))
    if cls == COMPOUND:
        names, formats, offsets = [], [], []
        for name, off, mt, _ in t[8]:
            n = name.decode("utf-8", "replace")
            if n in names:
                raise CorruptFileError(f"compound datatype has two members named {n!r}")
            names.append(n)
            formats.append(element_dtype(mt))
            offsets.append(off)
        try:
            return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})
        except (ValueError, TypeError) as e:
            raise CorruptFileError(f"compound datatype has overlapping or invalid members: {e}") from None
    if cls == COMPLEX and t[9] is not None:
        inner = element_dtype(t[9])
        if inner.kind == "f":
            return np.dtype(f"{'>' if t[9][3] == 1 else '<'}c{2 * inner.itemsize}")
    return np.dtype(f"V{size}")


# ---- the reader ----------------------------------------------------------------------------------

class HDF5File:
    """Objects, datasets and attributes of one HDF5 file (a buffer inside `source.buf`).

    Args:
        source: the mfparse Source (its buf is the whole outer file).
        buf: the HDF5 bytes (source.buf, a slice of it for a stored zip member, or decompressed bytes).
        shift: offset of buf in source.buf (None when buf is not part of the file).
        flags: _native.H5_NO_VERIFY / H5_NO_EOF_CHECK (tests).
    """

    def __init__(self, source, buf=None, shift: int | None = 0, report_base: int = 0, flags: int = 0):
        self.source = source
        self._smap = None  # a remote file: its SparseMap (mfparse.io.sparse), which buf views
        if source.buf is None and shift is not None:
            from mfparse.io.sparse import sparse_map

            self._smap = sparse_map(source)
            if buf is None:
                buf = self._smap.view
        self.buf = source.buf if buf is None else buf
        self.shift = shift
        if self._smap is None:
            with access(source, scattered=buf is None):  # object headers lie next to their data
                self.h5 = _native.H5File(self.buf, report_base, flags)
        else:  # the metadata blocks through the map, a level of the tree per round trip
            data = self.buf
            self.h5 = parse_windows(lambda _b, w: _native.H5File(data, report_base, flags, w), source, fetch=4096)
        self._objects = None
        self._by_path = None
        self._types: dict[int, H5Type] = {}

    def close(self):
        self.h5.close()

    # -- bytes: slices of the map; of a remote file, fetched first ----------------------------
    def _windowed(self, fn):
        """fn(window) for a C call over the map after the open (chunk indexes, heaps)."""
        if self._smap is None:
            return fn(None)
        return parse_windows(lambda _b, w: fn(w), self.source, fetch=4096)

    def _meta(self, off: int, n: int):
        """Metadata bytes of buf (attribute values, fill values, heap objects)."""
        if self._smap is not None:
            self._smap.fetch([(off + self.shift, n)])
        return self.buf[off:off + n]

    def _data(self, ranges) -> list:
        """Raw data of buf (datasets, chunks): slices of the map, or exactly those bytes of a
        remote file (one round trip), never copied into its map."""
        if self._smap is None:
            return [self.buf[o:o + n] for o, n in ranges]
        size = len(self.buf)  # bytes past the end of buf are not its bytes, as a slice would say
        return read_many(self.source, [(o + self.shift, max(0, min(n, size - o))) for o, n in ranges])

    # -- objects --
    @property
    def objects(self) -> list:
        if self._objects is None:
            self._objects = self.h5.objects()
        return self._objects

    def index(self, path: str) -> int:
        """Object index of an HDF5 path ("a/b", leading/trailing "/" ignored)."""
        if self._by_path is None:
            self._by_path = {o[0]: i for i, o in enumerate(self.objects)}
        i = self._by_path.get(path.strip("/"))
        if i is None:
            raise KeyError(path)
        return i

    def other_files(self) -> list:
        """The other files reading this one touches, as libhdf5 would open them:
        [(kind, object path, file name, target, name offset, status)] where kind is "external
        storage" (a dataset's raw data in other files: External Data Files message; target
        (offset, size) there), "external link" (target: the object path in that file) or
        "virtual dataset" (a source of a virtual dataset; target: its dataset path); names are
        str (undecodable bytes escaped). status: 0, or for a virtual dataset whose source block
        could not be read -1 (unreadable) / its encoding version (not read), with file name None."""
        out = []
        objs = self.objects
        for path, kind, _parent, ds, *rest in objs:
            if kind == EXTERNAL:
                parts = rest[2][1:].split(b"\x00")  # version/flags byte, file, NUL, object path
                out.append(("external link", path, _text(parts[0]), _text(parts[1]) if len(parts) > 1 else "",
                            None, 0))
            elif kind == DATASET and ds is not None and ds >= 0:
                status, files = self.h5.files(ds)
                layout = self.h5.dataset(ds)[4]
                what = "virtual dataset" if layout == 3 else "external storage"
                if status:
                    out.append((what, path, None, None, None, status))
                for name, dset, off, size, at in files:
                    out.append((what, path, _text(name), _text(dset) if dset is not None else (off, size), at, 0))
        return out

    def resolve(self, i: int, depth: int = 0) -> int:
        """Follow aliases and soft links (within this file) to the object they name."""
        o = self.objects[i]
        if o[1] == ALIAS:
            return o[5]
        if o[1] == SOFT and depth < 32:
            target = o[6].decode("utf-8", "replace")
            if not target.startswith("/"):
                parent = self.objects[o[2]][0]
                target = f"{parent}/{target}" if parent else target
            try:
                return self.resolve(self.index(target), depth + 1)
            except KeyError:
                return i
        return i

    def dtype(self, dataset: int) -> H5Type:
        t = self._types.get(dataset)
        if t is None:
            t = self._types[dataset] = H5Type(self.h5.dataset(dataset)[0])
        return t

    # -- attributes --
    def attrs(self, obj: int) -> dict:
        """Attribute values of an object, decoded as h5py would (str for strings)."""
        rows = self.h5.attrs(obj)
        if rows and all(r[7] >= 0 for r in rows):  # creation order tracked: h5py lists in that order
            rows.sort(key=lambda r: r[7])
        else:
            rows.sort(key=lambda r: r[0].encode("utf-8", "surrogateescape"))
        out = {}
        for name, _cs, t, space, numel, off, size, _crt in rows:
            out[name] = self.decode(t, space, numel, off, size)
        return out

    def decode(self, t, space, numel, off, size):
        """An attribute value: Python scalars and str, lists for arrays, None for a null dataspace."""
        kind, dims = space[0], space[1]
        if kind == 2:
            return None
        ht = H5Type(t)
        ht.check()
        _np_shape(tuple(dims) + ht.shape, "attribute", ht.itemsize)
        raw = self._meta(off, size)
        arr = self._decode_raw(ht, raw, numel)
        if ht.shape:
            arr = arr.reshape((numel,) + ht.shape)
        if kind == 0:
            v = arr.reshape(-1)[0] if not ht.shape else arr[0]
            return _pyval(v)
        arr = arr.reshape(tuple(dims) + ht.shape)
        if arr.size > ATTR_LIST_MAX and arr.dtype.kind in "biufc" and arr.dtype.names is None:
            return arr  # large numeric attributes stay a (read-only) array instead of a long list
        return _pyval(arr)

    def _decode_raw(self, ht: H5Type, raw, numel: int) -> np.ndarray:
        """numel stored elements -> numpy (object arrays for variable-length data)."""
        if ht.vlen is None and not ht.np.hasobject:
            return np.frombuffer(raw, dtype=ht.raw if ht.shape else ht.np, count=numel)
        if ht.vlen is not None:
            return self._vlen(ht, raw, numel * (int(np.prod(ht.shape)) if ht.shape else 1))
        return np.frombuffer(raw, dtype=np.dtype(f"V{ht.itemsize}"), count=numel)

    def _vlen(self, ht: H5Type, raw, n: int) -> np.ndarray:
        esize = self.h5.vlen_elem_size
        out = np.empty(n, dtype=object)
        if n == 0:
            return out
        leaf = ht.t if ht.t[0] != ARRAY else _array_leaf(ht.t)
        if leaf[1] != esize or len(raw) < n * esize:
            raise CorruptFileError(
                f"variable-length data: {len(raw)} bytes of {leaf[1]}-byte elements for {n} references of {esize} bytes")
        elems = bytes(raw[: n * esize])
        rows = self._windowed(lambda w: self.h5.vlen(elems, n, esize, w))
        base = None if ht.vlen == "str" else element_dtype(_vlen_base(ht.t))
        if self._smap is not None:  # every element's bytes in one round trip
            self._smap.fetch([(off + self.shift, size) for off, size, _count in rows if off is not None])
        buf = self.buf
        for k, (off, size, count) in enumerate(rows):
            if ht.vlen == "str":
                if off is None:
                    out[k] = b""
                    continue
                if count > size:
                    raise CorruptFileError(f"variable-length string of {count} bytes in a {size}-byte heap object", off)
                out[k] = bytes(buf[off:off + count])
            else:
                if off is None:
                    out[k] = np.empty(0, dtype=base)
                    continue
                need = count * base.itemsize
                if need > size:
                    raise CorruptFileError(f"variable-length sequence of {need} bytes in a {size}-byte heap object", off)
                out[k] = np.frombuffer(buf, dtype=base, count=count, offset=off).copy()
        return out

    # -- datasets --
    def info(self, obj: int) -> TensorInfo:
        """TensorInfo of a dataset object (the general path; plain numbers come from fast_infos)."""
        path, kind, _parent, ds = self.objects[obj][:4]
        d = self.h5.dataset(ds)
        ht = self.dtype(ds)
        space_kind, dims, maxdims = d[1]
        nbytes, layout, data_offset = d[3], d[4], d[6]
        extras = dict(ht.extras)
        shape = tuple(dims) + ht.shape
        if space_kind == 2:
            extras["dataspace"] = "null"
        offset = None
        if layout == 0:
            extras["layout"] = "compact"
            offset = data_offset
        elif layout == 1:
            extras["layout"] = "contiguous"
            if data_offset is None:
                extras["allocated"] = False
            offset = data_offset
        elif layout == 2:
            extras["layout"] = "chunked"
            extras["chunks"] = d[10]
            if d[13]:
                extras["filters"] = tuple(
                    {"id": fid, "name": FILTER_NAMES.get(fid) or (nm.decode("ascii", "replace") if nm else f"filter {fid}"),
                     "values": vals} for fid, _fl, nm, vals in d[13])
        else:
            extras["layout"] = "virtual"
        if d[15]:
            extras["external"] = True
            offset = None
        if maxdims != dims:
            extras["maxshape"] = tuple(None if m == (1 << 64) - 1 else m for m in maxdims)
        # variable-length elements are heap references: the bytes in the file are not the values
        if offset is not None and (self.shift is None or ht.vlen is not None):
            offset = None
        elif offset is not None:
            offset += self.shift
        return TensorInfo(path, ht.name, shape, nbytes, offset, None, None, MappingProxyType(extras))

    def read(self, obj: int, name: str = "") -> np.ndarray:
        """The data of a dataset object as numpy (a view for contiguous plain data)."""
        path, kind, _parent, ds = self.objects[obj][:4]
        if kind != DATASET:
            raise UnsupportedFormatError(f"{path!r} is not a dataset")
        d = self.h5.dataset(ds)
        ht = self.dtype(ds)
        space_kind, dims, _ = d[1]
        numel, nbytes, layout, data_offset = d[2], d[3], d[4], d[6]
        shape = tuple(dims)
        ht.check()
        if space_kind == 2:
            return np.empty(0, dtype=ht.np)
        _np_shape(shape + ht.shape, f"dataset {path!r}", ht.itemsize)
        if d[15]:
            raise UnsupportedFormatError(f"dataset {path!r} keeps its data in external files")
        if layout == 3:
            raise UnsupportedFormatError(f"dataset {path!r} is a virtual dataset (data in other files)")
        if layout in (0, 1) and data_offset is not None:
            raw = self._meta(data_offset, nbytes) if layout == 0 else self._data([(data_offset, nbytes)])[0]
            if len(raw) < nbytes:
                raise CorruptFileError(f"dataset {path!r} data runs past the end of the file", data_offset)
            if ht.vlen is None and not ht.np.hasobject:
                dt = ht.raw if ht.shape else ht.np
                return np.frombuffer(raw, dtype=dt, count=numel).reshape(shape + ht.shape)
            return self._decode_raw(ht, raw, numel).reshape(shape + ht.shape)
        # never written (fill value) or chunked: assemble in a new array of stored bytes
        stored = self._assemble(path, ds, d, ht)
        if ht.vlen is not None:
            return self._vlen(ht, stored.tobytes(), numel * (int(np.prod(ht.shape)) if ht.shape else 1)).reshape(
                shape + ht.shape)
        if ht.np.hasobject:  # compounds with variable-length members: stored records, as when contiguous
            return self._decode_raw(ht, stored, numel).reshape(shape + ht.shape)
        dt = ht.raw if ht.shape else ht.np
        return stored.view(dt).reshape(shape + ht.shape)

    def _fill(self, path: str, d, ht: H5Type, numel: int) -> np.ndarray:
        """numel stored elements of what never-written data reads as, as raw bytes (V<itemsize>).

        As libhdf5 (H5Dio.c, H5Dchunk.c) and so h5py read it: a missing chunk holds the
        user-defined fill value unless the fill time is "never"; unallocated contiguous data
        holds it unless the fill time is "never", and cannot be read at all when the fill value
        is undefined and the fill time is not "never". Everything else reads as zeros (what
        h5py's zero-initialised buffer keeps). A variable-length fill value is a heap reference,
        decoded like stored elements."""
        itemsize = ht.itemsize
        total = numel * itemsize
        if total > max(MAX_SYNTH, 64 * len(self.buf)):
            raise ResourceLimitError(f"dataset of {total} bytes is too large to materialise")
        out = np.zeros(numel, dtype=np.dtype(f"V{itemsize}"))
        status, fill_time, foff, fsize, _alloc = d[14]
        if fill_time == FILL_TIME_NEVER or numel == 0:
            return out
        if d[4] == 2:
            use = status == FILL_USER and fill_time in (FILL_TIME_ALLOC, FILL_TIME_IFSET)
        else:
            if status == FILL_UNDEFINED and fill_time in (FILL_TIME_ALLOC, FILL_TIME_IFSET):
                raise UnsupportedFormatError(
                    f"dataset {path!r} was never written and its fill value is undefined: it holds no data")
            use = status == FILL_USER
        if use:
            if fsize != itemsize:
                raise CorruptFileError(f"fill value of {fsize} bytes for {itemsize}-byte elements", foff)
            value = bytes(self._meta(foff, fsize))
            if any(value):
                out.view(np.uint8).reshape(numel, itemsize)[:] = np.frombuffer(value, dtype=np.uint8)
        return out

    def _assemble(self, path: str, ds: int, d, ht: H5Type) -> np.ndarray:
        space_kind, dims, _ = d[1]
        numel = d[2]
        shape = tuple(dims)
        out = self._fill(path, d, ht, numel)
        if d[4] != 2 or numel == 0:
            return out
        out = out.reshape(shape)
        chunk = d[10]
        chunk_bytes = d[11]
        filters = d[13]
        partial_unfiltered = bool(d[9] & 1)
        itemsize = ht.itemsize
        chunks = self._windowed(lambda w: self.h5.chunks(ds, w))
        datas = self._data([(addr, size) for _o, addr, size, _m in chunks])
        for (offset, addr, size, mask), data in zip(chunks, datas):
            partial = any(o + c > n for o, c, n in zip(offset, chunk, dims))
            if filters and not (partial_unfiltered and partial):
                data = unfilter(data, filters, mask, chunk_bytes, itemsize, path, addr)
            if len(data) != chunk_bytes:
                raise CorruptFileError(
                    f"chunk of dataset {path!r} holds {len(data)} bytes, expected {chunk_bytes}", addr)
            block = np.frombuffer(data, dtype=out.dtype).reshape(chunk)
            dst = tuple(slice(o, min(o + c, n)) for o, c, n in zip(offset, chunk, dims))
            src = tuple(slice(0, s.stop - s.start) for s in dst)
            out[dst] = block[src]
        return out.reshape(-1)


def _np_shape(shape: tuple, what: str, itemsize: int = 1) -> tuple:
    """A shape numpy can hold (it refuses dims whose byte size, zeros aside, overflows)."""
    n = max(itemsize, 1)
    for d in shape:
        n *= max(d, 1)
    if n >= 1 << 62:
        raise ResourceLimitError(f"{what} has shape {shape}, too large for an array")
    return shape


def _array_leaf(t):
    while t[0] == ARRAY:
        t = t[9]
    return t


def _vlen_base(t):
    if t[0] == ARRAY:
        return _vlen_base(t[9])
    return t[9]


def _pyval(v):
    """numpy value -> Python value (str for bytes, lists for arrays) for metadata and attrs."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO" or v.dtype.names is not None or v.dtype.kind == "V":
            return [_pyval(x) for x in v]
        return v.tolist()
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, np.void):
        if v.dtype.names:
            return {n: _pyval(v[n]) for n in v.dtype.names}
        return bytes(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def unfilter(data, filters, mask: int, chunk_bytes: int, itemsize: int, path: str, addr: int) -> bytes:
    """Undo a chunk's filter pipeline (last filter first), skipping filters masked out."""
    # bound every decoder's output: a chunk never decodes past its size (+ checksums of later filters)
    limit = chunk_bytes + 64
    for j in range(len(filters) - 1, -1, -1):
        if mask & (1 << j):
            continue
        fid, _flags, name, values = filters[j]
        if fid == 1:
            d = zlib.decompressobj()
            try:
                out = d.decompress(bytes(data), limit)
            except zlib.error as e:
                raise CorruptFileError(f"chunk of dataset {path!r} does not inflate: {e}", addr) from None
            if d.unconsumed_tail:
                raise ResourceLimitError(f"chunk of dataset {path!r} inflates past its {chunk_bytes} bytes", addr)
            if not d.eof:  # as HDF5's deflate filter: the stream must end, its Adler-32 checked
                raise CorruptFileError(f"chunk of dataset {path!r}: deflate stream ends early", addr)
            data = out
        elif fid == 2:
            size = values[0] if values else itemsize
            data = unshuffle(bytes(data), size)
        elif fid == 3:
            data = fletcher32_strip(bytes(data), path, addr)
        elif fid in DECODERS:
            data = DECODERS[fid](_Chunk(bytes(data), values, limit, fid, path, addr))
        else:
            label = FILTER_NAMES.get(fid) or (name.decode("ascii", "replace") if name else "unregistered")
            raise UnsupportedFormatError(
                f"dataset {path!r} is compressed with HDF5 filter {fid} ({label}); mfparse decodes deflate (1), "
                f"shuffle (2), fletcher32 (3) and, with a package that provides them, "
                f"{', '.join(f'{FILTER_NAMES[k]} ({k})' for k in DECODERS)}", addr)
    return data


# ---- registered filters decoded through optional packages ---------------------------------------
#
# Each decoder reads the chunk as the filter's HDF5 plugin writes it, bounds the size it will
# decode to before decoding (a chunk never decodes past its size), and imports the package that
# does the decompression only when a chunk needs it. Packages are used for raw decompression of
# their own buffers only (blosc2: chunks, never its frame or object machinery, which can hold
# expressions to evaluate); containers around them are parsed here.

class _Chunk:
    """One filtered chunk on its way through a decoder: bytes, the filter's client data, the size
    bound, and what to name in errors."""

    __slots__ = ("data", "values", "limit", "fid", "path", "addr")

    def __init__(self, data: bytes, values: tuple, limit: int, fid: int, path: str, addr: int):
        self.data, self.values, self.limit, self.fid, self.path, self.addr = data, values, limit, fid, path, addr

    def fail(self, what: str, cls=CorruptFileError) -> MFParseError:
        return cls(f"{FILTER_NAMES[self.fid]} chunk of dataset {self.path!r} {what}", self.addr)

    def check_size(self, n: int, what: str = "decodes to", limit: int | None = None) -> int:
        if n > (self.limit if limit is None else limit):
            raise self.fail(f"{what} {n} bytes, more than its {self.limit - 64}-byte chunk allows", ResourceLimitError)
        return n

    def codec(self, *modules: str):
        """(name, module) of the first of `modules` that imports; else a clean error naming them."""
        for name in modules:
            try:
                return name, importlib.import_module(name)
            except ImportError:
                continue
        fid = self.fid
        pkgs = " or ".join(_PACKAGES.get(m, m) for m in modules)
        raise UnsupportedFormatError(
            f"dataset {self.path!r} is compressed with HDF5 filter {fid} ({FILTER_NAMES[fid]}); install the Python "
            f"package {pkgs} to read it", self.addr)

    def run(self, fn, *args):
        """Call a package's decompressor, turning its errors into CorruptFileError."""
        try:
            return fn(*args)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - each package raises its own classes
            raise self.fail(f"does not decode: {type(e).__name__}: {e}") from None


#: pip names of the modules the decoders import
_PACKAGES = {"lz4.block": "lz4", "bz2": "bz2 (a Python built with bz2)"}


def _be(b: bytes, start: int, n: int, signed: bool = False) -> int:
    return int.from_bytes(b[start:start + n], "big", signed=signed)


def _blosc1(c: _Chunk) -> bytes:
    """Blosc filter (32001, hdf5-blosc): the chunk is one Blosc buffer (16-byte header: version,
    codec version, flags, type size, then uncompressed, block and compressed sizes, LE u32)."""
    d = c.data
    if len(d) < 16:
        raise c.fail(f"of {len(d)} bytes is shorter than a Blosc header")
    n = c.check_size(int.from_bytes(d[4:8], "little"))
    cbytes = int.from_bytes(d[12:16], "little")
    if cbytes > len(d) or cbytes < 16:
        raise c.fail(f"says it holds {cbytes} bytes, has {len(d)}", TruncatedFileError)
    name, mod = c.codec("blosc2", "blosc", "numcodecs")
    if name == "numcodecs":
        out = c.run(lambda b: bytes(mod.Blosc().decode(b)), d[:cbytes])
    else:
        out = c.run(mod.decompress, d[:cbytes])
    if len(out) != n:
        raise c.fail(f"decodes to {len(out)} bytes, its header says {n}")
    return out


def _blosc2_chunk(c: _Chunk, b: bytes, what: str, limit: int) -> bytes:
    """One Blosc2 chunk (a Blosc buffer with the 32-byte extended header) of at most limit bytes."""
    if len(b) < 32:
        raise c.fail(f"has a {what} of {len(b)} bytes, shorter than a Blosc2 header", TruncatedFileError)
    n = c.check_size(int.from_bytes(b[4:8], "little"), f"has a {what} that decodes to", limit)
    cbytes = int.from_bytes(b[12:16], "little")
    if cbytes > len(b) or cbytes < 32:
        raise c.fail(f"has a {what} of {cbytes} bytes where {len(b)} are left", TruncatedFileError)
    _name, mod = c.codec("blosc2")
    out = c.run(mod.decompress, b[:cbytes])
    if len(out) != n:
        raise c.fail(f"has a {what} that decodes to {len(out)} bytes, its header says {n}")
    return out


def _blosc2(c: _Chunk) -> bytes:
    """Blosc2 filter (32026, hdf5-blosc2): the chunk is a Blosc2 contiguous frame (c-blosc2
    README_CFRAME_FORMAT) holding one Blosc2 chunk; with a "b2nd" (or older "caterva") metalayer
    its data are laid out in blocks of the metalayer's block shape and are reassembled into the
    C-order chunk, as the filter's b2nd_get_slice_cbuffer does."""
    d = c.data
    n = len(d)
    if n < 87 or d[0] & 0xF0 != 0x90 or d[1:10] != b"\xa8b2frame\x00":
        raise c.fail("is not a Blosc2 frame")
    if d[10] != 0xD2 or d[15] != 0xCF or d[29] != 0xD3 or d[38] != 0xD3 or d[47] != 0xD2 or d[57] != 0xD2:
        raise c.fail("has a Blosc2 frame header of an unknown layout")
    header_len, frame_len = _be(d, 11, 4, True), _be(d, 16, 8)
    nbytes, cbytes = _be(d, 30, 8, True), _be(d, 39, 8, True)
    typesize, chunksize = _be(d, 48, 4, True), _be(d, 58, 4, True)
    if d[26] & 0x0F:
        raise c.fail(f"is a Blosc2 frame of type {d[26] & 0x0F} (not contiguous)", UnsupportedFormatError)
    if not 87 <= header_len <= frame_len <= n or cbytes < 0 or nbytes < 0 or typesize < 1:
        raise c.fail(f"has a Blosc2 frame of {frame_len} bytes with a {header_len}-byte header in {n} bytes")
    layout = _b2nd_layout(c, d, header_len)
    # the frame's data must fit the HDF5 chunk; b2nd blocks pad each dimension to less than twice
    limit = c.limit << (len(layout[0]) if layout is not None else 0)
    c.check_size(nbytes, "holds", limit)
    nchunks = -(-nbytes // chunksize) if chunksize > 0 else None
    # chunk offsets: a Blosc2 chunk of int64 after the data chunks; negative = special chunk
    off_pos = header_len + cbytes
    if off_pos > frame_len:
        raise c.fail("has its Blosc2 chunk offsets past the end of its frame", TruncatedFileError)
    offsets = np.frombuffer(_blosc2_chunk(c, d[off_pos:frame_len], "chunk offset index", 64), dtype="<i8")
    if len(offsets) != 1 or (nchunks is not None and nchunks != 1):
        raise c.fail(f"has a Blosc2 frame of {len(offsets)} chunks; the HDF5 filter writes one")
    off = int(offsets[0])
    if off < 0:  # a chunk of one special value (frame_special_chunk): zeros, uninitialised, NaNs
        special = (off & (2**64 - 1)) >> 56
        if special & 1 or special & 4:
            raw = bytes(nbytes)
        elif special & 2 and typesize in (4, 8) and nbytes % typesize == 0:
            raw = np.full(nbytes // typesize, np.nan, dtype=f"<f{typesize}").tobytes()
        else:
            raise c.fail(f"has a Blosc2 special chunk of kind {special:#x} for {typesize}-byte items")
    else:
        if header_len + off > frame_len:
            raise c.fail(f"has its Blosc2 chunk at {off}, past the end of its frame", TruncatedFileError)
        raw = _blosc2_chunk(c, d[header_len + off:frame_len], "Blosc2 chunk", limit)
    if len(raw) != nbytes:
        raise c.fail(f"has a Blosc2 chunk of {len(raw)} bytes in a frame of {nbytes} bytes")
    if layout is None:
        return raw
    shape, chunkshape, blockshape = layout
    ext = [-(-ch // bl) * bl for ch, bl in zip(chunkshape, blockshape)]
    if int(np.prod(ext)) * typesize != len(raw) or any(s > ch for s, ch in zip(shape, chunkshape)):
        raise c.fail(f"has b2nd shapes {shape}/{chunkshape}/{blockshape} that do not match its {len(raw)} bytes")
    grid = [e // bl for e, bl in zip(ext, blockshape)]
    arr = np.frombuffer(raw, dtype=f"V{typesize}").reshape(grid + list(blockshape))
    nd = len(shape)
    arr = arr.transpose([k for i in range(nd) for k in (i, nd + i)]).reshape(ext)
    out = arr[tuple(slice(0, s) for s in shape)]
    return np.ascontiguousarray(out).tobytes()


def _b2nd_layout(c: _Chunk, d: bytes, header_len: int):
    """(shape, chunkshape, blockshape) from a frame's "b2nd" or "caterva" metalayer, else None.

    Metalayers (from byte 87 of the header): fixarray(3), uint16 size, map16 of name -> int32
    offset of the content (bin32 at that offset in the frame); the b2nd content is the msgpack
    array [version, ndim, shape (int64s), chunkshape (int32s), blockshape (int32s), ...]."""
    h = d[:header_len]
    if len(h) < 94 or h[87] != 0x93 or h[88] != 0xCD or h[91] != 0xDE:
        return None
    count, pos, where = _be(h, 92, 2), 94, None
    for _ in range(count):
        if pos >= len(h) or h[pos] & 0xE0 != 0xA0:
            raise c.fail("has a Blosc2 metalayer map of an unknown layout")
        ln = h[pos] & 0x1F
        name = h[pos + 1:pos + 1 + ln]
        pos += 1 + ln
        if pos + 5 > len(h) or h[pos] != 0xD2:
            raise c.fail("has a Blosc2 metalayer map of an unknown layout")
        if name in (b"b2nd", b"caterva"):
            where = _be(h, pos + 1, 4, True)
        pos += 5
    if where is None:
        return None
    if not 0 <= where <= len(h) - 5 or h[where] != 0xC6:
        raise c.fail("has a b2nd metalayer outside its Blosc2 frame header")
    size = _be(h, where + 1, 4)
    m = h[where + 5:where + 5 + size]
    try:
        if m[0] not in (0x96, 0x97) or m[1] > 0x7F or m[2] > 0x7F:
            raise IndexError
        nd, pos = m[2], 3
        if not 1 <= nd <= 8:
            raise IndexError
        dims = []
        for marker, width in ((0xD3, 8), (0xD2, 4), (0xD2, 4)):
            if m[pos] != 0x90 + nd:
                raise IndexError
            pos += 1
            row = []
            for _ in range(nd):
                if m[pos] != marker or len(m) < pos + 1 + width:
                    raise IndexError
                row.append(_be(m, pos + 1, width, True))
                pos += 1 + width
            dims.append(tuple(row))
    except IndexError:
        raise c.fail("has a b2nd metalayer of an unknown layout") from None
    shape, chunkshape, blockshape = dims
    if any(x < 1 for x in shape + chunkshape + blockshape) or any(b > ch for b, ch in zip(blockshape, chunkshape)):
        raise c.fail(f"has b2nd shapes {shape}/{chunkshape}/{blockshape}")
    return dims


def _lz4(c: _Chunk) -> bytes:
    """LZ4 filter (32004, H5Zlz4.c): original size (BE u64), block size (BE u32), then per block
    its stored size (BE u32) and bytes; a block stored at its full size is not compressed."""
    d = c.data
    if len(d) < 12:
        raise c.fail(f"of {len(d)} bytes is shorter than its LZ4 header", TruncatedFileError)
    total = c.check_size(_be(d, 0, 8))
    block = min(_be(d, 8, 4), total)
    if total and block == 0:
        raise c.fail("has LZ4 blocks of 0 bytes")
    name, mod = c.codec("lz4.block", "numcodecs")
    parts, done, pos = [], 0, 12
    while done < total:
        n = min(block, total - done)
        if pos + 4 > len(d):
            raise c.fail(f"ends after {done} of {total} bytes", TruncatedFileError)
        size = _be(d, pos, 4)
        pos += 4
        if pos + size > len(d):
            raise c.fail(f"has an LZ4 block of {size} bytes where {len(d) - pos} are left", TruncatedFileError)
        blk = d[pos:pos + size]
        pos += size
        if size == n:
            out = blk
        elif name == "lz4.block":
            out = c.run(mod.decompress, blk, n)
        else:  # numcodecs' LZ4 codec: its own 4-byte LE size prefix, then the block
            out = c.run(lambda b: bytes(mod.LZ4().decode(n.to_bytes(4, "little") + b)), blk)
        if len(out) != n:
            raise c.fail(f"has an LZ4 block that decodes to {len(out)} bytes, expected {n}")
        parts.append(out)
        done += n
    return b"".join(parts)


def _zstd_content_size(d: bytes):
    """Frame_Content_Size of the zstd frame at the start of d (RFC 8878 3.1.1), None if absent."""
    if len(d) < 6 or d[:4] != b"\x28\xb5\x2f\xfd":
        return None
    fhd = d[4]
    single = (fhd >> 5) & 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    width = ((1 if single else 0), 2, 4, 8)[fhd >> 6]
    if width == 0 or len(d) < pos + width:
        return None
    return int.from_bytes(d[pos:pos + width], "little") + (256 if width == 2 else 0)


def _zstd(c: _Chunk) -> bytes:
    """Zstandard filter (32015, H5Zzstd.c): the chunk is a zstd frame."""
    d = c.data
    declared = _zstd_content_size(d)
    if declared is not None:
        c.check_size(declared)
    name, mod = c.codec("zstandard", "numcodecs")
    if name == "zstandard":
        def run(b):
            parts, total = [], 0
            with mod.ZstdDecompressor().stream_reader(b, read_across_frames=True) as r:
                while total <= c.limit:
                    part = r.read(c.limit + 1 - total)
                    if not part:
                        break
                    parts.append(part)
                    total += len(part)
            return b"".join(parts)

        out = c.run(run, d)
    else:
        if declared is None:  # numcodecs cannot bound a frame that does not state its size
            raise c.fail("is a zstd frame without its size; install the Python package zstandard to read it",
                         UnsupportedFormatError)
        out = c.run(lambda b: bytes(mod.Zstd().decode(b)), d)
    c.check_size(len(out))
    return out


def _bzip2(c: _Chunk) -> bytes:
    """BZip2 filter (307, H5Zbzip2.c): the chunk is one bzip2 stream."""
    _name, mod = c.codec("bz2")
    dec = mod.BZ2Decompressor()
    out = c.run(dec.decompress, c.data, c.limit + 1)
    c.check_size(len(out))
    if not dec.eof:
        raise c.fail("ends inside its bzip2 stream", TruncatedFileError)
    return out


def _szip(c: _Chunk) -> bytes:
    """SZIP filter (4, H5Zszip.c over libaec's SZ API): decoded size (LE u32), then the SZ stream;
    client data = options mask, pixels per block, bits per pixel, pixels per scanline."""
    d, v = c.data, c.values
    if len(v) != 4:
        raise c.fail(f"has {len(v)} szip parameters, expected 4")
    if len(d) < 4:
        raise c.fail(f"of {len(d)} bytes is shorter than its szip header", TruncatedFileError)
    n = c.check_size(int.from_bytes(d[:4], "little"))
    _name, mod = c.codec("imagecodecs")
    out = c.run(lambda b: bytes(mod.szip_decode(b, v[0], v[1], v[2], v[3], out=n)), d[4:])
    if len(out) != n:
        raise c.fail(f"decodes to {len(out)} bytes, its header says {n}")
    return out


#: HDF5 filter id -> decoder, for the registered filters read through optional packages
DECODERS = {4: _szip, 307: _bzip2, 32001: _blosc1, 32004: _lz4, 32015: _zstd, 32026: _blosc2}


def unshuffle(data: bytes, size: int) -> bytes:
    """Inverse of HDF5's byte shuffle for elements of `size` bytes (trailing bytes left as-is)."""
    n = len(data) // size if size else 0
    if size <= 1 or n <= 1:
        return data
    body = np.frombuffer(data, dtype=np.uint8, count=n * size).reshape(size, n).T.reshape(-1)
    return body.tobytes() + data[n * size:]


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 (16-bit big-endian words, both sums modulo 65535), computed in blocks."""
    n = len(data) // 2
    w = np.frombuffer(data, dtype=">u2", count=n).astype(np.uint64)
    s1 = s2 = 0
    step = 1 << 20
    for b in range(0, n, step):
        blk = w[b:b + step]
        k = len(blk)
        # each word is added to sum1, and sum1 to sum2 after every word: word j of the block
        # reaches sum2 (k - j) times, the running sum1 k times
        weighted = int((blk * np.arange(k, 0, -1, dtype=np.uint64)).sum())
        s2 = (s2 + s1 * k + weighted) % 65535
        s1 = (s1 + int(blk.sum())) % 65535
    if len(data) % 2:
        s1 = (s1 + (data[-1] << 8)) % 65535
        s2 = (s2 + s1) % 65535
    return (s2 << 16) | s1


def fletcher32_strip(data: bytes, path: str, addr: int) -> bytes:
    if len(data) < 4:
        raise CorruptFileError(f"chunk of dataset {path!r} is too short for its fletcher32 checksum", addr)
    body, stored = data[:-4], int.from_bytes(data[-4:], "little")
    want = fletcher32(body)
    ok = False
    for s in (stored, int.from_bytes(data[-4:], "big")):
        if (s & 0xFFFF) % 65535 == want & 0xFFFF and (s >> 16) % 65535 == want >> 16:
            ok = True
    if not ok:
        raise CorruptFileError(f"fletcher32 checksum mismatch in a chunk of dataset {path!r}", addr)
    return body


class HDF5Reader(Reader):
    """Generic HDF5: every dataset is a tensor named by its path; metadata = root attributes."""

    format = "hdf5"

    def __init__(self, source, file: HDF5File | None = None, flags: int = 0):
        super().__init__(source)
        self.file = file if file is not None else HDF5File(source, flags=flags)
        f = self.file
        shift = 0 if f.shift is None else f.shift
        infos, slow = f.h5.fast_infos(TensorInfo, shift, CONTIGUOUS, COMPACT)
        if f.shift is None:  # data not in the file (an inflated zip member): no offsets
            infos = [i if isinstance(i, int) else i._replace(offset=None) for i in infos]
        for k in slow:
            infos[k] = f.info(infos[k])
        self._tensors = infos

    def close(self):
        self.file.close()

    def read(self, info: TensorInfo):
        f = self.file
        if info.offset is not None and info.dtype in _PLAIN:
            return source_view(self.source, info, info.extras.get("byteorder", "<"))
        return f.read(f.index(info.name), info.name)

    def attrs(self, path: str = "") -> dict:
        """Decoded attributes of the object at an HDF5 path ("" = root)."""
        f = self.file
        return f.attrs(f.resolve(f.index(path)))

    def metadata(self) -> dict:
        f = self.file
        meta = dict(f.attrs(0))
        ub = f.h5.superblock[0]
        if ub:
            meta["userblock_size"] = ub
            head = bytes(f._meta(0, min(ub, 128)))
            if head.startswith(b"MATLAB"):
                meta["matlab_header"] = head.split(b"\x00", 1)[0].decode("latin-1").strip()
        return meta

    def tree(self):
        return build_tree(self.file, {t.name: t for t in self._tensors})


_PLAIN = frozenset(_native.DTYPE_NAMES) - {"unknown", "string"}


def build_tree(f: HDF5File, by_name: dict, attrs: bool = True):
    """Nested dicts mirroring the groups (children in h5py keys() order), TensorInfo leaves,
    soft/external links and aliases as "-> target" strings, attributes under "@attrs"."""
    objs = f.objects
    children: dict[int, list[int]] = {}
    for i, o in enumerate(objs):
        if o[2] >= 0:
            children.setdefault(o[2], []).append(i)

    def node(i):
        o = objs[i]
        kind = o[1]
        if kind == DATASET:
            return by_name.get(o[0])
        if kind == GROUP:
            d = {}
            if attrs and o[10]:
                d["@attrs"] = f.attrs(i)
            kids = children.get(i, [])
            if o[8]:  # creation order tracked: h5py's keys() order
                kids = sorted(kids, key=lambda k: objs[k][7])
            for k in kids:
                d[objs[k][0][objs[k][11]:]] = node(k)
            return d
        if kind == SOFT:
            return "soft link -> " + o[6].decode("utf-8", "replace")
        if kind == EXTERNAL:
            parts = o[6][1:].split(b"\x00")
            return "external link -> " + ":".join(p.decode("utf-8", "replace") for p in parts[:2])
        if kind == ALIAS:
            return "hard link -> /" + objs[o[5]][0]
        if kind == DATATYPE:
            return "committed datatype"
        return "object"

    return node(0)


def open_reader(source, flags: int = 0):
    """An HDF5 file, read generically. The registry's "hdf5" opener is formats.keras.open_hdf5,
    which gives Keras files the Keras reader (keras.py builds on this module, not the reverse)."""
    f = HDF5File(source, flags=flags)
    try:
        return HDF5Reader(source, f)
    except BaseException:
        f.close()
        raise


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")
