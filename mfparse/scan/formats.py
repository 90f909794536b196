"""Checkers backed by mfparse's own readers, plugged into the scan's hook registry:

  * HDF5 (.h5, Keras): the Keras ``model_config`` read by the HDF5 reader
    (mfparse.formats.keras.model_config) and judged like a .keras config.json (Lambda layers,
    modules outside Keras). A file the reader cannot parse falls back to the byte search and is
    never called safe.
  * Protobuf: TensorFlow SavedModel / GraphDef ops that run Python, touch files or reach the
    network, judged with what they are given (mfparse.scan.tfgraph, table derived from
    TensorFlow's op registry); ONNX external-data locations that escape the model's folder;
    keras_metadata.pb (tf.keras SavedModel layer configs).
  * GGUF chat templates and Hugging Face chat templates (mfparse.scan.templates), Keras
    archives, TorchScript code and TorchServe archives (zip inspectors).

Registered by mfparse.scan at import; nothing here imports or runs what a file names.
"""

from __future__ import annotations

import os

from mfparse._lazy import LazyPattern
from mfparse.errors import MFParseError

def _open(ctx, buf, where, name, fmt):
    """A ModelFile on the buffer; the top-level file is opened by path so that side files
    (ONNX external data, SavedModel variables) resolve relative to it."""
    import mfparse

    src = ctx.path if (where.member is None and ctx.path and os.path.isfile(ctx.path)) else buf
    return mfparse.open(src, format=fmt)


def check_hdf5(ctx, buf, where, *, name=None, files=None, **kw) -> bool:
    """An HDF5 file read with mfparse's HDF5 reader: its Keras config judged; `files(ctx, m,
    buf, where)` (mfparse.scan.containers.check_hdf5_files) judges the other files it names."""
    from mfparse.formats import keras
    from mfparse.scan import keras as keras_check

    if bytes(buf[:8]) != b"\x89HDF\r\n\x1a\n":
        # a user block in front of the superblock: a loader reading the first bytes unpickles them
        from mfparse.scan.pickles import scan_stream

        scan_stream(ctx, buf, where, designated=False, single=True)
    try:
        with _open(ctx, buf, where, name, "hdf5") as m:
            config = keras.model_config(m)
            if files is not None:
                files(ctx, m, buf, where)  # external files, links, virtual sources; trailing bytes
    except MFParseError as e:
        ctx.error(f"HDF5 file could not be read ({e}); searched byte-wise for a Keras config instead", where)
        keras_check.check_hdf5_bytes(ctx, buf, where)
        return True
    if config is None:
        ctx.note("HDF5 file without a Keras model config (weights or data only)")
    elif "__error__" in config:
        ctx.error(f"HDF5 model_config is not valid JSON ({config['__error__']}): it cannot be judged", where)
    else:
        ctx.note("HDF5 file: its Keras model config was read and checked for Lambda layers and foreign modules")
        keras_check.check_config(ctx, config, where, "HDF5 model_config")
    return True


def _protobuf_formats(name: str | None) -> tuple[str, ...]:
    base = os.path.basename(name or "").lower()
    if base.endswith(".onnx") or base.endswith(".ort"):
        return ("onnx",)
    if base == "saved_model.pb":
        return ("tf-savedmodel", "tf-graphdef")
    return ("tf-graphdef", "onnx", "onnx-tensor")


def check_protobuf(ctx, buf, where, *, name=None, **kw) -> bool:
    from mfparse.formats import tf

    if os.path.basename(name or ctx.path or "").lower() == "keras_metadata.pb":
        from mfparse.scan import keras as keras_check

        return keras_check.check_keras_metadata(ctx, buf, where)

    last = None
    for fmt in _protobuf_formats(name or ctx.path):
        try:
            with _open(ctx, buf, where, name, fmt) as m:
                if fmt.startswith("tf-"):
                    _judge_tf(ctx, m, where, tf)
                elif fmt == "onnx":
                    _judge_onnx(ctx, m, where)
                else:
                    ctx.note("ONNX TensorProto: tensor data only")
            return True
        except MFParseError as e:
            last = e
    ctx.error(f"protobuf model could not be read ({last}), so it cannot be judged", where)
    return False


