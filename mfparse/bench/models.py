"""Loading the model to benchmark: a TorchScript file, a `module:callable` returning an
nn.Module (weights from `--weights FILE` read through mfparse, never unpickled), or an .onnx
file; and the model's inputs.

A benchmark runs the model, so MODEL is code the user trusts: `module:callable` is imported and
called, a TorchScript file is loaded with torch.jit.load. The weights file is different: it is
read by mfparse (no pickle is run), whatever its format, and copied into the model's tensors.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfparse.bench.base import BenchError
from mfparse.bench.measure import InputSpec

_SHAPE = re.compile(r"^\d+(x\d+)*$")
_DTYPES = ("float32", "float16", "float64", "bfloat16", "int64", "int32", "int8", "uint8", "bool")


# ---- argument parsing --------------------------------------------------------------------------


def parse_input_shape(text: str) -> tuple[str | None, tuple, str | None]:
    """`[NAME:]1x3x224x224[:DTYPE]` -> (name or None, shape, dtype or None)."""
    parts = text.strip().split(":")
    idx = [i for i, p in enumerate(parts) if _SHAPE.match(p)]
    if len(idx) != 1 or idx[0] > 1 or len(parts) - idx[0] > 2:
        raise BenchError(f"--input-shape {text!r}: expected [NAME:]DIMxDIMx...[:DTYPE], e.g. input:1x3x224x224")
    i = idx[0]
    name = parts[0] if i == 1 else None
    dtype = parts[i + 1] if i + 1 < len(parts) else None
    if i == 1 and not name:
        raise BenchError(f"--input-shape {text!r}: empty input name")
    if dtype is not None and dtype not in _DTYPES:
        raise BenchError(f"--input-shape {text!r}: unknown dtype {dtype!r} (one of {', '.join(_DTYPES)})")
    shape = tuple(int(d) for d in parts[i].split("x"))
    if any(d <= 0 for d in shape):
        raise BenchError(f"--input-shape {text!r}: every dimension must be positive")
    return name, shape, dtype


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{what} {text!r}: expected comma-separated integers, e.g. 1,8,32") from None
    if not values or any(v <= 0 for v in values):
        raise BenchError(f"{what} {text!r}: expected positive integers")
    return list(dict.fromkeys(values))


# ---- the model ---------------------------------------------------------------------------------


@dataclass
class Model:
    """A loaded model. kind: "torch-module", "torchscript" or "onnx"."""

    spec: str
    kind: str
    inputs: list
    module: object = None           # torch.nn.Module (torch kinds)
    onnx_path: Path | None = None   # the given .onnx (kind "onnx")
    weights: dict | None = None     # what --weights loaded
    output_names: list = field(default_factory=list)
    fixed_batch: dict = field(default_factory=dict)  # ONNX inputs whose dim 0 is static
    _digest: str | None = None

    def check_batches(self, batches) -> None:
        """An ONNX model with a static batch dimension runs only at that batch size."""
        for name, b in self.fixed_batch.items():
            other = [x for x in batches if x != b]
            if other:
                raise BenchError(f"ONNX input {name!r} has a fixed batch dimension of {b}; --batch "
                                 f"{','.join(map(str, other))} needs a model exported with a dynamic batch")

    @property
    def is_torch(self) -> bool:
        return self.kind in ("torch-module", "torchscript")

    def describe(self) -> dict:
        d = {"spec": self.spec, "kind": self.kind}
        if self.weights is not None:
            d["weights"] = self.weights
        return d

    def digest(self) -> str:
        """sha256 naming this model's graph and weights (the key of its cached ONNX export)."""
        if self._digest is None:
            h = hashlib.sha256()
            if self.kind == "onnx":
                _hash_file(h, self.onnx_path)
            elif self.kind == "torchscript":
                _hash_file(h, Path(self.spec))
                _hash_state(h, self.module)
            else:
                h.update(self.spec.encode())
                h.update(repr(self.module).encode())
                for src in _class_sources(self.module):
                    h.update(src.encode())
                _hash_state(h, self.module)
            self._digest = h.hexdigest()
        return self._digest


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)


