"""Keras model configs: what keras.models.load_model would run, import, read or unpickle.

Keras rebuilds a model from its JSON config. Findings, at any depth (nested models, wrappers
such as TimeDistributed or Bidirectional):

  * a Lambda layer: it carries a Python function (marshal'd bytecode or a module function);
  * an entry naming a ``module`` outside Keras (``{"module": "os", "class_name": "function",
    "config": "system"}``), a foreign ``registered_name`` or dotted ``class_name``: Keras
    imports it;
  * gadgets inside Keras' own namespace: lookup layers (StringLookup, IntegerLookup,
    TextVectorization) and keras_hub tokenizers whose ``vocabulary`` / ``merges`` / ``proto``
    is a file path (the layer reads that file or URL when the model is built: CVE-2025-12058;
    Keras itself saves vocabularies as assets and writes null there), ``TFSMLayer`` (loads and
    runs the TensorFlow SavedModel its ``filepath`` names: CVE-2026-1462),
    ``TorchModuleWrapper`` (``torch.load(weights_only=False)`` of the module pickled into its
    config: CVE-2025-49655; the pickle itself is decoded from base64 and scanned).

Nothing is imported or evaluated: the config is read as JSON data. The config lives in
``config.json`` of a ``.keras`` zip (Keras reads it first, whatever else the archive holds: an
archive whose ``config.json`` is a Keras config is a Keras archive), in the ``model_config``
attribute of a Keras ``.h5`` file, and in the ``metadata`` JSON of every node of a TensorFlow
SavedModel's ``keras_metadata.pb`` (tf.keras 2). .h5 files the HDF5 reader cannot parse are
searched byte-wise for that JSON (``check_hdf5_bytes``).
"""

from __future__ import annotations

from mfparse._lazy import LazyModule, LazyPattern
from mfparse.scan import policy

json = LazyModule("json")  # imported on first use: Keras configs are rare among scanned files

LOADER = "keras.models.load_model"
KERAS_NAMESPACES = ("keras", "keras_core", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow.keras",
                    "tensorflow.python.keras")
LAMBDA_CLASSES = ("Lambda", "__lambda__")
MAX_NODES = 1_000_000
#: layers that read a file named in their config when they are built: {class: keys}
PATH_ARGS = {
    "StringLookup": ("vocabulary",), "IntegerLookup": ("vocabulary",), "TextVectorization": ("vocabulary",),
    "IndexLookup": ("vocabulary",),
}
#: keras_hub / keras_nlp tokenizers (class names ending in "Tokenizer") read these
TOKENIZER_PATH_ARGS = ("vocabulary", "merges", "proto", "spm_proto")


def in_keras(module: str) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in KERAS_NAMESPACES)


def looks_like_json(buf) -> bool:
    head = bytes(buf[:256]).lstrip()
    return head[:1] in (b"{", b"[")


def _worst(sev):
    return "dangerous" if sev == "dangerous" else "suspicious"


