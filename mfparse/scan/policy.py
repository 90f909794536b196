"""What `mfparse scan` allows, what it calls dangerous, and how a pickle global is judged.

Allowlist, not denylist: a global is safe only when its full dotted name is on ALLOWED (or,
inside a TorchScript archive, on TORCHSCRIPT_ALLOWED or under ``__torch__``). Every other
global is a finding. DANGEROUS and DANGEROUS_ATTRS only decide the finding's severity:
``dangerous`` when the name reaches something that runs code, touches files or the network,
loads another pickle or resolves names at load time; ``suspicious`` otherwise.

Nothing here imports a name it judges: names are strings.
"""

from __future__ import annotations

import functools

import _compat_pickle

# ---- the allowlist -------------------------------------------------------------------------
# What torch.load(weights_only=True) allows by default (torch 2.13: torch/_weights_only_unpickler.py
# `_get_allowed_globals`), written out so that scanning never imports torch. A test compares this
# set with torch's own.
_TORCH_DTYPES = (
    "bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 float16 float32 "
    "float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu "
    "int1 int16 int2 int3 int32 int4 int5 int6 int64 int7 int8 qint32 qint8 quint2x4 quint4x2 quint8 "
    "uint1 uint16 uint2 uint3 uint32 uint4 uint5 uint6 uint64 uint7 uint8"
).split()
_TORCH_STORAGES = (
    "BFloat16 Bool Byte Char ComplexDouble ComplexFloat Double Float Half Int Long QInt32 QInt8 QUInt2x4 "
    "QUInt4x2 QUInt8 Short"
).split()
_TORCH_TENSORS = "BFloat16 Bool Byte Char Double Float Half Int Long Short".split()
_TORCH_SPARSE = "BFloat16 Byte Char Double Float Half Int Long Short".split()
_CUDA_STORAGES = [s for s in _TORCH_STORAGES if not s.startswith("Q")]

TENSOR_REBUILD = frozenset(
    "torch._utils." + f
    for f in (
        "_rebuild_parameter _rebuild_parameter_with_state _rebuild_qtensor _rebuild_tensor _rebuild_tensor_v2 "
        "_rebuild_tensor_v3 _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage _rebuild_nested_tensor "
        "_rebuild_wrapper_subclass _rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor"
    ).split()
) | {"torch._tensor._rebuild_from_type_v2"}

TORCH_ALLOWED = frozenset(
    [
        "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device", "_codecs.encode",
        "builtins.bytearray", "builtins.set", "builtins.complex",
        "torch.storage.TypedStorage", "torch.storage.UntypedStorage",
        "torch.per_tensor_affine", "torch.per_tensor_symmetric", "torch.per_channel_affine",
        "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
    ]
    + [f"torch.{d}" for d in _TORCH_DTYPES]
    + [f"torch.{s}Storage" for s in _TORCH_STORAGES]
    + [f"torch.cuda.{s}Storage" for s in _CUDA_STORAGES]
    + [f"torch.{t}Tensor" for t in _TORCH_TENSORS]
    + [f"torch.cuda.{t}Tensor" for t in _TORCH_TENSORS]
    + [f"torch.sparse.{t}Tensor" for t in _TORCH_SPARSE]
    + [f"torch.cuda.sparse.{t}Tensor" for t in _TORCH_SPARSE]
) | TENSOR_REBUILD

NUMPY_ALLOWED = frozenset(
    [
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
        "numpy.ndarray", "numpy.dtype",
    ]
)

# builtins the issue adds to torch's set (pure constructors of builtin values)
BUILTINS_ALLOWED = frozenset(["builtins.frozenset", "builtins.slice"])

ALLOWED = TORCH_ALLOWED | NUMPY_ALLOWED | BUILTINS_ALLOWED

