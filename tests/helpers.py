"""Test helpers shared by the format tests: robustness and differential mutation runs
(check_robust), zero-copy checks (assert_view_of), protobuf bytes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field as dc_field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: make test-asan preloads the sanitizer runtime into every process it starts: ASan then turns a
#: SIGSEGV into its own exit status 1 and needs address space that RLIMIT_DATA/RLIMIT_AS and
#: qemu-user deny, so the tests of those behaviours skip there (they run in make test)
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
HERE = os.path.dirname(os.path.abspath(__file__))



# ---- zero copy ------------------------------------------------------------------------------------

def _span(array) -> tuple[int, int]:
    """[first, last + 1) byte addresses an array touches."""
    start = array.__array_interface__["data"][0]
    lo = hi = start
    for n, st in zip(array.shape, array.strides):
        if n > 1:
            if st < 0:
                lo += (n - 1) * st
            else:
                hi += (n - 1) * st
    return lo, hi + array.itemsize


def assert_view_of(m, array, info=None, buffer=None):
    """`array`, read from the open ModelFile `m`, is a view of the file's map, not a copy: every
    byte it touches lies inside the map and, given the tensor's TensorInfo, it starts at the
    map's address + info.offset (the TensorInfo contract). `buffer` names another map instead
    (a side file: ONNX external data)."""
    import numpy as np

    if buffer is None:
        base, size = m._buffer_address(), m.size
    else:
        base, size = np.frombuffer(buffer, dtype=np.uint8, count=1).__array_interface__["data"][0], len(buffer)
    assert base is not None, "the file has no map"
    assert array.size, "an empty array proves nothing"
    lo, hi = _span(array)
    assert base <= lo and hi <= base + size, (
        f"a copy, not a view of the file's map (array at {lo:#x}..{hi:#x}, map at {base:#x}..{base + size:#x})")
    if info is not None:
        assert info.offset is not None, f"{info.name}: a view but no offset"
        start = array.__array_interface__["data"][0]
        assert start == base + info.offset, f"{info.name}: view of byte {start - base}, TensorInfo says {info.offset}"


# ---- robustness and differential mutation runs ----------------------------------------------------

@dataclass(frozen=True)
class Known:
    """A documented disagreement with the reference on a mutant.

    direction "stricter": mfparse raises, the reference accepts; `pattern` (a regex) is searched
    in mfparse's message. "laxer": mfparse accepts, the reference raises; `pattern` is searched
    in "ExceptionType: message" of the reference's error. "differs": both list the file, not
    alike; `pattern` is searched in the description of the difference. `why` says why.
    """

    direction: str
    pattern: str
    why: str
    #: byte ranges [(start, end), ...]: the disagreement is known only for a mutant that
    #: changes a byte in one of them (a flip there, or a cut inside); None: anywhere
    at: tuple | None = None


@dataclass
class Robust:
    """What check_robust saw. truncated / flipped: {"ok": n, "error": n} over mfparse's full
    open + list + read + tree + metadata (crashes are impossible: the child would have died).
    With a reference: compared (mutants given to both), agree (both listed the same tensors,
    dtypes, shapes and bytes), both_error, known ({why: n} documented disagreements),
    uncompared (the reference ran past ref_timeout, or its listing has no mfparse equivalent)."""

    truncated: dict
    flipped: dict
    compared: int = 0
    agree: int = 0
    both_error: int = 0
    known: dict = dc_field(default_factory=dict)
    uncompared: int = 0

    @property
    def total(self) -> int:
        return sum(self.truncated.values()) + sum(self.flipped.values())


def check_robust(path, fmt=None, seed=0, flips=300, all_prefixes=6000, sampled=3000, limit_gb=4, timeout=600,
                 ref=None, ref_max=400, known=(), ref_timeout=2.0, ref_ranges=None):
    """Every truncated prefix (all of them up to `all_prefixes` bytes, else the first KiB, the last
    256 bytes and `sampled` cuts between) and `flips` random 1-4 byte flips of the file at `path`
    must open to an MFParseError with a message or to a result: no crash, no hang, no huge
    allocation (a child process under an address-space limit).

    With `ref` (a name in REFERENCES), up to `ref_max` of those mutants (every flip that changes
    bytes only inside `ref_ranges` [(start, end), ...] when given, then prefixes spread over the
    file) are also given to the reference reader: both must fail, or
    both succeed with the same names, dtypes, shapes and bytes, unless a `known` (Known)
    disagreement explains the difference. Any other outcome fails the test, naming the mutant.

    Returns a Robust with the counts, for the caller to assert on.
    """
    params = dict(path=os.fspath(path), fmt=fmt, seed=seed, flips=flips, all_prefixes=all_prefixes,
                  sampled=sampled, limit=int(limit_gb * (1 << 30)), ref=ref, ref_max=ref_max, ref_timeout=ref_timeout,
                  ref_ranges=ref_ranges,
                  known=[(k.direction, k.pattern, k.why, k.at) for k in known],
                  root=None if os.environ.get("MFPARSE_TEST_INSTALLED") == "1" else ROOT)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(params)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"child failed (rc {r.returncode}, seed {seed}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    bad = out.pop("disagreements")
    assert not bad, (f"{len(bad)} mutant(s) where mfparse and {ref} disagree (seed {seed}); first ones:\n"
                     + "\n".join(bad[:8]))
    res = Robust(**out)
    assert sum(res.flipped.values()) == flips
    if ref is not None:
        assert res.compared == res.agree + res.both_error + sum(res.known.values())
    return res


# ---- the reference readers, as listings {key: (name, dtype, shape, data)} --------------------------
# Run in check_robust's child process on a mutant's bytes; any exception means "the reference
# fails". Each returns the same shape of listing as _MF_LISTINGS[...] builds from mfparse.

def _bytes_of(a) -> bytes | tuple:
    import numpy as np

    a = np.asarray(a)
    if a.dtype.kind == "O":
        return tuple(x if isinstance(x, bytes) else str(x).encode() for x in a.reshape(-1).tolist())
    return np.ascontiguousarray(a).tobytes()


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
              "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
              "C64": "complex64", "F8_E8M0": "float8_e8m0fnu"}


def _ref_safetensors(data: bytes, tmp: str) -> dict:
    import safetensors

    return {name: (name, _ST_DTYPES.get(d["dtype"], "?" + d["dtype"]), tuple(d["shape"]), bytes(d["data"]))
            for name, d in safetensors.deserialize(data)}


def _np_dtype_name(dt) -> str:
    """mfparse's name for a numpy dtype: numpy's own (float32, bytes64, void64, ...), byte order
    aside; "structured" for a dtype with fields (formats/npy.py)."""
    if dt.names is not None:
        return "structured"
    return dt.newbyteorder("=").name if dt.kind in "biufcSUmMV" else dt.str


def _ref_npy(data: bytes, tmp: str) -> dict:
    import io

    import numpy as np

    a = np.load(io.BytesIO(data), allow_pickle=False)
    return {"array": ("array", _np_dtype_name(a.dtype), a.shape, (a.dtype.str, _bytes_of(a)))}


def _ref_npz(data: bytes, tmp: str) -> dict:
    import io

    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        out = {}
        for k in z.files:
            a = z[k]
            out[k] = (k, _np_dtype_name(a.dtype), a.shape, (a.dtype.str, _bytes_of(a)))
        return out


def _ref_gguf(data: bytes, tmp: str) -> dict:
    import warnings

    from gguf import GGUFReader

    p = os.path.join(tmp, "mutant.gguf")
    with open(p, "wb") as f:
        f.write(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = GGUFReader(p)
        out = {}
        for t in r.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            out[t.name] = (t.name, t.tensor_type.name, shape, t.data.tobytes())
        return out


def _ref_torch(data: bytes, tmp: str) -> dict:
    import io
    import warnings

    import torch
    from torch_ref import dtype_name, flatten, raw_bytes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")

    def keys_are_names(o):
        if isinstance(o, dict):
            return all(isinstance(k, str) and keys_are_names(v) for k, v in o.items())
        if isinstance(o, (list, tuple)):
            return all(keys_are_names(v) for v in o)
        return True

    if not keys_are_names(obj):
        raise Incomparable("a dict key that is not a string (mfparse names it <key@offset>)")
    return {k: (k, dtype_name(t.dtype), tuple(t.shape), raw_bytes(t)) for k, t in flatten(obj).items()}


def _ref_hdf5(data: bytes, tmp: str) -> dict:
    import io

    import h5py
    import numpy as np

    out = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in names:
            ds = f[name]
            if ds.chunks is not None:
                continue  # see _mf_hdf5
            a = np.asarray(ds[()]) if ds.shape is not None else np.empty(0, ds.dtype)
            if isinstance(name, bytes):  # h5py hands out a name that is not UTF-8 as bytes
                name = name.decode("utf-8", "backslashreplace")
            out[name] = (name, _h5_dtype_name(h5py, ds.dtype, a.dtype), a.shape, (a.dtype.str, _bytes_of(a)))
    return out


def _h5_dtype_name(h5py, stored, dt) -> str:
    """mfparse's dtype name for what h5py reads (tests/test_hdf5.py test_dtype_names)."""
    if h5py.check_string_dtype(stored) is not None and stored.kind == "O":
        return "string"
    if h5py.check_vlen_dtype(stored) is not None:
        return "vlen"
    if stored.names:
        return "compound"
    if stored.kind == "S":
        return f"S{stored.itemsize}"
    if stored.kind == "V":
        return "opaque"
    return _np_dtype_name(dt)


