"""Code that model packages carry: TorchScript methods and TorchServe handlers.

TorchScript (``torch.jit.save``; ``torch.load`` hands such an archive to ``torch.jit.load``):
the archive's ``code/__torch__/**/*.py`` files are TorchScript source that ``torch.jit.load``
compiles and runs: ``__setstate__`` while loading, ``forward`` and the other methods when the
model is called. TorchScript is a Python subset, so every code file is parsed with Python's
``ast`` module (parsed only: never compiled or run) and every call is judged by the name it
calls (``torch.from_file``, ``ops.aten.save``, ...: ``torch.ops.`` is written ``ops.`` in
saved code). Findings (kind ``code``): dangerous for ops that read or write files
(``aten::from_file``, ``aten::save``), load libraries, pickles or other models, or reach other
processes (``torch.distributed.rpc``, ``prim::rpc_*``); suspicious for a code file that does not
parse (the loader's compiler may still read it) and Python builtins TorchScript does not have
(``open``, ``eval``, ``__import__``). Custom-op namespaces (``ops.<lib>.<op>``) and custom
classes (``__torch__.torch.classes.<lib>``) are noted: they run native code of whichever
library registered them, and loading fails without it.

torch.package archives (``.data/extern_modules``) carry Python modules that
``PackageImporter`` imports when a pickle names them: a suspicious finding when there are any.

TorchServe (``.mar``: a zip with ``MAR-INF/MANIFEST.json``): ``torchserve`` imports the
archive's handler and model files (Python) when it loads the model, and may pip-install its
requirements file. Python modules carried in it are a suspicious finding (code runs at load;
mfparse does not judge arbitrary Python); its pickles and TorchScript files are scanned as
every zip member is.
"""

from __future__ import annotations

from mfparse._lazy import LazyModule

ast = LazyModule("ast")  # parsed only when an archive carries code
json = LazyModule("json")

#: calls that read or write files, load code, pickles or models, or talk to other processes
DANGEROUS_CALLS = {
    "torch.from_file": "reads a file into a tensor (aten::from_file)",
    "ops.aten.from_file": "reads a file into a tensor (aten::from_file)",
    "torch.save": "writes a file (aten::save)",
    "ops.aten.save": "writes a file (aten::save)",
    "torch.load": "unpickles a file",
    "torch.jit.load": "loads another TorchScript model",
    "ops.load_library": "loads a native library",
    "torch.classes.load_library": "loads a native library",
    "ops.prim.PythonOp": "calls Python",
    "ops.prim.rpc_async": "runs a function in another process (RPC)",
    "ops.prim.rpc_sync": "runs a function in another process (RPC)",
    "ops.prim.rpc_remote": "runs a function in another process (RPC)",
    "ops.debugprims.load_tensor": "loads a tensor from the debug prims' store",
}
_DANGEROUS_PREFIXES = {
    "torch.distributed.rpc.": "runs a function in another process (RPC)",
    "ops.aten._save": "writes a file",
}
#: Python builtins that TorchScript does not have: in saved code they are a hand-written file
_PYTHON_BUILTINS = frozenset("open eval exec compile __import__ getattr setattr globals locals vars input "
                             "breakpoint exit quit".split())
#: op namespaces of torch itself (anything else is a custom op from a loaded library)
_TORCH_NAMESPACES = frozenset("aten prim quantized _quantized profiler mkldnn mkldnn_prepacked prepacked xnnpack "
                              "sparse fbgemm _caffe2 cuda quantized_decomposed _test onednn mps cudnn miopen "
                              "_c10d_functional c10d _dtensor inductor".split())
MAX_CODE = 64 << 20


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _normal(name: str) -> str:
    return "ops." + name[len("torch.ops."):] if name.startswith("torch.ops.") else name


def judge_code(text: str):
    """([(severity, why, line, function)], custom namespaces) of one TorchScript source file.

    One walk in ast.walk's order (breadth first, so findings come in that order), each node
    carrying the outermost function around it."""
    tree = ast.parse(text)
    out = []
    custom = set()
    attribute, call, node_type = ast.Attribute, ast.Call, ast.AST
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    queue = [(tree, None)]
    i = 0
    while i < len(queue):
        node, fn = queue[i]
        i += 1
        t = type(node)
        inner = node.name if fn is None and t in defs else fn
        for field in node._fields:
            v = getattr(node, field, None)
            if type(v) is list:
                for x in v:
                    if isinstance(x, node_type):
                        queue.append((x, inner))
            elif isinstance(v, node_type):
                queue.append((v, inner))
        if t is attribute:
            name = _dotted(node)
            if name and name.startswith("__torch__.torch.classes."):
                custom.add(name.split(".")[4] if name.count(".") >= 4 else name)
            continue
        if t is not call:
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        name = _normal(name)
        why = DANGEROUS_CALLS.get(name)
        if why is None:
            why = next((w for p, w in _DANGEROUS_PREFIXES.items() if name.startswith(p)), None)
        if why is None and name.startswith("ops.") and name.count(".") >= 2:
            ns = name.split(".")[1]
            if ns not in _TORCH_NAMESPACES:
                custom.add(ns)
            if name.endswith(("from_file", "load_library")) or ".save" in name:
                why = "reads or writes files, or loads a library"
        if why is not None:
            out.append(("dangerous", f"calls {name} ({why})", node.lineno, fn))
        elif name in _PYTHON_BUILTINS and not _torchscript_getattr(name, node):
            out.append(("suspicious", f"calls {name} (a Python builtin TorchScript does not have: code written by "
                        "hand, not by torch.jit.save)", node.lineno, fn))
    return out, custom