def _judge_tf(ctx, m, where, tf) -> None:
    from mfparse.scan import tfgraph

    reader = m.reader
    if not isinstance(reader, tf.TFGraphReader):
        return
    n = tfgraph.judge(ctx, where, reader, tf)
    ctx.note(f"TensorFlow {m.format}: {n} op(s) that run Python, touch files or reach the network with what they "
             "are given (graph and every library function)" if n else f"TensorFlow {m.format}: no op that runs "
             "Python, touches files or reaches the network (checkpoint save/restore of the model's own variables "
             "is expected and not a finding)")


def _judge_onnx(ctx, m, where) -> None:
    refused = 0
    for t in m.tensors():
        ext = t.extras.get("external") if t.extras else None
        if isinstance(ext, dict) and "refused" in ext:
            refused += 1
            ctx.finding("dangerous", f"ONNX tensor {t.name!r} points its external data at {ext.get('location')!r}, "
                        f"outside the model's folder ({ext['refused']}): a loader would read that file",
                        where, module="onnx.external_data", qualname=str(ext.get("location")), kind="path")
    custom = sorted({op for op in _op_types(m.graph) if op.split(":")[-1] in ("PyOp", "PyFunc", "PythonOp")})
    for op in custom:
        ctx.finding("suspicious", f"ONNX custom op {op} calls Python functions registered by the runtime "
                    "(onnxruntime-extensions)", where, module="onnx.custom_op", qualname=op, kind="op")
    if not refused and not custom:
        ctx.note("ONNX model: operators and tensors, no code; external data stays inside the model's folder")


def _op_types(node):
    """Every op type named in a graph summary (main graph, subgraphs, functions)."""
    stack, out = [node], set()
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            for k, v in n.items():
                if k == "op_types" and isinstance(v, dict):
                    out.update(v)
                else:
                    stack.append(v)
        elif isinstance(n, (list, tuple)):
            stack.extend(n)
    return out


# ---- chat templates (GGUF metadata, Hugging Face configs and .jinja files) ------------------------

def check_gguf(ctx, buf, where, **kw) -> bool:
    """GGUF: key/value metadata and raw tensors, no pickle; its chat templates are judged."""
    from mfparse import _native
    from mfparse.scan import templates

    try:
        parsed = _native.gguf_parse(buf)
    except MFParseError as e:
        ctx.error(f"GGUF header could not be read ({e}): its chat templates cannot be judged", where)
        return False
    n = templates.check_gguf(ctx, buf, where, parsed[4], header_end=parsed[3])
    ctx.note("GGUF: key/value metadata and raw tensors, no pickle"
             + (f"; {n} chat template(s) judged" if n else "; no chat template"))
    return True


_HF_JSON = ("tokenizer_config.json", "chat_template.json", "processor_config.json", "preprocessor_config.json")


def check_text(ctx, buf, where, *, name=None, **kw) -> bool:
    """A text file at the top level: a Jinja chat template (by its name, as transformers finds
    it), a JSON document holding chat templates or a Keras model config."""
    from mfparse.scan import keras as keras_check
    from mfparse.scan import templates

    if templates.is_template_name(name):
        templates.check_jinja_file(ctx, buf, where, name)
        return True
    if name == "MLmodel":
        _check_mlmodel(ctx, buf, where)
        return True
    if not keras_check.looks_like_json(buf):
        return True
    obj = templates.json_or_none(buf)
    if obj is None:
        return True  # JSON that does not parse: no loader reads it (a note, mfparse/scan/nonmodel.py)
    templates.check_json(ctx, obj, buf, where, name)
    keras_check.check_json_obj(ctx, obj, where)
    if isinstance(obj, dict) and "auto_map" in obj:
        _check_auto_map(ctx, obj["auto_map"], where, name)
    return True