def _ref_onnx(data: bytes, tmp: str) -> dict:
    """Main-graph initializers, sparse initializers and node-attribute tensors of the main
    graph, named as mfparse names them (formats/onnx.py docstring: a Constant's tensor under
    its output name, any other under "<node name or output>/<attribute>"). Subgraphs and
    functions are not walked (_mf_onnx leaves their tensors out too); a mutant with an empty
    or repeated name, which mfparse would rename, is not compared."""
    import warnings

    import onnx
    from onnx import numpy_helper

    def text(v) -> str:  # protobuf hands out a string field that is not UTF-8 as bytes
        return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = onnx.load_model_from_string(data)
        g = model.graph
        items = []  # (name, TensorProto)
        for t in g.initializer:
            items.append((text(t.name), t))
        for sp in g.sparse_initializer:
            items.append((text(sp.values.name), sp.values))
            items.append((text(sp.indices.name) or f"{text(sp.values.name)}.indices", sp.indices))
        for node in g.node:
            out0 = text(node.output[0]) if node.output else ""
            label = text(node.name) or out0
            for a in node.attribute:
                if a.HasField("sparse_tensor"):
                    raise Incomparable("a sparse tensor attribute")
                if a.HasField("t"):
                    constant = node.op_type == "Constant" and node.domain in ("", "ai.onnx") and out0
                    items.append((out0 if constant else f"{label}/{text(a.name)}", a.t))
                for i, t in enumerate(a.tensors):
                    items.append((f"{label}/{text(a.name)}" + (f"[{i}]" if i else ""), t))
        names = [n for n, _ in items]
        if "" in names or len(set(names)) != len(names) or any(n.startswith("/") for n in names):
            raise Incomparable("an empty or repeated tensor name (mfparse renames it)")
        out = {}
        for name, t in items:
            a = numpy_helper.to_array(t)
            out[name] = (name, _onnx_dtype(t.data_type), tuple(t.dims), _bytes_of(a))
        return out