def _hash_state(h, module) -> None:
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(memoryview(t.view(-1).view(_byte_dtype()).numpy()))


def _byte_dtype():
    import torch

    return torch.uint8


def _class_sources(module) -> list[str]:
    """The source of every module class in the model (so editing forward() invalidates the
    cached export); classes without retrievable source contribute their qualified name."""
    out, seen = [], set()
    for m in module.modules():
        cls = type(m)
        if cls in seen:
            continue
        seen.add(cls)
        try:
            out.append(inspect.getsource(cls))
        except (OSError, TypeError):
            out.append(f"{cls.__module__}.{cls.__qualname__}")
    return out


def load_model(spec: str, weights: str | None = None, input_shapes=(), seed: int = 0,
               seq_len: int | None = None) -> Model:
    """Load MODEL (see the module docstring) and settle its inputs; `seq_len` sets dim 1 of
    every integer (token id) input of rank 2 or more.

    Raises BenchError with a message naming what is wrong."""
    path = Path(spec)
    if path.is_file():
        kind = _file_kind(path)
        if kind == "onnx":
            if weights:
                raise BenchError("--weights applies to torch models; an .onnx file carries its weights")
            model = Model(spec, "onnx", [], onnx_path=path)
            model.inputs, model.output_names = _onnx_io(path)
        else:
            model = Model(spec, "torchscript", [], module=_load_torchscript(path))
    elif ":" in spec and not path.exists():
        model = Model(spec, "torch-module", [], module=_load_callable(spec, seed))
    else:
        raise BenchError(f"MODEL {spec!r}: no such file, and not of the form module:callable")
    if weights is not None:
        model.weights = load_weights(model.module, weights)
    model.inputs = _settle_inputs(model, [parse_input_shape(s) if isinstance(s, str) else s
                                         for s in input_shapes], seq_len)
    return model


def _file_kind(path: Path) -> str:
    import mfparse

    try:
        with mfparse.open(path) as m:
            fmt = m.format
    except mfparse.MFParseError as e:
        if path.suffix.lower() == ".onnx":
            return "onnx"
        raise BenchError(f"MODEL {path}: not a TorchScript or ONNX file ({e})") from None
    if fmt == "torchscript":
        return "torchscript"
    if fmt == "onnx":
        return "onnx"
    raise BenchError(
        f"MODEL {path} is a {fmt} file of weights (or a pickled model, which mfparse never unpickles), "
        f"not a TorchScript or ONNX model: pass the model's code as module:callable and this file as "
        f"--weights {path}")


def _load_torchscript(path: Path):
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; users still ship it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise BenchError(f"MODEL {path}: torch.jit.load failed: {_one_line(e)}") from None
    return module.eval()


