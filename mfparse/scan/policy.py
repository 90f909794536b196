"""What `mfparse scan` allows, what it calls dangerous, and how a pickle global is judged.

Allowlist, not denylist: a global is safe only when its full dotted name is on ALLOWED (or,
inside a TorchScript archive, on TORCHSCRIPT_ALLOWED or under ``__torch__``). Every other
global is a finding. KNOWN_BENIGN names classes that widely used libraries pickle for plain data
(transformers' TrainingArguments, argparse.Namespace, datetime, pathlib paths, ...): their imports
are ``info`` findings (the loader needs the library; building the object runs nothing harmful).
DANGEROUS and DANGEROUS_ATTRS decide the severity of the rest: ``dangerous`` when the name
reaches something that runs code, touches files or the network, loads another pickle or resolves
names at load time; ``suspicious`` otherwise.

`Policy` is what a user adds on top (`mfparse scan --allow NAME --fail-on LEVEL --policy FILE`):
more allowed names, severity overrides and the level that fails the command.

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

# ---- known-benign imports ------------------------------------------------------------------
# Classes that widely used libraries pickle for plain data. Loading them imports the library (so
# torch.load(weights_only=True) refuses them), but building the object runs nothing harmful: the
# unpickler calls the class (REDUCE: ``cls(*args)``) or ``cls.__new__(cls)`` (NEWOBJ), then sets
# the pickled state (BUILD: ``__setstate__`` or a plain ``__dict__`` update), and for these
# classes those steps only store values. Their arguments and state are judged like everything
# else: a Namespace whose field is built by os.system is still dangerous because of os.system.
# Each group is justified in docs/architecture.md, "Known-benign imports". An import of one of
# these is an ``info`` finding: it never makes a file unsafe. Exact names only: other attributes
# of the same modules (pathlib.Path.write_text, argparse.ArgumentParser) are judged as before.

#: full dotted name -> (the package a loader imports, what the class is)
KNOWN_BENIGN: dict[str, tuple[str, str]] = {}


def _benign(package: str, what: str, names: str) -> None:
    for n in names.split():
        KNOWN_BENIGN[n] = (package, what)


_benign("transformers", "transformers' training arguments: a dataclass of settings (training_args.bin)",
        "transformers.training_args.TrainingArguments transformers.training_args_seq2seq.Seq2SeqTrainingArguments "
        "transformers.trainer_pt_utils.AcceleratorConfig")
_benign("transformers", "transformers' DeepSpeed settings held by TrainingArguments: a dict of configuration",
        "transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig transformers.deepspeed.HfTrainerDeepSpeedConfig")
_benign("transformers", "an enum of transformers' training options (a member is looked up by its value)",
        "transformers.trainer_utils.IntervalStrategy transformers.trainer_utils.EvaluationStrategy "
        "transformers.trainer_utils.SaveStrategy transformers.trainer_utils.HubStrategy "
        "transformers.trainer_utils.SchedulerType transformers.trainer_utils.FSDPOption "
        "transformers.trainer_utils.ShardedDDPOption transformers.training_args.OptimizerNames "
        "transformers.training_args.ParallelMode transformers.debug_utils.DebugOption")
_benign("accelerate", "accelerate's process state as TrainingArguments caches it: unpickling sets attributes of "
        "a new instance, never the shared state", "accelerate.state.PartialState")
_benign("accelerate", "an enum of accelerate's distributed modes", "accelerate.utils.dataclasses.DistributedType")
_benign("trl", "TRL's trainer configuration: a TrainingArguments dataclass with more settings",
        "trl.trainer.sft_config.SFTConfig trl.trainer.dpo_config.DPOConfig trl.trainer.grpo_config.GRPOConfig "
        "trl.trainer.reward_config.RewardConfig trl.trainer.kto_config.KTOConfig trl.trainer.rloo_config.RLOOConfig")
_benign("argparse", "a namespace of parsed command-line arguments (fairseq and many training scripts)",
        "argparse.Namespace")
_benign("datetime", "a date, time, duration or time zone value",
        "datetime.datetime datetime.date datetime.time datetime.timedelta datetime.timezone")
_benign("pathlib", "a path value: building it parses a string and touches no file",
        " ".join(f"{m}.{c}" for m in ("pathlib", "pathlib._local")
                 for c in ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath")))
_benign("fractions", "an exact fraction value", "fractions.Fraction")
_benign("decimal", "a decimal number value", "decimal.Decimal")
_benign("uuid", "a UUID value", "uuid.UUID uuid.SafeUUID")
_benign("collections", "a container of the standard library", "collections.defaultdict collections.deque")
_benign("builtins", "a builtin value type (a defaultdict's factory, a range)",
        "builtins.list builtins.dict builtins.tuple builtins.int builtins.float builtins.str builtins.bytes "
        "builtins.bool builtins.range")


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

    severity is None when the global is allowed; "info" for a known-benign class (KNOWN_BENIGN);
    "dangerous" when the name (raw or mapped from Python 2) reaches the denylist; "suspicious"
    for every other name.
    """
    m3, n3 = py3_name(module, name)
    full3 = f"{m3}.{n3}"
    if full3 in ALLOWED:
        return None, "allowed"
    benign = KNOWN_BENIGN.get(full3)
    if benign is not None:
        return "info", f"known-benign: {benign[1]}; loading imports {benign[0]}"
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