#: ONNX TensorProto.DataType name -> mfparse dtype (tests/test_onnx.py checks every one)
ONNX_DTYPE_NAMES = {
    "FLOAT": "float32", "UINT8": "uint8", "INT8": "int8", "UINT16": "uint16", "INT16": "int16", "INT32": "int32",
    "INT64": "int64", "STRING": "string", "BOOL": "bool", "FLOAT16": "float16", "DOUBLE": "float64",
    "UINT32": "uint32", "UINT64": "uint64", "COMPLEX64": "complex64", "COMPLEX128": "complex128",
    "BFLOAT16": "bfloat16", "FLOAT8E4M3FN": "float8_e4m3fn", "FLOAT8E4M3FNUZ": "float8_e4m3fnuz",
    "FLOAT8E5M2": "float8_e5m2", "FLOAT8E5M2FNUZ": "float8_e5m2fnuz", "UINT4": "uint4", "INT4": "int4",
    "FLOAT4E2M1": "float4_e2m1fn", "FLOAT8E8M0": "float8_e8m0fnu", "UINT2": "uint2", "INT2": "int2",
    "FLOAT6E2M3": "float6_e2m3fn", "FLOAT6E3M2": "float6_e3m2fn",
}


def _onnx_dtype(code: int) -> str:
    from onnx import TensorProto

    return ONNX_DTYPE_NAMES[TensorProto.DataType.Name(code)]