# TorchScript's own builders, allowed only inside TorchScript archives (with __torch__.*)
TORCHSCRIPT_ALLOWED = frozenset(
    "torch.jit._pickle." + f
    for f in "build_intlist build_tensorlist build_doublelist build_boollist build_tensor_from_id restore_type_tag".split()
)

# ---- the denylist (severity only) ----------------------------------------------------------
# dotted prefix -> why. A global is dangerous when its module path or any prefix of its full
# dotted name is here, or when an attribute step after the module reaches one of these.
_D = {}


def _deny(why: str, names: str) -> None:
    for n in names.split():
        _D[n] = why


_deny("runs commands or manipulates the process",
      "os posix nt subprocess _posixsubprocess pty commands popen2 platform multiprocessing concurrent asyncio "
      "_winapi msvcrt winreg _winreg signal _thread thread threading sys gc resource fcntl mmap select selectors "
      "_signal")
_deny("evaluates, compiles or builds code",
      "builtins.eval builtins.exec builtins.compile builtins.execfile builtins.__import__ builtins.input "
      "builtins.breakpoint builtins.help builtins.exit builtins.quit builtins.copyright builtins.credits "
      "builtins.license builtins.reload builtins.apply "
      "code codeop marshal types runpy timeit cProfile profile trace pdb bdb doctest idlelib site _sitebuiltins "
      "ctypes _ctypes cffi pydoc")
_deny("resolves names or attributes at load time (a universal gadget)",
      "builtins.getattr builtins.setattr builtins.delattr builtins.globals builtins.locals builtins.vars "
      "builtins.map builtins.filter "
      "importlib imp zipimport pkgutil pkg_resources importlib_metadata "
      "operator _operator functools _functools itertools")
_deny("deserializes another payload (a nested loader)",
      "pickle _pickle cPickle shelve dill cloudpickle jsonpickle joblib.load joblib.numpy_pickle.load "
      "joblib.numpy_pickle.NumpyUnpickler sklearn.externals.joblib.load "
      "numpy.load numpy.loads numpy.lib.npyio numpy.lib._npyio_impl numpy.lib.format numpy.lib._format_impl "
      "numpy.fromfile numpy.memmap numpy.testing numpy.f2py numpy.distutils numpy.ctypeslib "
      "pandas.read_pickle pandas.io "
      "torch.load torch.serialization torch.storage._load_from_bytes torch.jit.load torch.jit._load_for_lite_interpreter "
      "torch.jit._serialization torch.hub torch.package torch.utils.cpp_extension torch._C torch.fx.graph_module "
      "torch._dynamo torch._inductor torch.distributed.rpc torch.ops.load_library torch.classes.load_library "
      "yaml.load yaml.load_all yaml.unsafe_load yaml.unsafe_load_all yaml.full_load yaml.full_load_all "
      "yaml.UnsafeLoader yaml.FullLoader yaml.Loader "
      "keras.models.load_model keras.saving tensorflow.keras.models.load_model tensorflow.saved_model "
      "tensorflow.io tensorflow.py_function tensorflow.numpy_function tensorflow.compat.v1.py_func")
_deny("installs packages or creates environments",
      "pip _pip setuptools distutils ensurepip venv")
_deny("reads or writes files",
      "builtins.open builtins.file io _io codecs fileinput shutil tempfile pathlib glob zipfile tarfile gzip bz2 "
      "lzma sqlite3 dbm linecache filecmp")
_deny("opens network connections or a browser",
      "webbrowser socket _socket ssl _ssl http httplib urllib urllib2 urllib3 requests ftplib smtplib poplib "
      "imaplib nntplib telnetlib socketserver xmlrpc wsgiref aiohttp paramiko")
_deny("writes logs to files, sockets or mail (logging handlers and config)", "logging")

DANGEROUS: dict[str, str] = dict(_D)