# ---- the user's policy: --allow, --fail-on, --policy FILE -----------------------------------

#: severities from worst to mildest; a file fails `mfparse scan` when it has a finding at or above
#: the policy's fail_on level
SEVERITY_ORDER = ("dangerous", "suspicious", "info")
#: the levels --fail-on takes
FAIL_ON = ("dangerous", "suspicious")
#: what `mfparse scan` fails on unless told otherwise: every import off the allowlist. mfparse's
#: guarantee rests on its allowlist; a gate that passed "suspicious" imports would rest on the
#: denylist instead, and an unaudited name can run anything its module does.
DEFAULT_FAIL_ON = "suspicious"
POLICY_KEYS = ("fail_on", "allow", "severity", "known_benign")


class PolicyError(ValueError):
    """A policy that cannot be used: a bad name, level or file (the message says which)."""


def _check_pattern(p, where: str) -> str:
    if not isinstance(p, str):
        raise PolicyError(f"{where}: {p!r} is not a string")
    body = p[:-2] if p.endswith(".*") else p
    if not is_dotted_identifier(body) or (body == p and "." not in p):
        raise PolicyError(f"{where}: {p!r} is not a dotted name (module.qualname, or module.* for a whole module)")
    return p


def _matches(pattern: str, full: str) -> bool:
    if pattern.endswith(".*"):
        return full.startswith(pattern[:-1])
    return full == pattern


def _danger_of(name: str) -> str | None:
    module, _, qual = name.rpartition(".")
    return danger(module, qual)