def _load_callable(spec: str, seed: int):
    import torch

    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise BenchError(f"MODEL {spec!r}: expected module:callable")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            file = Path(mod_name)
            if not file.is_file():
                raise BenchError(f"MODEL {spec!r}: no such file {mod_name}")
            name = "_mfparse_bench_" + hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
            ispec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(ispec)
            sys.modules[name] = module
            ispec.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path and "" not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(mod_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except BenchError:
        raise
    except Exception as e:
        raise BenchError(f"MODEL {spec!r}: cannot import {mod_name}: {_one_line(e)}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BenchError(f"MODEL {spec!r}: {mod_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, torch.nn.Module):
        model = obj
    elif callable(obj):
        torch.manual_seed(seed)  # an untrained model gets the same weights every run
        try:
            model = obj()
        except Exception as e:
            raise BenchError(f"MODEL {spec!r}: calling {attr}() raised {_one_line(e)}") from None
    else:
        raise BenchError(f"MODEL {spec!r}: {attr} is neither an nn.Module nor callable")
    if not isinstance(model, torch.nn.Module):
        raise BenchError(f"MODEL {spec!r}: {attr}() returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


# ---- weights through mfparse -------------------------------------------------------------------


def load_weights(module, path: str) -> dict:
    """Copy the tensors of a weights file (any format mfparse reads) into the module's
    state_dict, in place. Names are matched as they are or through a wrapper: a prefix common
    to every model name is removed (the model is a wrapper, e.g. Lightning's `model.`) and one
    is added (the file was saved from a wrapper: DataParallel/DDP's `module.`, torch.compile's
    `_orig_mod.`, a training checkpoint's `model_state_dict.`); every model tensor must be found
    with the same shape. Returns what was loaded."""
    import mfparse

    if module is None:
        raise BenchError("--weights applies to torch models")
    state = module.state_dict()
    keys = list(state)
    try:
        with mfparse.open(path) as m:
            names = set(m.keys())
            found = match_names(keys, names)
            if found is None:
                raise BenchError(f"--weights {path}: {_mismatch(keys, names)}")
            model_prefix, prefix = found
            for k in keys:
                name = prefix + k[len(model_prefix):]
                info = m.info(name)
                dst = state[k]
                if tuple(info.shape) != tuple(dst.shape):
                    raise BenchError(f"--weights {path}: {name} has shape {list(info.shape)} in the "
                                     f"file, the model's {k} is {list(dst.shape)}")
                src = _to_torch(m.read(info, packed=True), info.dtype, f"{path}: {name}")
                with _no_grad():
                    dst.copy_(src)
            fmt = m.format
            unused = len(names) - len(keys)
    except mfparse.MFParseError as e:
        raise BenchError(f"--weights {path}: {e}") from None
    except OSError as e:
        raise BenchError(f"--weights {path}: {e.strerror or e}") from None
    return {"path": os.fspath(path), "format": fmt, "tensors": len(keys), "prefix": prefix,
            "model_prefix": model_prefix, "unused_in_file": unused}


def _dotted_prefixes(name: str) -> list[str]:
    """"", "a.", "a.b." for "a.b.c": the prefixes of a name that end at a dot."""
    parts = name.split(".")
    return [""] + [".".join(parts[:i]) + "." for i in range(1, len(parts))]


def match_names(keys: list, names: set) -> tuple[str, str] | None:
    """(model_prefix, file_prefix) such that every model name k is in the file as
    file_prefix + k[len(model_prefix):], or None. model_prefix is a prefix (ending at a dot)
    common to every model name; file_prefix is any prefix the file's names carry. The shortest
    change wins: no prefix at all, then the shortest model prefix, then the shortest file prefix
    (ties broken alphabetically)."""
    if not keys:
        return "", ""
    first = keys[0]
    for mp in _dotted_prefixes(first):
        if mp and not all(k.startswith(mp) for k in keys):
            break  # a longer model prefix cannot be common either
        rest = first[len(mp):]
        cands = {n[: len(n) - len(rest)] for n in names
                 if n.endswith(rest) and (len(n) == len(rest) or n[len(n) - len(rest) - 1] == ".")}
        for fp in sorted(cands, key=lambda p: (len(p), p)):
            if all(fp + k[len(mp):] in names for k in keys):
                return mp, fp
    return None


def _common_prefix(names) -> str:
    names = list(names)
    if not names:
        return ""
    p = os.path.commonprefix(names)
    return p[: p.rfind(".") + 1]


def _mismatch(keys: list, names: set) -> str:
    """Why the names do not match: the model tensors without a counterpart and the file's
    tensors that are not the model's (under the best partial mapping), with their prefixes."""
    best, best_hits = ("", ""), -1
    file_prefixes = sorted({p for n in names for p in _dotted_prefixes(n)[:4]}, key=lambda p: (len(p), p))
    for mp in _dotted_prefixes(keys[0]):
        if mp and not all(k.startswith(mp) for k in keys):
            break
        for fp in file_prefixes[:64]:
            hits = sum(fp + k[len(mp):] in names for k in keys)
            if hits > best_hits:
                best, best_hits = (mp, fp), hits
    mp, fp = best
    mapped = {fp + k[len(mp):]: k for k in keys}
    missing = [k for k in keys if fp + k[len(mp):] not in names]
    unused = sorted(n for n in names if n not in mapped)
    how = (f" (under the best mapping: model '{mp}NAME' = file '{fp}NAME')" if (mp or fp) and best_hits > 0
           else "")
    model_p, file_p = _common_prefix(keys), _common_prefix(names)
    prefixes = ""
    if model_p or file_p:
        prefixes = (f"; the model's names all start with {model_p!r}" if model_p else "") + \
                   (f"; the file's names all start with {file_p!r}" if file_p else "")
    extra = (f"{len(unused)} of the file's {len(names)} tensors are not the model's (first: "
             f"{', '.join(unused[:5])})" if unused else f"each of the file's {len(names)} tensors is the model's")
    return (f"{len(missing)} of the model's {len(keys)} tensors are not in the file{how} "
            f"(first: {', '.join(missing[:5])}); {extra}{prefixes}. Names are "
            "matched as they are or after removing a prefix common to all the model's names and "
            "adding one to the file's (e.g. 'module.' from DataParallel/DDP, '_orig_mod.' from "
            "torch.compile, 'model.' from Lightning)")


def _no_grad():
    import torch

    return torch.no_grad()


def _to_torch(arr: np.ndarray, dtype: str, what: str):
    """A torch view of a (possibly read-only) numpy array from mfparse. The view is only read
    (it is the source of a copy), so torch's warning about non-writable arrays does not apply."""
    import torch

    tdt = getattr(torch, dtype, None)
    if not isinstance(tdt, torch.dtype):
        raise BenchError(f"{what}: dtype {dtype} has no torch equivalent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return torch.from_numpy(arr)
        except TypeError:
            pass  # ml_dtypes (bfloat16, float8): reinterpret the bytes
        uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(arr.dtype.itemsize)
        if uint is None:
            raise BenchError(f"{what}: dtype {dtype} has no torch equivalent")
        raw = torch.from_numpy(np.ascontiguousarray(arr).view(uint))
        return raw.view(tdt)


# ---- inputs ------------------------------------------------------------------------------------


def _onnx_io(path: Path):
    """Input specs (dynamic dims as None) and output names of an ONNX file."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise BenchError(f"MODEL {path}: not a readable ONNX file ({_one_line(e)})") from None
        inits = {i.name for i in proto.graph.initializer}
        specs = []
        for vi in proto.graph.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                         for d in tt.shape.dim)
            np_dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.float32
            specs.append(InputSpec(vi.name, dims, np.dtype(np_dt).name))
        return specs, [o.name for o in proto.graph.output]
    try:
        import onnxruntime as ort
    except ImportError:
        raise BenchError("reading an .onnx MODEL needs onnx or onnxruntime (pip install onnxruntime)") from None
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise BenchError(f"MODEL {path}: onnxruntime cannot load it ({_one_line(e)})") from None
    specs = [InputSpec(i.name, tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape),
                       _ort_type(i.type)) for i in sess.get_inputs()]
    return specs, [o.name for o in sess.get_outputs()]


def _ort_type(t: str) -> str:
    m = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
         "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
         "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
    return m.get(t, "float32")


def _settle_inputs(model: Model, given: list, seq_len: int | None = None) -> list:
    """Final InputSpecs from --input-shape, the model's example_input_shape (and
    example_input_dtype), or the ONNX graph; then --seq-len on the token-id inputs."""
    if seq_len is not None and (not isinstance(seq_len, int) or seq_len < 1):
        raise BenchError(f"--seq-len must be a positive integer, not {seq_len!r}")
    specs = _settle_shapes(model, given, seq_len)
    if seq_len is None:
        return specs
    if not any(_is_token_input(s) for s in specs):
        raise BenchError("--seq-len sets the sequence dimension (dim 1) of integer (token id) inputs; "
                         "this model has none: " + ", ".join(f"{s.name} {s.dtype}{list(s.shape)}" for s in specs))
    return [InputSpec(s.name, (s.shape[0], seq_len) + tuple(s.shape[2:]), s.dtype) if _is_token_input(s) else s
            for s in specs]


def _is_token_input(spec: InputSpec) -> bool:
    """An integer input of rank 2 or more: token ids (or their mask), batch x sequence x ..."""
    return np.dtype(spec.dtype).kind in "iu" and len(spec.shape) >= 2


def token_seq_len(specs) -> int | None:
    """The sequence length of a model whose inputs are token ids (dim 1 of the first integer
    input of rank 2 or more), else None."""
    for s in specs:
        if _is_token_input(s) and s.shape[1] is not None:
            return int(s.shape[1])
    return None


def _settle_shapes(model: Model, given: list, seq_len: int | None) -> list:
    if model.kind == "onnx":
        graph = model.inputs
        if given:
            if len(given) != len(graph):
                raise BenchError(f"the ONNX model has {len(graph)} inputs ({', '.join(s.name for s in graph)}); "
                                 f"--input-shape was given {len(given)} times")
            by_name = {s.name: s for s in graph}
            model.fixed_batch = {g.name: g.shape[0] for g in graph if g.shape and g.shape[0] is not None}
            out = []
            for i, (name, shape, dtype) in enumerate(given):
                g = by_name.get(name) if name else graph[i]
                if g is None:
                    raise BenchError(f"--input-shape names {name!r}; the ONNX inputs are "
                                     f"{', '.join(by_name)}")
                _check_rank(g, shape)
                out.append(InputSpec(g.name, shape, dtype or g.dtype))
            return out
        model.fixed_batch = {g.name: g.shape[0] for g in graph if g.shape and g.shape[0] is not None}
        out = []
        for g in graph:
            dims = list(g.shape)
            if dims and dims[0] is None:
                dims[0] = 1
            if seq_len is not None and len(dims) >= 2 and dims[1] is None and np.dtype(g.dtype).kind in "iu":
                dims[1] = seq_len
            if any(d is None for d in dims):
                raise BenchError(f"ONNX input {g.name!r} has dynamic dimensions {_fmt_dims(g.shape)}: "
                                 f"pass --input-shape {g.name}:1x..." +
                                 (" (or --seq-len N for token ids)" if np.dtype(g.dtype).kind in "iu" else ""))
            out.append(InputSpec(g.name, tuple(dims), g.dtype))
        return out
    # torch
    if given:
        n = len(given)
        return [InputSpec(name or ("input" if n == 1 else f"input_{i}"), shape, dtype or "float32")
                for i, (name, shape, dtype) in enumerate(given)]
    example = getattr(model.module, "example_input_shape", None)
    if example is None:
        raise BenchError(f"MODEL {model.spec!r}: give the input shape, e.g. --input-shape 1x3x224x224 "
                         "(or set example_input_shape on the module)")
    dtypes = getattr(model.module, "example_input_dtype", None) or "float32"

    def dtype_of(i, name):
        d = dtypes.get(name, "float32") if isinstance(dtypes, dict) else \
            dtypes[i] if isinstance(dtypes, (list, tuple)) else dtypes
        if str(d) not in _DTYPES:
            raise BenchError(f"MODEL {model.spec!r}: example_input_dtype {d!r} is not one of {', '.join(_DTYPES)}")
        return str(d)

    if isinstance(example, dict):
        return [InputSpec(str(k), tuple(v), dtype_of(i, str(k))) for i, (k, v) in enumerate(example.items())]
    if example and isinstance(example[0], (tuple, list)):
        return [InputSpec(f"input_{i}", tuple(s), dtype_of(i, f"input_{i}")) for i, s in enumerate(example)]
    return [InputSpec("input", tuple(example), dtype_of(0, "input"))]


def _check_rank(g: InputSpec, shape: tuple) -> None:
    if len(g.shape) != len(shape) or any(d is not None and d != s for d, s in zip(g.shape[1:], shape[1:])):
        raise BenchError(f"--input-shape {'x'.join(map(str, shape))} does not fit ONNX input {g.name!r} "
                         f"of shape {_fmt_dims(g.shape)}")


def _fmt_dims(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}" if text else type(e).__name__


# ---- running under torch -----------------------------------------------------------------------


def flatten_outputs(out) -> list:
    """A model's output (tensor, tuple/list, dict, nested) as a flat list of tensors."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten_outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in flatten_outputs(o)]
    raise BenchError(f"the model returned {type(out).__name__}; expected tensors (or tuples/dicts of them)")


def to_numpy(t) -> np.ndarray:
    """A host numpy array of an output tensor, float outputs as float32."""
    import torch

    t = t.detach()
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.float()
    return t.cpu().numpy()