def _ref_tflite(data: bytes, tmp: str) -> dict:
    """Every tensor whose buffer holds data, keyed (subgraph, tensor index), from the tflite
    package's generated accessors (which do not verify the flatbuffer)."""
    import tflite

    model = tflite.Model.GetRootAsModel(data, 0)
    type_names = {v: k.lower() for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
    out = {}
    for si in range(model.SubgraphsLength()):
        sg = model.Subgraphs(si)
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            buf = model.Buffers(t.Buffer())
            if buf is None:
                raise IndexError(f"tensor {ti} names buffer {t.Buffer()}")
            if buf.DataLength() == 0 and buf.Offset() == 0:
                continue
            raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else data[buf.Offset():buf.Offset() + buf.Size()]
            shape = tuple(t.ShapeAsNumpy().tolist()) if t.ShapeLength() else ()
            name = t.Name().decode("utf-8", "backslashreplace") if t.Name() else f"tensor_{ti}"
            out[(si, ti)] = (name if si == 0 else f"subgraph{si}/{name}", type_names.get(t.Type(), "?"), shape,
                             None if t.Sparsity() is not None else raw)
    return out


REFERENCES = {"safetensors": _ref_safetensors, "npy": _ref_npy, "npz": _ref_npz, "gguf": _ref_gguf,
              "torch": _ref_torch, "hdf5": _ref_hdf5, "onnx": _ref_onnx, "tflite": _ref_tflite}


# ---- mfparse's side of the comparison -------------------------------------------------------------

def _mf_plain(m) -> dict:
    return {t.name: (t.name, t.dtype, tuple(t.shape), _bytes_of(m[t.name])) for t in m.tensors()}


def _mf_typed(m) -> dict:
    out = {}
    for t in m.tensors():
        a = m[t.name]
        out[t.name] = (t.name, t.dtype, tuple(t.shape), (a.dtype.str, _bytes_of(a)))
    return out


def _mf_hdf5(m) -> dict:
    """Contiguous and compact datasets only: a damaged chunk index (a key's coordinates) makes
    the HDF5 library fill the chunk it no longer finds, where mfparse still places the chunk
    (reported; chunked data is compared with h5py on undamaged files in tests/test_hdf5.py)."""
    out = {}
    for t in m.tensors():
        if t.extras.get("layout") != "chunked":
            a = m[t.name]
            out[t.name] = (t.name, t.dtype, tuple(t.shape), (a.dtype.str, _bytes_of(a)))
    return out


def _mf_gguf(m) -> dict:
    return {t.name: (t.name, t.extras["ggml_type"], tuple(t.shape), _bytes_of(m[t.name])) for t in m.tensors()}


def _mf_onnx(m) -> dict:
    return {t.name: (t.name, t.dtype, tuple(t.shape), _bytes_of(m.read(t)))
            for t in m.tensors() if not (t.extras and "graph" in t.extras)}


def _mf_tflite(m) -> dict:
    out = {}
    for t in m.tensors():
        key = (t.extras["subgraph"], t.extras["tensor_index"])
        name = re.sub(r"#\d+\Z", "", t.name)
        data = None if "sparsity" in t.extras else _bytes_of(m.read(t, packed=True))
        out[key] = (name, t.dtype, tuple(t.shape), data)
    return out


_MF_LISTINGS = {"safetensors": _mf_plain, "npy": _mf_typed, "npz": _mf_typed, "gguf": _mf_gguf,
                "torch": _mf_plain, "hdf5": _mf_hdf5, "onnx": _mf_onnx, "tflite": _mf_tflite}


# ---- the child process ------------------------------------------------------------------------------

def _child(p: dict) -> None:
    import random
    import resource
    import signal
    import tempfile

    def on_alarm(*_):
        raise _RefTimeout()

    signal.signal(signal.SIGALRM, on_alarm)

    if p["root"]:
        sys.path.insert(0, p["root"])
    import faulthandler

    faulthandler.enable()
    import mfparse

    data = open(p["path"], "rb").read()
    fmt, ref = p["fmt"], p["ref"]
    reference, mf_listing = (REFERENCES[ref], _MF_LISTINGS[ref]) if ref else (None, None)
    known = p["known"]
    tmpdir = tempfile.TemporaryDirectory()
    tmp = tmpdir.name
    if ref:  # imports the reference library, and checks that both agree on the file itself
        with mfparse.open(data, format=fmt) as m:
            mine = mf_listing(m)
        theirs = reference(data, tmp)
        assert mine == theirs, f"mfparse and {ref} disagree on the unmutated file"
    # a hostile file must never make us allocate much: cap the address space (not under ASan,
    # whose shadow memory needs a large reservation; ASan reports huge allocations itself) at
    # `limit` bytes beyond what the interpreter and the libraries already hold
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        with open("/proc/self/status") as f:
            held = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (held + p["limit"], held + p["limit"]))

    def attempt(buf, compare):
        """mfparse's verdict ("ok"/"error") on the whole file, and its listing (or its error
        message) when a comparison follows."""
        listing = None
        try:
            with mfparse.open(buf, format=fmt) as m:
                if compare:
                    try:
                        listing = mf_listing(m)
                    except mfparse.MFParseError as e:
                        listing = e
                for t in m.tensors():
                    if t.offset is not None and t.nbytes < (1 << 24):
                        a = m[t.name]
                        a.sum() if a.dtype.kind in "biuf" else None
                m.tree()
                m.metadata
            verdict = "ok"
        except mfparse.MFParseError as e:
            if not str(e):
                raise AssertionError("empty error message")
            verdict = "error"
            if listing is None:
                listing = e
        return verdict, listing

    res = {"truncated": {"ok": 0, "error": 0}, "flipped": {"ok": 0, "error": 0}, "compared": 0, "agree": 0,
           "both_error": 0, "known": {}, "uncompared": 0, "disagreements": []}
    n = len(data)
    if n <= p["all_prefixes"]:
        prefixes = list(range(n))
    else:
        step = max(1, n // p["sampled"])
        prefixes = sorted(set(range(0, min(n, 1024))) | set(range(max(0, n - 256), n)) | set(range(0, n, step)))
    rnd = random.Random(p["seed"])
    mutants = [("truncated", f"prefix of {k} bytes", data[:k], [k]) for k in prefixes]
    for _ in range(p["flips"]):
        b = bytearray(data)
        where, changed = [], []
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(n)
            b[i] = rnd.randrange(256)
            where.append(f"{i}={b[i]:#04x}")
            if b[i] != data[i]:
                changed.append(i)
        mutants.append(("flipped", "bytes " + " ".join(where), bytes(b), changed))
    compare = set()
    if ref:  # every flip (inside ref_ranges when given), then prefixes spread over the file, up to ref_max
        ranges = p["ref_ranges"]
        flips_at = [i for i, m in enumerate(mutants) if m[0] == "flipped" and m[3] and (
            ranges is None or all(any(lo <= c < hi for lo, hi in ranges) for c in m[3]))][:p["ref_max"]]
        room = max(0, p["ref_max"] - len(flips_at))
        step = max(1, -(-len(prefixes) // room)) if room else None
        compare = set(flips_at) | (set(range(0, len(prefixes), step)) if step else set())
    if True:
        for i, (kind, what, buf, changed) in enumerate(mutants):
            verdict, mine = attempt(buf, i in compare)
            res[kind][verdict] += 1
            if i not in compare:
                continue
            res["compared"] += 1
            signal.setitimer(signal.ITIMER_REAL, p["ref_timeout"])
            try:
                theirs = reference(buf, tmp)
            except (_RefTimeout, Incomparable):
                res["uncompared"] += 1  # no verdict from the reference: not compared
                res["compared"] -= 1
                continue
            except Exception as e:  # noqa: BLE001 (any failure of the reference, MemoryError too, is its verdict)
                theirs = e
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            ok_mine, ok_theirs = not isinstance(mine, Exception), not isinstance(theirs, Exception)
            if ok_mine and ok_theirs:
                if mine == theirs:
                    res["agree"] += 1
                    continue
                diff = sorted(set(mine) ^ set(theirs), key=str)[:4] or [
                    k for k in mine if mine[k] != theirs[k]][:2]
                problem = "listings differ: " + "; ".join(
                    f"{k!r}: mfparse {_short(mine.get(k))} vs {ref} {_short(theirs.get(k))}" for k in diff)
                why = next((w for d, pat, w, _at in known if d == "differs" and re.search(pat, problem)), None)
                if why is not None:
                    res["known"][why] = res["known"].get(why, 0) + 1
                    continue
            elif not ok_mine and not ok_theirs:
                res["both_error"] += 1
                continue
            else:
                direction = "stricter" if ok_theirs else "laxer"
                text = str(mine) if not ok_mine else f"{type(theirs).__name__}: {theirs}"
                why = next((w for d, pat, w, at in known if d == direction and re.search(pat, text) and
                            (at is None or any(lo <= c < hi for c in changed for lo, hi in at))), None)
                if why is not None:
                    res["known"][why] = res["known"].get(why, 0) + 1
                    continue
                problem = (f"mfparse raised {type(mine).__name__}: {mine}; {ref} accepted it"
                           if not ok_mine else f"mfparse accepted it; {ref} raised {text}")
            res["disagreements"].append(f"{kind} ({what}): {problem}")
    tmpdir.cleanup()
    print(json.dumps(res))


class Incomparable(Exception):
    """Raised by a reference adapter for a mutant whose listing cannot be put in mfparse's
    terms (torch: a dict key that is not a string): that mutant is not compared."""


class _RefTimeout(BaseException):
    """The reference reader ran past ref_timeout on one mutant (gguf-py walking a flipped
    array count of millions in Python): that mutant is not compared."""


def _short(v) -> str:
    if v is None:
        return "absent"
    text = repr(tuple(x if not isinstance(x, (bytes, tuple)) or len(x) < 40 else f"<{len(x)} bytes>"
                      for x in v))
    return text[:300]


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


def run_cli(*args):
    """`python -m mfparse ARGS...` in a fresh process from the repository root (text output)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "mfparse", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def pipe_with(data: bytes):
    """A pipe fed with data by a thread: (the read end as a binary file, the thread). A reader
    that stops early ends the feed quietly (the writer's BrokenPipeError is expected)."""
    import threading

    rfd, wfd = os.pipe()

    def feed():
        with os.fdopen(wfd, "wb") as w:
            try:
                w.write(data)
            except BrokenPipeError:
                pass

    t = threading.Thread(target=feed)
    t.start()
    return os.fdopen(rfd, "rb"), t


class HostTransfer:
    """mfparse.torch's device-path transfer protocol on the CPU (its staging and casting logic
    runs unchanged; the CUDA calls themselves need a GPU); counts copies and waits."""

    def __init__(self):
        self.copies = 0
        self.waits = 0

    def buffers(self, n):
        import torch

        return [torch.empty(n, dtype=torch.uint8), torch.empty(n, dtype=torch.uint8)]

    def empty(self, shape, dtype):
        import torch

        return torch.empty(shape, dtype=dtype)

    def wait(self, slot):
        self.waits += 1

    def copy(self, slot, dst, src):
        dst.copy_(src)
        self.copies += 1

    def finish(self):
        pass


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
