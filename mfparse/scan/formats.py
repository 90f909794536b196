"""Checkers backed by mfparse's own readers, plugged into the scan's hook registry:

  * HDF5 (.h5, Keras): the Keras ``model_config`` read by the HDF5 reader
    (mfparse.formats.keras.model_config) and judged like a .keras config.json (Lambda layers,
    modules outside Keras). A file the reader cannot parse falls back to the byte search and is
    never called safe.
  * Protobuf: TensorFlow SavedModel / GraphDef ops that run Python or touch files
    (mfparse.formats.tf.RISKY_OPS) and ONNX external-data locations that escape the model's
    folder. Checkpoint save/restore ops every SavedModel carries are not findings.

Registered by mfparse.scan at import; nothing here imports or runs what a file names.
"""

from __future__ import annotations

import os

from mfparse.errors import MFParseError

# RISKY_OPS reasons that make an op dangerous (the rest, which read or list files, are suspicious)
_DANGEROUS_REASONS = ("runs Python", "writes a file", "writes files")


def _open(ctx, buf, where, name, fmt):
    """A ModelFile on the buffer; the top-level file is opened by path so that side files
    (ONNX external data, SavedModel variables) resolve relative to it."""
    import mfparse

    src = ctx.path if (where.member is None and ctx.path and os.path.isfile(ctx.path)) else buf
    return mfparse.open(src, format=fmt)


def check_hdf5(ctx, buf, where, *, name=None, **kw) -> bool:
    from mfparse.formats import keras
    from mfparse.scan import keras as keras_check

    if bytes(buf[:8]) != b"\x89HDF\r\n\x1a\n":
        # a user block in front of the superblock: a loader reading the first bytes unpickles them
        from mfparse.scan.pickles import scan_stream

        scan_stream(ctx, buf, where, designated=False, single=True)
    try:
        with _open(ctx, buf, where, name, "hdf5") as m:
            config = keras.model_config(m)
            from mfparse.scan.containers import check_hdf5_files

            check_hdf5_files(ctx, m, buf, where)  # external files, links, virtual sources; trailing bytes
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
    ops = tf.risky_ops(m)
    for op, node, offset in ops:
        reason = tf.RISKY_OPS.get(op, "touches files")
        severity = "dangerous" if reason in _DANGEROUS_REASONS else "suspicious"
        ctx.finding(severity, f"TensorFlow op {op} ({reason}) in node {node!r}", where, offset=where.offset(offset)
                    if offset is not None else None, module="tensorflow.ops", qualname=op, kind="op")
    ctx.note(f"TensorFlow {m.format}: {len(ops)} op(s) that run Python or touch files"
             if ops else f"TensorFlow {m.format}: no op that runs Python or touches files "
             "(checkpoint save/restore ops are expected and not findings)")


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


def register() -> None:
    from mfparse.scan import containers

    containers.register_checker("hdf5", check_hdf5)
    containers.register_checker("protobuf", check_protobuf)