# an attribute step with one of these names reaches code execution whatever the module
DANGEROUS_ATTRS = frozenset(
    (
        "system popen popen2 popen3 popen4 spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe execl "
        "execle execlp execlpe execv execve execvp execvpe posix_spawn posix_spawnp startfile forkpty Popen "
        "check_call check_output getoutput getstatusoutput fork_exec eval exec execfile compile getattr setattr "
        "delattr globals locals vars import_module reload load_module exec_module resolve_name locate attrgetter "
        "methodcaller loads run_path run_module _run_code _run_module_code _run_module_as_main CDLL PyDLL WinDLL "
        "OleDLL LoadLibrary dlopen cdll pydll windll load_library pipepager tempfilepager pager interact "
        "debug_script run_docstring_examples runctx runcall"
    ).split()
)

# copyreg helpers that CPython's own pickler writes for old protocols: dunder names, not gadgets
_DUNDER_OK = frozenset(["copyreg.__newobj__", "copyreg.__newobj_ex__"])

SAFE_CODECS = frozenset(
    ["latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "iso8859_1", "l1", "utf-8", "utf8", "utf_8",
     "ascii", "us-ascii"]
)


# ---- judging -------------------------------------------------------------------------------

def py3_name(module: str, name: str) -> tuple[str, str]:
    """(module, name) as CPython's unpickler maps Python 2 names (fix_imports, protocol < 3)."""
    key = (module, name)
    if key in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[key]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def is_dotted_identifier(s: str) -> bool:
    return bool(s) and all(part.isidentifier() for part in s.split("."))


def _dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


def danger(module: str, name: str) -> str | None:
    """Why module.name is dangerous, or None. Checks every component of the dotted name:
    the module path and every prefix of the full name, every attribute step after the module
    (``pathlib`` + ``os.system`` reaches os), dunder attributes and exec-like attribute names."""
    mparts = module.split(".")
    parts = mparts + name.split(".")
    for k in range(1, len(parts) + 1):
        why = DANGEROUS.get(".".join(parts[:k]))
        if why is not None:
            return f"{'.'.join(parts[:k])}: {why}"
    for j in range(len(mparts), len(parts)):
        part = parts[j]
        if _dunder(part) and f"{module}.{name}" not in _DUNDER_OK:
            return f"reaches the dunder attribute {part!r}: the way gadget chains escape to builtins"
        if part in DANGEROUS_ATTRS:
            return f"reaches the attribute {part!r}, which runs code or resolves names"
        for k in range(j + 1, len(parts) + 1):
            why = DANGEROUS.get(".".join(parts[j:k]))
            if why is not None:
                return f"reaches {'.'.join(parts[j:k])} through an attribute of {'.'.join(parts[:j])}: {why}"
    return None


@functools.lru_cache(maxsize=4096)
def judge_global(module: str, name: str, torchscript: bool = False) -> tuple[str | None, str]:
    """(severity or None, why) for an import of module.name.

    severity is None when the global is allowed; "dangerous" when the name (raw or mapped from
    Python 2) reaches the denylist; "suspicious" for every other name.
    """
    m3, n3 = py3_name(module, name)
    full3 = f"{m3}.{n3}"
    if full3 in ALLOWED:
        return None, "allowed"
    if torchscript and (full3 in TORCHSCRIPT_ALLOWED or m3 == "__torch__" or m3.startswith("__torch__.")):
        return None, "TorchScript class"
    why = danger(m3, n3)
    if why is None and (m3, n3) != (module, name):
        why = danger(module, name)
    if why is not None:
        return "dangerous", why
    if not (is_dotted_identifier(module) and is_dotted_identifier(name)):
        return "suspicious", "not a valid Python dotted name (the import would fail), and not on the allowlist"
    if m3 == "__torch__" or m3.startswith("__torch__."):
        return "suspicious", "a TorchScript class outside a TorchScript archive: a Python import the loader must resolve"
    if full3 in TORCHSCRIPT_ALLOWED:
        return "suspicious", "a TorchScript builder outside a TorchScript archive"
    return "suspicious", "not on the allowlist of pure constructors"
