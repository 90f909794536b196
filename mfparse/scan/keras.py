"""Keras model configs: Lambda layers and objects from outside Keras' own namespaces.

Keras rebuilds a model from its JSON config: a Lambda layer carries a Python function
(marshal'd bytecode or a module function) that runs, and an entry naming a ``module`` outside
Keras (``{"module": "os", "class_name": "function", "config": "system"}``) makes Keras import
it. Both are findings at any depth (nested models, wrappers such as TimeDistributed or
Bidirectional). Nothing is imported or evaluated: the config is read as JSON data.

The config lives in ``config.json`` of a ``.keras`` zip, and in the ``model_config`` attribute
of a Keras ``.h5`` file. Until the HDF5 reader lands, .h5 files are searched byte-wise for
that JSON (``check_hdf5_bytes``, replaceable through ``containers.register_checker``).
"""

from __future__ import annotations

import json
import re

from mfparse.scan import policy

KERAS_NAMESPACES = ("keras", "keras_core", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow.keras",
                    "tensorflow.python.keras")
LAMBDA_CLASSES = ("Lambda", "__lambda__")
MAX_NODES = 1_000_000


def in_keras(module: str) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in KERAS_NAMESPACES)


def looks_like_json(buf) -> bool:
    head = bytes(buf[:256]).lstrip()
    return head[:1] in (b"{", b"[")


def _worst(sev):
    return "dangerous" if sev == "dangerous" else "suspicious"


def check_config(ctx, obj, where, source: str) -> None:
    """Walk a parsed Keras config (iteratively, any depth) and report what Keras would run."""
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
    ctx.note("JSON file holding a Keras model config: checked for Lambda layers and foreign modules")
    check_config(ctx, obj, where, "model config")


def check_json_file(ctx, buf, where) -> None:
    """A stand-alone JSON file: checked when it looks like a Keras model config."""
    obj = _parse_json(ctx, buf, where, "JSON file")
    if is_model_config(obj):
        check_model_config(ctx, obj, where)


_CONFIG_START = re.compile(rb'\{\s*"class_name"\s*:')


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