def _torchscript_getattr(name: str, node) -> bool:
    """`getattr(obj, "literal")`: TorchScript's own getattr (torch.jit.save writes it for submodules
    whose names are not identifiers, as nn.Sequential's `getattr(self, "0")`); only a constant
    name of two arguments compiles, and it reads an attribute of a scripted object."""
    return (name == "getattr" and len(node.args) == 2 and not node.keywords
            and type(node.args[1]) is ast.Constant and type(node.args[1].value) is str)


def why_name(why: str) -> str:
    """The callee named in a judge_code reason ("calls torch.save (...)" -> "torch.save")."""
    return why.split(" ", 2)[1] if why.startswith("calls ") else why


def inspect_zip(ctx, buf, where, members, read) -> None:
    """TorchScript code in an archive with constants.pkl; TorchServe archives."""
    if any(n.endswith("constants.pkl") for n in members):
        _torchscript(ctx, where, members, read)
    if any(n.endswith("MAR-INF/MANIFEST.json") for n in members):
        _mar(ctx, where, members, read)
    if any(n.endswith(".data/extern_modules") for n in members):
        _torch_package(ctx, where, members)


def _torch_package(ctx, where, members) -> None:
    """torch.package (PackageExporter): the archive carries Python modules that PackageImporter
    imports (runs) when its pickles name them."""
    py = sorted(n for n in members if n.endswith(".py") and "/.data/" not in n)
    ctx.note("torch.package archive: torch.package.PackageImporter loads its pickles, importing the modules "
             "packaged with them")
    if py:
        ctx.finding("suspicious", f"torch.package archive carries Python modules ({', '.join(py[:10])}"
                    + (f" and {len(py) - 10} more" if len(py) > 10 else "") + "): PackageImporter runs them when "
                    "a pickle names them (mfparse does not judge Python)", where, module="torch.package",
                    qualname=py[0], kind="code")


def _torchscript(ctx, where, members, read) -> None:
    code = [n for n in members if "/code/" in f"/{n}" and n.endswith(".py")]
    judged = 0
    custom: set = set()
    for nm in code:
        if members[nm][5] > MAX_CODE:
            ctx.error(f"TorchScript code file {nm!r} of {members[nm][5]} bytes: too large to judge", where)
            continue
        got = read(nm)
        if got is None:
            continue
        data, off = got
        mw = where.child(nm, off)
        try:
            text = bytes(data).decode("utf-8")
            found, cust = judge_code(text)
        except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError, MemoryError) as e:
            ctx.finding("suspicious", f"TorchScript code file does not parse as Python ({type(e).__name__}): it cannot "
                        "be judged, and torch.jit.load compiles it with its own parser", mw, offset=off,
                        module="torchscript", qualname=nm, kind="code")
            continue
        judged += 1
        custom |= cust
        for sev, why, line, fn in found:
            when = ("while loading (torch.jit.load runs __setstate__)" if fn == "__setstate__" else
                    f"when {fn}() is called" if fn else "when the code is compiled")
            ctx.finding(sev, f"TorchScript code {why} at line {line} of {fn or 'the module'}, {when}", mw,
                        offset=_line_offset(data, line, off), module="torchscript", qualname=why_name(why), kind="code")
    if custom:
        ctx.note("TorchScript code uses custom ops or classes of " + ", ".join(sorted(custom)) + ": native code of "
                 "whichever library registered them (loading fails without it)")
    if code:
        ctx.note(f"TorchScript code: {judged} of {len(code)} file(s) parsed and every call judged (torch.jit.load "
                 "compiles and runs them)")


def _line_offset(data, line, off):
    """The offset of a line: in the file when the member is stored (off), else in the member."""
    off = off or 0
    b = bytes(data)
    pos = 0
    for _ in range(max(line, 1) - 1):
        pos = b.find(b"\n", pos) + 1
        if pos == 0:
            return off
    return off + pos


def _mar(ctx, where, members, read) -> None:
    man = next(n for n in members if n.endswith("MAR-INF/MANIFEST.json"))
    root = man[: -len("MAR-INF/MANIFEST.json")]
    got = read(man)
    model = {}
    if got is not None:
        try:
            obj = json.loads(bytes(got[0]).decode("utf-8"))
            model = obj.get("model", {}) if isinstance(obj, dict) else {}
            model = model if isinstance(model, dict) else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            ctx.error("TorchServe MANIFEST.json is not valid JSON: the archive's entry points cannot be read",
                      where.child(man, None))
    py = sorted(n for n in members if n.startswith(root) and n.endswith(".py") and "/code/" not in f"/{n}")
    handler = model.get("handler")
    listed = {k: model.get(k) for k in ("handler", "modelFile", "serializedFile", "requirementsFile")
              if isinstance(model.get(k), str)}
    desc = ", ".join(f"{k} {v!r}" for k, v in listed.items())
    ctx.note("TorchServe model archive (.mar)" + (f": {desc}" if desc else "") + "; its pickles and TorchScript "
             "files are scanned like every member")
    if py:
        ctx.finding("suspicious", f"TorchServe archive carries Python code ({', '.join(py[:10])}"
                    + (f" and {len(py) - 10} more" if len(py) > 10 else "") + "): torchserve imports the handler "
                    f"{handler!r} and the model file when it loads the model (mfparse does not judge Python)",
                    where, module="torchserve", qualname=str(handler), kind="code")
    req = listed.get("requirementsFile")
    if req:
        ctx.finding("suspicious", f"TorchServe archive names a requirements file {req!r}: torchserve pip-installs it "
                    "when per-model dependencies are enabled", where, module="torchserve", qualname=req, kind="code")