def check_config(ctx, obj, where, source: str, loader: str = LOADER) -> None:
    """Walk a parsed Keras config (iteratively, any depth) and report what Keras would run."""
    source = f"{source} (read by {loader})"
    stack = [(obj, "")]
    seen = 0
    while stack:
        node, path = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            ctx.finding("suspicious", f"{source}: more than {MAX_NODES} config entries", where, kind="resource")
            return
        if isinstance(node, dict):
            _check_entry(ctx, node, path, where, source)
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    stack.append((v, f"{path}.{k}" if path else str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    stack.append((v, f"{path}[{i}]"))


def _check_entry(ctx, d: dict, path: str, where, source: str) -> None:
    cn = d.get("class_name")
    mod = d.get("module")
    reg = d.get("registered_name")
    at = path or "the root"
    if isinstance(cn, str) and cn in LAMBDA_CLASSES:
        ctx.finding("dangerous", f"{source}: Lambda layer at {at}: Keras rebuilds its Python function "
                    "(marshal'd bytecode or a named function) and runs it", where, module="keras.layers",
                    qualname=cn, kind="keras")
        return
    if isinstance(cn, str) and (mod is None or not isinstance(mod, str) or in_keras(mod)):
        _check_gadgets(ctx, d, cn, at, where, source)
    if isinstance(mod, str) and mod and not in_keras(mod):
        name = d.get("config") if cn == "function" and isinstance(d.get("config"), str) else cn
        name = name if isinstance(name, str) and name else "?"
        sev, why = policy.judge_global(mod, name)
        ctx.finding(_worst(sev), f"{source}: entry at {at} names module {mod!r} outside Keras' namespaces: Keras "
                    f"imports it to deserialize {name!r}" + (f" ({why})" if sev == "dangerous" else ""), where,
                    module=mod, qualname=name, kind="keras")
        return
    if isinstance(reg, str) and reg:
        pkg, _, name = reg.partition(">")
        if not name or in_keras(pkg):
            pass  # a built-in's registered name ("relu") or one of Keras' own packages
        elif pkg not in ("Custom", ""):
            sev, why = policy.judge_global(pkg, name)
            ctx.finding(_worst(sev), f"{source}: entry at {at} is registered as {reg!r}, outside Keras: it loads "
                        "only with custom objects or an import of its package", where, module=pkg, qualname=name,
                        kind="keras")
            return
        else:
            ctx.finding("suspicious", f"{source}: entry at {at} is a custom object {reg!r}: Keras needs the caller's "
                        "code for it", where, module=pkg or None, qualname=name, kind="keras")
            return
    if isinstance(cn, str) and ("." in cn or ">" in cn):
        mod2, _, name = cn.replace(">", ".").rpartition(".")
        if not in_keras(mod2):
            sev, why = policy.judge_global(mod2 or "?", name)
            ctx.finding(_worst(sev), f"{source}: entry at {at} has class_name {cn!r}, outside Keras' namespaces",
                        where, module=mod2, qualname=name, kind="keras")


def _is_path(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _check_gadgets(ctx, d: dict, cn: str, at: str, where, source: str) -> None:
    """Keras' own layers that read files, load SavedModels or unpickle."""
    cfg = d.get("config")
    if not isinstance(cfg, dict):
        return
    keys = PATH_ARGS.get(cn, ()) + (TOKENIZER_PATH_ARGS if cn.endswith("Tokenizer") else ())
    for key in keys:
        v = cfg.get(key)
        if _is_path(v):
            ctx.finding("dangerous", f"{source}: {cn} at {at} takes its {key} from the file {v[:200]!r}, outside the "
                        "model: the layer reads that path or URL when the model is built (CVE-2025-12058; Keras "
                        "saves vocabularies inside the archive and writes null here)", where, module="keras.layers",
                        qualname=f"{cn}.{key}", kind="keras")
    if cn == "TFSMLayer":
        fp = cfg.get("filepath")
        what = f"the TensorFlow SavedModel at {fp[:200]!r}" if isinstance(fp, str) else "a TensorFlow SavedModel"
        ctx.finding("dangerous", f"{source}: TFSMLayer at {at} loads {what}, outside the model, and runs its graph "
                    "(CVE-2026-1462)", where, module="keras.layers", qualname="TFSMLayer", kind="keras")
    elif cn == "TorchModuleWrapper":
        payload = _bytes_value(cfg.get("module"))
        ctx.finding("dangerous", f"{source}: TorchModuleWrapper at {at}: Keras torch.load()s the module pickled into "
                    "its config with weights_only=False (CVE-2025-49655)"
                    + ("; the pickle was scanned" if payload is not None else ""), where,
                    module="keras.layers", qualname="TorchModuleWrapper", kind="keras")
        if payload is not None and where.depth < ctx.MAX_DEPTH:
            ctx.rescan(memoryview(payload), where.child(f"<TorchModuleWrapper module at {at}>", None),
                       designated=True)


def _bytes_value(v):
    """The bytes a config value holds: base64 text (Keras >= 3.9 TorchModuleWrapper) or a
    serialized bytes object ({"class_name": "__bytes__", "config": {"value": text}})."""
    import base64
    import binascii

    if isinstance(v, dict) and v.get("class_name") == "__bytes__" and isinstance(v.get("config"), dict):
        text = v["config"].get("value")
        if isinstance(text, str):
            return text.encode("utf-8", "surrogatepass")
        return None
    if isinstance(v, str) and v:
        try:
            return base64.b64decode(v.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return v.encode("utf-8", "surrogatepass")
    return None


def _parse_json(ctx, data, where, source):
    try:
        text = bytes(data).decode("utf-8")
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        ctx.error(f"{source} is not valid JSON ({type(e).__name__}): the model config cannot be judged", where)
        return None


def check_config_bytes(ctx, data, where) -> None:
    """config.json of a .keras archive."""
    obj = _parse_json(ctx, data, where, "config.json")
    if obj is not None:
        check_config(ctx, obj, where, "config.json")


def is_model_config(obj) -> bool:
    """True for a parsed JSON value shaped like a Keras model config ({"class_name", "config"})."""
    return isinstance(obj, dict) and "class_name" in obj and "config" in obj


def check_model_config(ctx, obj, where) -> None:
    """A stand-alone Keras model config (already parsed JSON)."""
    ctx.note("JSON file holding a Keras model config: checked for Lambda layers, foreign modules and layers "
             "that read files or unpickle")
    check_config(ctx, obj, where, "model config")


def check_json_file(ctx, buf, where) -> None:
    """A stand-alone JSON file: checked when it looks like a Keras model config."""
    obj = _parse_json(ctx, buf, where, "JSON file")
    check_json_obj(ctx, obj, where)


def check_json_obj(ctx, obj, where) -> None:
    if is_model_config(obj):
        check_model_config(ctx, obj, where)


def inspect_zip(ctx, buf, where, members, read) -> None:
    """A zip whose config.json is a Keras model config is a .keras archive (keras.saving.load_model
    reads config.json first; metadata.json and the weights file are optional)."""
    if "config.json" not in members:
        return
    marked = "metadata.json" in members or "model.weights.h5" in members or "model.weights.npz" in members
    got = read("config.json")
    if got is None:
        return
    data, off = got
    mw = where.child("config.json", off)
    if marked:
        obj = _parse_json(ctx, data, mw, "config.json")
    else:
        from mfparse.scan.templates import json_or_none

        obj = json_or_none(data)
        if not is_model_config(obj):
            return  # a Hugging Face or other config.json
    if obj is None:
        return
    ctx.note("Keras archive (.keras): config.json checked for Lambda layers, foreign modules and layers that read "
             "files or unpickle" + ("" if marked else " (no metadata.json or weights file: Keras still loads it)"))
    check_config(ctx, obj, mw, "config.json")


# ---- keras_metadata.pb (tf.keras SavedModel) -------------------------------------------------------

def check_keras_metadata(ctx, buf, where) -> bool:
    """keras_metadata.pb: SavedMetadata {repeated SavedObject nodes = 1}, SavedObject {node_id = 2,
    node_path = 3, identifier = 4, metadata = 5 (JSON), version = 6}. Every node's JSON is a
    layer or model config that tf.keras.models.load_model rebuilds."""
    from mfparse.scan.tfgraph import fields

    b = buf
    nodes = 0
    try:
        for num, wt, v in fields(b, 0, len(b)):
            if num != 1 or wt != 2:
                continue
            path, meta, meta_at = "?", None, None
            for n2, w2, v2 in fields(b, v[0], v[1]):
                if w2 != 2:
                    continue
                if n2 == 3:
                    path = bytes(b[v2[0]:v2[1]]).decode("utf-8", "replace")
                elif n2 == 5:
                    meta, meta_at = bytes(b[v2[0]:v2[1]]), v2[0]
            nodes += 1
            if meta is None:
                continue
            try:
                obj = json.loads(meta.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                ctx.error(f"keras_metadata.pb node {path!r}: metadata is not JSON ({type(e).__name__}): it cannot be "
                          "judged", where, where.offset(meta_at))
                continue
            check_config(ctx, obj, where, f"keras_metadata.pb node {path!r}", "tf.keras.models.load_model")
    except ValueError as e:
        ctx.error(f"keras_metadata.pb is not a SavedMetadata protobuf ({e}): it cannot be judged", where)
        return False
    ctx.note(f"keras_metadata.pb (tf.keras SavedModel metadata): {nodes} node config(s) checked")
    return True


_CONFIG_START = LazyPattern(rb'\{\s*"class_name"\s*:')


def check_hdf5_bytes(ctx, buf, where, **_) -> bool:
    """Fallback HDF5 check, for files the HDF5 reader cannot parse: find the Keras model config
    JSON (stored uncompressed as an attribute string) in the raw bytes and check it."""
    if bytes(buf[:8]) != b"\x89HDF\r\n\x1a\n":
        # a user block in front of the superblock: a loader that reads the first bytes unpickles them
        from mfparse.scan.pickles import scan_stream

        scan_stream(ctx, buf, where, designated=False, single=True)
    decoder = json.JSONDecoder()
    found = 0
    pos = 0
    n = len(buf)
    for _ in range(1000):
        m = _CONFIG_START.search(buf, pos)
        if m is None:
            break
        start = m.start()
        window = bytes(buf[start:min(n, start + (16 << 20))])
        end = window.find(b"\x00")
        text = window[: end if end >= 0 else len(window)].decode("utf-8", "replace")
        try:
            obj, used = decoder.raw_decode(text)
        except (ValueError, RecursionError):
            pos = m.end()
            continue
        if isinstance(obj, dict) and "config" in obj:
            found += 1
            check_config(ctx, obj, where, "HDF5 model_config")
        pos = start + max(used, 1)
    ctx.note("HDF5 file: " + (f"{found} Keras model config(s) found and checked" if found else
                              "no Keras model config found (weights only)")
             + " by a byte-level search")
    return True