def _auto_map_modules(value) -> list:
    """The Python modules an `auto_map` names ("modeling_x.XModel", "org/repo--tok.Tok", lists of
    them for tokenizers), as transformers resolves them."""
    out = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, str) and "." in v:
            out.append(v.rsplit(".", 1)[0])
    return sorted(set(out))


def _check_auto_map(ctx, auto_map, where, name) -> None:
    """config.json / tokenizer_config.json `auto_map`: transformers' from_pretrained(...,
    trust_remote_code=True) imports the named modules (the .py files of the repository, or of
    another repository for "org/repo--module") and runs them."""
    modules = _auto_map_modules(auto_map)
    if not modules:
        return
    shown = ", ".join(m.split("--")[-1] + ".py" + (f" of {m.split('--')[0]}" if "--" in m else "")
                      for m in modules[:6]) + (", ..." if len(modules) > 6 else "")
    ctx.finding("suspicious", f"{name or 'JSON file'} auto_map: loading with trust_remote_code=True imports and runs "
                f"{shown} (Python code shipped with the model)", where, module="transformers.auto_map",
                qualname=",".join(modules), kind="code")


_MLMODEL_LOADER = LazyPattern(r"^\s*loader_module:\s*['\"]?([\w.]+)", "M")
_MLMODEL_CODE = LazyPattern(r"^\s*code:\s*['\"]?([^\s'\"]+)", "M")


def _check_mlmodel(ctx, buf, where) -> None:
    """An MLflow model's MLmodel file: mlflow.pyfunc.load_model imports its flavor's
    loader_module and puts its code/ folder on sys.path (python_model.pkl and the other pickles
    next to it are files of their own, scanned as pickles)."""
    text = bytes(buf[:1 << 20]).decode("utf-8", "replace")
    for m in _MLMODEL_LOADER.finditer(text):
        mod = m.group(1)
        if not (mod == "mlflow" or mod.startswith("mlflow.")):
            ctx.finding("suspicious", f"MLflow MLmodel: mlflow.pyfunc.load_model imports loader_module {mod!r}, which "
                        "is not part of MLflow", where, offset=where.offset(len(text[:m.start(1)].encode("utf-8"))),
                        module="mlflow.pyfunc", qualname=mod, kind="code")
    for m in _MLMODEL_CODE.finditer(text):
        if m.group(1) not in ("null", "~"):
            ctx.finding("suspicious", f"MLflow MLmodel carries code ({m.group(1)!r}): mlflow.pyfunc.load_model puts it "
                        "on sys.path and imports from it", where,
                        offset=where.offset(len(text[:m.start(1)].encode("utf-8"))), module="mlflow.pyfunc",
                        qualname=m.group(1), kind="code")
    ctx.note("MLflow MLmodel: flavors' loader modules and code paths checked (its pickles are scanned as files)")


def inspect_zip_templates(ctx, buf, where, members, read) -> None:
    """Chat templates inside an archive (a zipped Hugging Face folder)."""
    from mfparse.scan import templates

    for nm in members:
        base = nm.rsplit("/", 1)[-1]
        if not (templates.is_template_name(base) or base in _HF_JSON):
            continue
        got = read(nm)
        if got is None:
            continue
        data, off = got
        mw = where.child(nm, off)
        if templates.is_template_name(base):
            templates.check_jinja_file(ctx, data, mw, nm)
        else:
            obj = templates.json_or_none(data)
            if obj is not None:
                templates.check_json(ctx, obj, data, mw, nm)


def checkers(hdf5_files=None) -> dict:
    """The reader-backed checkers, by kind, for mfparse.scan.containers to plug in; hdf5_files
    judges the other files an HDF5 file names (see check_hdf5)."""
    import functools

    return {"hdf5": functools.partial(check_hdf5, files=hdf5_files), "protobuf": check_protobuf,
            "gguf": check_gguf, "text": check_text}


def zip_inspectors() -> list:
    """The functions called on every zip archive (Keras configs, chat templates, TorchScript
    code and packaged code), for mfparse.scan.containers."""
    from mfparse.scan import keras as keras_check
    from mfparse.scan import torchscript

    return [keras_check.inspect_zip, inspect_zip_templates, torchscript.inspect_zip]