class Policy:
    """What a user adds to mfparse's judgement.

    Attributes:
        fail_on: "dangerous" or "suspicious": the mildest severity that makes `mfparse scan`
            exit 1 (default DEFAULT_FAIL_ON).
        allow: names whose imports are allowed: "module.qualname" or "module.*". An allowed
            import is reported as an ``info`` finding; a dangerous one stays dangerous (the
            denylist is not negotiable: allowing a dangerous name exactly is an error).
        severity: {name or "module.*": "dangerous" | "suspicious" | "info"} for imports that are
            findings; a dangerous import cannot be lowered.
        known_benign: False reports KNOWN_BENIGN imports as suspicious (strict audits).
    """

    def __init__(self, fail_on: str = DEFAULT_FAIL_ON, allow=(), severity=None, known_benign: bool = True,
                 source: str = "policy"):
        if fail_on not in FAIL_ON:
            raise PolicyError(f"{source}: fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
        self.fail_on = fail_on
        self.allow = tuple(_check_pattern(p, f"{source}: allow") for p in allow)
        for p in self.allow:
            why = None if p.endswith(".*") else _danger_of(p)
            if why is not None:
                raise PolicyError(f"{source}: refusing to allow {p}: it is dangerous ({why})")
        self.severity = {}
        for p, level in (severity or {}).items():
            _check_pattern(p, f"{source}: severity")
            if level not in SEVERITY_ORDER:
                raise PolicyError(f"{source}: severity of {p} must be one of {', '.join(SEVERITY_ORDER)}, "
                                  f"not {level!r}")
            why = None if p.endswith(".*") else _danger_of(p)
            if why is not None and level != "dangerous":
                raise PolicyError(f"{source}: refusing to lower the severity of {p}: it is dangerous ({why})")
            self.severity[p] = level
        if not isinstance(known_benign, bool):
            raise PolicyError(f"{source}: known_benign must be true or false")
        self.known_benign = known_benign

    @classmethod
    def from_file(cls, path, fail_on: str | None = None, allow=()) -> Policy:
        """Read a TOML policy file (see docs/architecture.md, "Scan policy"); fail_on and allow
        given here (the command line) override / extend the file's."""
        data = load_toml(path)
        name = str(path)
        unknown = [k for k in data if k not in POLICY_KEYS]
        if unknown:
            raise PolicyError(f"{name}: unknown key(s) {', '.join(map(repr, unknown))}; a policy has "
                              f"{', '.join(POLICY_KEYS)}")
        file_allow = data.get("allow", [])
        if not isinstance(file_allow, list):
            raise PolicyError(f"{name}: allow must be a list of names")
        sev = data.get("severity", {})
        if not isinstance(sev, dict):
            raise PolicyError(f"{name}: [severity] must be a table of name = level")
        return cls(fail_on=fail_on or data.get("fail_on", DEFAULT_FAIL_ON), allow=list(file_allow) + list(allow),
                   severity=sev, known_benign=data.get("known_benign", True), source=name)

    def _level(self, name: str) -> str | None:
        best = None  # the most specific pattern wins: an exact name over module.*, longer over shorter
        for p, level in self.severity.items():
            if _matches(p, name) and (best is None or (not p.endswith(".*"), len(p)) > best[0]):
                best = ((not p.endswith(".*"), len(p)), level)
        return None if best is None else best[1]

    def _allowed(self, name: str) -> str | None:
        return next((p for p in self.allow if _matches(p, name)), None)

    def judge(self, f):
        """The finding as this policy sees it (the same object when nothing changes)."""
        name = f.global_name
        if f.kind != "import" or name is None:
            return f
        if f.severity == "info" and not self.known_benign and name in KNOWN_BENIGN:
            f = f._replace(severity="suspicious", why="known-benign list turned off by the policy: " + f.why)
        level = self._level(name)
        if level is not None:
            if level == f.severity or f.severity == "dangerous":
                return f
            return f._replace(severity=level, why=f"{level} by the policy (was {f.severity}: {f.why})")
        p = self._allowed(name)
        if p is not None and f.severity == "suspicious":
            return f._replace(severity="info", why=f"allowed by the policy ({p})")
        return f

    def apply(self, report):
        """The report with every finding judged by this policy and its verdict recomputed."""
        findings = [self.judge(f) for f in report.findings]
        if all(a is b for a, b in zip(findings, report.findings)):
            return report
        from mfparse.scan.report import sort_findings, verdict_of

        findings = sort_findings(findings)
        return report.replace(findings=findings, verdict=verdict_of(findings, report.errors))

    def fails(self, report) -> bool:
        """True when the report has a finding at or above fail_on."""
        worst = SEVERITY_ORDER.index(self.fail_on)
        return any(SEVERITY_ORDER.index(f.severity) <= worst for f in report.findings)

    def to_dict(self) -> dict:
        return {"fail_on": self.fail_on, "allow": list(self.allow), "severity": dict(self.severity),
                "known_benign": self.known_benign}


def load_toml(path) -> dict:
    """A TOML file as a dict (tomllib on Python 3.11+, the tomli package on 3.10)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise PolicyError(f"{path}: reading a TOML policy needs Python 3.11+ or the tomli package "
                              "(pip install tomli)") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: not valid TOML: {e}") from None
