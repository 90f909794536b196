"""A checkpoint's non-tensor state as JSON, and back.

`encode(tree)` turns ModelFile.tree() (dicts, lists, tuples, scalars, ObjectNodes, TensorInfo
leaves) into JSON-ready values; tensors become references `{"__tensor__": name}`. `decode`
rebuilds the structure, resolving tensor references through a callback. Python types JSON does
not have are tagged so that they survive the round trip:

    tuple             {"__tuple__": [...]}
    dict, non-str key {"__dict__": [[key, value], ...]}   (e.g. an optimizer's {0: {...}})
    bytes             {"__bytes__": "<base64>"}
    nan / inf         {"__float__": "nan" | "inf" | "-inf"}
    complex           {"__complex__": [re, im]}
    object            {"__object__": "module.Class", "fields": {...}}  (never imported)

A plain dict whose keys are strings none of which starts with "__" stays a JSON object.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Callable

from mfparse.records import ObjectNode, TensorInfo

KEY = "mfparse.state"


def encode(node) -> Any:
    if isinstance(node, TensorInfo):
        return {"__tensor__": node.name}
    if isinstance(node, ObjectNode):
        return {"__object__": node.cls, "fields": encode(dict(node.fields))}
    if isinstance(node, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in node):
            return {k: encode(v) for k, v in node.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in node.items()]}
    if isinstance(node, tuple):
        return {"__tuple__": [encode(v) for v in node]}
    if isinstance(node, list):
        return [encode(v) for v in node]
    if isinstance(node, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(node)).decode("ascii")}
    if isinstance(node, bool) or node is None or isinstance(node, (int, str)):
        return node
    if isinstance(node, float):
        if math.isnan(node):
            return {"__float__": "nan"}
        if math.isinf(node):
            return {"__float__": "inf" if node > 0 else "-inf"}
        return node
    if isinstance(node, complex):
        return {"__complex__": [encode(node.real), encode(node.imag)]}
    return {"__object__": type(node).__name__, "fields": {"repr": repr(node)}}


def dumps(tree) -> str:
    return json.dumps(encode(tree), separators=(",", ":"), allow_nan=False)


def decode(value, tensor: Callable[[str], Any]) -> Any:
    """Rebuild a structure from encode()'s output; `tensor(name)` supplies each tensor."""
    if isinstance(value, list):
        return [decode(v, tensor) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (k, v), = value.items()
            if k == "__tensor__":
                return tensor(v)
            if k == "__tuple__":
                return tuple(decode(x, tensor) for x in v)
            if k == "__dict__":
                return {_hashable(decode(a, tensor)): decode(b, tensor) for a, b in v}
            if k == "__bytes__":
                return base64.b64decode(v)
            if k == "__float__":
                return float(v)
            if k == "__complex__":
                return complex(decode(v[0], tensor), decode(v[1], tensor))
        if set(value) == {"__object__", "fields"}:
            return ObjectNode(value["__object__"], decode(value["fields"], tensor))
        return {k: decode(v, tensor) for k, v in value.items()}
    return value


def loads(text: str, tensor: Callable[[str], Any]) -> Any:
    return decode(json.loads(text), tensor)


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    if isinstance(k, dict):
        return json.dumps(k, sort_keys=True)
    return k


def tensor_names(value) -> list[str]:
    """Every tensor name referenced by an encoded state, in order."""
    out: list[str] = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            if len(v) == 1 and "__tensor__" in v:
                out.append(v["__tensor__"])
            else:
                for x in v.values():
                    walk(x)

    walk(value)
    return out
