"""Chat templates: Jinja that a runtime renders when the model is used, judged without rendering.

Where they sit (found by the loaders' own names):
  * GGUF metadata ``tokenizer.chat_template`` and ``tokenizer.chat_template.<name>``:
    llama-cpp-python builds a ``Jinja2ChatFormatter`` for each when it loads the model
    (before 0.2.72 with a plain, unsandboxed ``jinja2.Environment``: CVE-2024-34359);
  * Hugging Face folders: ``tokenizer_config.json`` / ``processor_config.json`` /
    ``chat_template.json`` key ``chat_template`` (a string, or a list of ``{"name",
    "template"}``), and ``chat_template.jinja`` / ``additional_chat_templates/*.jinja``:
    transformers' ``apply_chat_template`` renders them in an ``ImmutableSandboxedEnvironment``.

A template is parsed with Jinja's own parser (``Environment.parse``: tokens to an AST; nothing
is compiled, nothing rendered) and the AST is judged. Findings (``kind="template"``):

  * dangerous: an attribute or item named like a way out of the template: a dunder
    (``__globals__``, ``__class__``, ``__subclasses__``, ``__builtins__``, ``__init__``, ...),
    a mangled private name (``_TemplateReference__context``), the frame/code/function
    internals (``func_globals``, ``gi_frame``, ``f_globals``, ``mro``, ...) or an exec-like
    name (``popen``, ``system``, ``eval``, ...: policy.DANGEROUS_ATTRS); ``|attr`` (and
    ``map``/``selectattr``/... ``attribute=``) with such a name or with a name computed at
    render time; an item looked up with a name built at render time (``~``, ``+`` of strings,
    ``format``, ``join``, ``replace``, ``|string``, ... or a variable holding such a string):
    Jinja falls back from item to attribute lookup; a string constant holding a dunder or
    mangled name; ``str.format`` with a format string that reaches attributes (``{0.x}``);
    calls of evaluating names (``eval``, ``exec``, ``__import__``, ``open``, ...);
  * suspicious: a private attribute (``_x``); a call of a name neither the template defines
    nor the renderers provide (``range``, ``dict``, ``namespace``, ``cycler``, ``joiner``,
    ``lipsum``, ``raise_exception``, ``strftime_now``); reaching into those globals
    (``cycler.x``) or using web-framework globals (``self``, ``request``, ``config``, ...);
    ``str.format`` on a string that is not a constant; ``{% include/import/extends %}``.

Without jinja2 installed, or when the template does not parse (then the renderer that uses
this Jinja refuses it, but another may not), the text is searched instead: any dunder,
mangled name, escape-hatch name or ``attr`` filter in it is suspicious, never safe.
"""

from __future__ import annotations

from mfparse._lazy import LazyModule, LazyPattern

json = LazyModule("json")  # imported on first use: only JSON files need it

#: names every renderer provides (Jinja's defaults + transformers' / llama-cpp-python's)
RENDERER_GLOBALS = frozenset(["range", "dict", "lipsum", "cycler", "joiner", "namespace", "raise_exception",
                              "strftime_now"])
#: Jinja globals whose internals lead to Python objects (``cycler.__init__.__globals__``)
_GLOBAL_OBJECTS = frozenset(["cycler", "joiner", "namespace", "lipsum", "range", "dict", "raise_exception",
                             "strftime_now"])
#: globals of web frameworks or of Jinja itself that chat renderers never provide
_FOREIGN_GLOBALS = frozenset(["self", "request", "config", "session", "url_for", "get_flashed_messages",
                              "environment"])
#: attribute names (not dunders) that lead to frames, code, globals or the interpreter
ESCAPE_ATTRS = frozenset(
    "func_globals func_code func_closure func_defaults func_dict im_func im_self im_class gi_frame gi_code "
    "gi_yieldfrom cr_frame cr_code cr_await ag_frame ag_code f_globals f_locals f_builtins f_back f_code "
    "tb_frame tb_next co_code co_consts mro format_map".split()
)
#: calls of these names evaluate code, import or open files (never provided by a chat renderer)
_EVAL_NAMES = frozenset("eval exec compile open __import__ getattr setattr globals locals vars input "
                        "breakpoint import_module system popen".split())
#: filters and methods that build strings (a name built with them reaches any attribute)
_STRING_FILTERS = frozenset("join format replace string lower upper reverse title capitalize trim center "
                            "striptags wordwrap truncate indent first last sum list urlencode e escape safe "
                            "forceescape".split())
_NUMERIC_FILTERS = frozenset("length count int float abs round wordcount filesizeformat".split())
_STRING_METHODS = frozenset("format format_map join replace lower upper strip lstrip rstrip title capitalize "
                            "swapcase casefold removeprefix removesuffix center ljust rjust zfill translate encode "
                            "decode".split())
#: filters whose `attribute` argument (or, for map/select/reject with "attr", the next one) is an attribute name
_ATTRIBUTE_FILTERS = frozenset("map selectattr rejectattr sort groupby sum unique min max dictsort".split())
_TEMPLATE_EXTS = (".jinja", ".jinja2", ".j2")
#: JSON keys that hold chat templates (tokenizer_config.json, processor_config.json, chat_template.json)
_JSON_KEYS = ("chat_template",)

_DUNDER = LazyPattern(r"__[A-Za-z0-9_]*?__")
_MANGLED = LazyPattern(r"(?<![A-Za-z0-9])_[A-Za-z][A-Za-z0-9]*__[A-Za-z0-9_]+")
_FORMAT_REACH = LazyPattern(r"\{[^{}!:]*[.\[]")
_TEXT_ESCAPES = LazyPattern(r"\|\s*attr\b|\battr\s*\(|\b(?:%s)\b" % "|".join(
    sorted("func_globals func_code gi_frame gi_code cr_frame f_globals f_builtins f_back tb_frame co_code "
           "_TemplateReference__context".split())))

LOADERS = {
    "gguf": "llama-cpp-python's Jinja2ChatFormatter renders it (CVE-2024-34359: unsandboxed before 0.2.72)",
    "hf": "transformers' apply_chat_template renders it (and vLLM, TGI and other servers that load the folder)",
}


def _is_dangerous_name(name: str) -> str | None:
    """Why an attribute name leads out of a template, or None."""
    if _DUNDER.fullmatch(name):
        return f"the dunder attribute {name!r}: the way template injection reaches Python objects and builtins"
    if _MANGLED.fullmatch(name):
        return f"the name-mangled private attribute {name!r} (Jinja's own internals: the render context)"
    if name in ESCAPE_ATTRS:
        return f"the attribute {name!r}, which leads to frames, code, globals or commands"
    return None


class _Judge:
    """Walks one template's AST and reports what it reaches."""

    def __init__(self, report, nodes_mod):
        self.report = report      # report(severity, why, lineno)
        self.nodes = nodes_mod
        self.defined: set[str] = set()
        self.tainted: set[str] = set()   # variables assigned a string built at render time

    # ---- helpers ---------------------------------------------------------------------------

    def _const_str(self, n):
        return n.value if isinstance(n, self.nodes.Const) and isinstance(n.value, str) else None

    def built_string(self, n, depth: int = 0) -> bool:
        """Does this expression build a string at render time (a name no reader sees)? Numbers
        (lengths, indices, arithmetic), tests and comparisons are not strings."""
        N = self.nodes
        if depth > 200:
            return True
        b = lambda x: x is not None and self.built_string(x, depth + 1)  # noqa: E731
        if isinstance(n, N.Concat):
            return True
        if isinstance(n, (N.Add, N.Mul, N.Mod)):
            return (self._const_str(n.left) is not None or self._const_str(n.right) is not None
                    or b(n.left) or b(n.right))
        if isinstance(n, N.Filter):
            if n.name in _STRING_FILTERS:
                return True
            if n.name in _NUMERIC_FILTERS:
                return False
            return b(n.node) or any(b(a) for a in n.args)
        if isinstance(n, N.Call):
            if isinstance(n.node, N.Getattr) and n.node.attr in _STRING_METHODS:
                return True
            return False
        if isinstance(n, N.Name):
            return n.name in self.tainted
        if isinstance(n, N.NSRef):
            return f"{n.name}.{n.attr}" in self.tainted
        if isinstance(n, N.Getattr):
            if isinstance(n.node, N.Name) and f"{n.node.name}.{n.attr}" in self.tainted:
                return True
            return False
        if isinstance(n, N.Getitem):
            return b(n.node)  # a character of a built string
        if isinstance(n, N.CondExpr):
            return b(n.expr1) or b(n.expr2)
        if isinstance(n, (N.List, N.Tuple)):
            return any(b(x) for x in n.items)
        return False

    def attribute(self, name, lineno, how: str) -> None:
        why = _is_dangerous_name(name)
        if why is not None:
            self.report("dangerous", f"{how} reaches {why}", lineno)
        elif name.startswith("_"):
            self.report("suspicious", f"{how} reaches the private attribute {name!r} (the sandbox refuses it, a "
                        "plain Jinja environment does not)", lineno)

    # ---- the walk --------------------------------------------------------------------------

    def collect_definitions(self, tree) -> None:
        N = self.nodes
        for n in tree.find_all((N.Macro, N.Assign, N.AssignBlock, N.For, N.CallBlock)):
            if isinstance(n, N.Macro):
                self.defined.add(n.name)
                self.defined.update(a.name for a in n.args)
            elif isinstance(n, N.CallBlock):
                self.defined.update(a.name for a in n.args)
            targets = [n.target] if isinstance(n, (N.Assign, N.AssignBlock, N.For)) else []
            for t in targets:
                for name in t.find_all(N.Name) if not isinstance(t, N.Name) else [t]:
                    self.defined.add(name.name)
        self.defined.update(["loop", "caller", "varargs", "kwargs"])
        # taint: variables assigned strings built at render time (a fixed point over the sets)
        for _ in range(8):
            before = len(self.tainted)
            for n in tree.find_all((N.Assign, N.For)):
                value = n.node if isinstance(n, N.Assign) else n.iter
                if not self.built_string(value):
                    continue
                t = n.target
                if isinstance(t, N.NSRef):
                    self.tainted.add(f"{t.name}.{t.attr}")
                for name in ([t] if isinstance(t, N.Name) else list(t.find_all(N.Name))):
                    self.tainted.add(name.name)
            if len(self.tainted) == before:
                break

    def walk(self, tree) -> None:
        N = self.nodes
        self.collect_definitions(tree)
        for n in tree.find_all(N.Node):
            ln = getattr(n, "lineno", None)
            if isinstance(n, N.Getattr):
                self.attribute(n.attr, ln, "an attribute lookup")
                if isinstance(n.node, N.Name) and n.node.name in _GLOBAL_OBJECTS and n.node.name not in self.defined:
                    if _is_dangerous_name(n.attr) is None:
                        self.report("suspicious", f"reaches into the renderer's global {n.node.name!r} "
                                    f"(.{n.attr}): its internals lead to Python objects", ln)
            elif isinstance(n, N.Getitem) and not isinstance(n.arg, N.Slice):
                key = self._const_str(n.arg)
                if key is not None:
                    self.attribute(key, ln, "an item lookup (Jinja falls back to the attribute)")
                elif self.built_string(n.arg):
                    self.report("dangerous", "an item lookup with a name built at render time: Jinja falls back to "
                                "the attribute of that name, so any attribute (a dunder) is reachable", ln)
            elif isinstance(n, N.Filter):
                self.filter(n, ln)
            elif isinstance(n, N.Call):
                self.call(n, ln)
            elif isinstance(n, N.Const) and isinstance(n.value, str):
                m = _DUNDER.search(n.value) or _MANGLED.search(n.value)
                if m:
                    self.report("dangerous", f"a string constant holds the name {m.group(0)!r}: the way template "
                                "injection names attributes it reaches by lookup or formatting", ln)
                elif n.value in ESCAPE_ATTRS:
                    self.report("suspicious", f"a string constant is the escape-hatch name {n.value!r}", ln)
            elif isinstance(n, N.Name) and n.ctx == "load":
                if n.name in _FOREIGN_GLOBALS and n.name not in self.defined:
                    self.report("suspicious", f"uses the global {n.name!r}, which chat renderers do not provide "
                                "(a web framework's or Jinja's own object)", ln)
            elif isinstance(n, (N.Include, N.Import, N.FromImport, N.Extends)):
                self.report("suspicious", f"{{% {type(n).__name__.lower()} %}} loads another template by name: chat "
                            "renderers have no loader, other environments read files", ln)

    def filter(self, n, ln) -> None:
        N = self.nodes
        if n.name == "attr":
            arg = n.args[0] if n.args else None
            name = self._const_str(arg) if arg is not None else None
            if name is not None:
                self.attribute(name, ln, "the attr filter")
            else:
                self.report("dangerous", "the attr filter with a name computed at render time (a known sandbox "
                            "bypass: the name is not visible to any reader)", ln)
        if n.name in _ATTRIBUTE_FILTERS or n.name in ("select", "reject"):
            for kw in n.kwargs:
                if kw.key == "attribute":
                    name = self._const_str(kw.value)
                    if name is not None:
                        for part in name.split("."):
                            self.attribute(part, ln, f"the {n.name} filter's attribute argument")
                    elif self.built_string(kw.value):
                        self.report("dangerous", f"the {n.name} filter with an attribute name built at render time",
                                    ln)
            names = [self._const_str(a) for a in n.args]
            if "attr" in names:  # map('attr', name)
                i = names.index("attr")
                if i + 1 < len(n.args):
                    name = names[i + 1]
                    if name is not None:
                        self.attribute(name, ln, f"the {n.name} filter applying attr")
                    else:
                        self.report("dangerous", f"the {n.name} filter applies attr with a name computed at render "
                                    "time", ln)

    def call(self, n, ln) -> None:
        N = self.nodes
        fn = n.node
        if isinstance(fn, N.Name):
            name = fn.name
            if name in self.defined or name in RENDERER_GLOBALS:
                return
            if name in _EVAL_NAMES:
                self.report("dangerous", f"calls {name!r}, which evaluates code, imports or opens files when an "
                            "environment provides it", ln)
            else:
                self.report("suspicious", f"calls {name!r}, which neither the template defines nor the chat "
                            "renderers provide", ln)
        elif isinstance(fn, N.Getattr) and fn.attr in ("format", "format_map"):
            fmt = self._const_str(fn.node)
            if fmt is None:
                self.report("suspicious", f"str.{fn.attr} on a string that is not a constant: its replacement fields "
                            "can look up attributes of the arguments", ln)
            elif _FORMAT_REACH.search(fmt):
                self.report("dangerous", f"str.{fn.attr} with a format string that looks up attributes or items "
                            f"({fmt[:60]!r}): the classic way around Jinja's sandbox", ln)


def _environment():
    """A parse-only Jinja environment with the extensions the renderers enable (loopcontrols,
    transformers' {% generation %}) and `do`. Its parse() builds an AST; nothing is compiled."""
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """transformers' AssistantTracker tag, parsed (its body kept) and never run."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return ImmutableSandboxedEnvironment(extensions=[jinja2.ext.loopcontrols, jinja2.ext.do, Generation]), nodes


_ENV = []


def judge(text: str) -> tuple[list, str | None]:
    """Judge one template: ([(severity, why, line)], note or None). Never renders it."""
    out: list = []
    seen = set()

    def report(sev, why, lineno):
        key = (sev, why, lineno)
        if key not in seen:
            seen.add(key)
            out.append((sev, why, lineno))

    try:
        if not _ENV:
            _ENV.append(_environment())
        env, nodes_mod = _ENV[0]
    except ImportError:
        _judge_text(text, report)
        return out, "jinja2 is not installed: the template was searched as text"
    import jinja2

    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as e:
        _judge_text(text, report)
        return out, (f"does not parse with jinja2 {jinja2.__version__} (line {e.lineno}: "
                                           f"{e.message}); a renderer using it refuses the template; searched as text")
    except RecursionError:
        report("suspicious", "nested too deeply to parse (the renderer fails on it too)", None)
        return out, None
    try:
        _Judge(report, nodes_mod).walk(tree)
    except RecursionError:
        report("suspicious", "nested too deeply to judge", None)
    return out, None


def _judge_text(text: str, report) -> None:
    """Without an AST: a dunder, mangled name, escape-hatch name or attr filter is suspicious."""
    for rx, what in ((_DUNDER, "a dunder name"), (_MANGLED, "a name-mangled private name"),
                     (_TEXT_ESCAPES, "an attr filter or an escape-hatch name")):
        m = rx.search(text)
        if m:
            line = text.count("\n", 0, m.start()) + 1
            report("suspicious", f"{what} ({m.group(0).strip()!r}) in the template text, which was not parsed as "
                   "Jinja: cannot be told apart from template injection", line)


def _line_offset(text: str, line: int | None) -> int:
    """Byte offset (UTF-8) of the start of a 1-based line in text."""
    if not line or line <= 1:
        return 0
    pos = -1
    for _ in range(line - 1):
        pos = text.find("\n", pos + 1)
        if pos < 0:
            return 0
    return len(text[:pos + 1].encode("utf-8", "surrogatepass"))


def check_template(ctx, text: str, where, *, source: str, loader: str, offset: int | None = None,
                   exact: bool = False) -> None:
    """Judge one template and report on ctx. source names the key or file; loader is "gguf" or
    "hf"; offset is the file offset of the template text (exact: the text lies in the file as it
    is, so line offsets are added to it)."""
    found, note = judge(text)
    head = f"jinja2 chat template ({source}; {LOADERS[loader]})"
    for sev, why, line in found:
        at = offset
        if offset is not None and exact:
            at = offset + _line_offset(text, line)
        ln = f" at line {line}" if line else ""
        ctx.finding(sev, f"{head}{ln}: {why}", where, offset=at, module="jinja2", qualname=source, kind="template")
    if note:
        ctx.note(f"chat template {source}: {note}")
    if not found:
        ctx.note(f"chat template {source} parsed as Jinja and judged: no attribute, call or name that leads out "
                 "of the template")


# ---- where templates sit ---------------------------------------------------------------------

def is_template_name(name: str | None) -> bool:
    return bool(name) and name.lower().endswith(_TEMPLATE_EXTS)


def check_jinja_file(ctx, buf, where, name: str) -> None:
    """chat_template.jinja, additional_chat_templates/<name>.jinja."""
    text = bytes(buf).decode("utf-8", "replace")
    check_template(ctx, text, where, source=name, loader="hf", offset=where.offset(0), exact=True)


def templates_in_json(obj):
    """[(key path, template text)] of a parsed HF config: ``chat_template`` as a string or as a
    list of {"name", "template"}."""
    out = []
    if not isinstance(obj, dict):
        return out
    for key in _JSON_KEYS:
        v = obj.get(key)
        if isinstance(v, str):
            out.append((key, v))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict) and isinstance(item.get("template"), str):
                    nm = item.get("name")
                    out.append((f"{key}[{nm!r}]" if isinstance(nm, str) else f"{key}[{i}]", item["template"]))
                elif isinstance(item, str):
                    out.append((f"{key}[{i}]", item))
        elif isinstance(v, dict):  # {"name": template} (some processor configs)
            for nm, t in v.items():
                if isinstance(t, str):
                    out.append((f"{key}[{nm!r}]", t))
    return out


def check_json(ctx, obj, buf, where, name: str | None) -> bool:
    """The chat templates of a parsed JSON document; True when it held any."""
    found = templates_in_json(obj)
    if not found:
        return False
    raw = bytes(buf[:1 << 24])
    key_at = raw.find(b'"chat_template"')
    at = where.offset(key_at) if key_at >= 0 else None
    for key, text in found:
        check_template(ctx, text, where, source=f"{name or 'JSON'} key {key}", loader="hf", offset=at)
    return True


def check_gguf(ctx, buf, where, kvs, header_end: int | None = None) -> int:
    """The chat templates among GGUF metadata [(key, vtype, value)]; returns how many.
    header_end bounds the search for the keys' offsets (the metadata, not the tensor data)."""
    n = 0
    head = None
    for key, vtype, value in kvs:
        if not key.startswith("tokenizer.chat_template"):
            continue
        if vtype != 8 or not isinstance(value, str):
            if key == "tokenizer.chat_templates":
                continue  # the list of template names
            ctx.finding("suspicious", f"GGUF key {key!r} is not a string (type {vtype}): a chat template the runtime "
                        "may still render", where, module="jinja2", qualname=key, kind="template")
            continue
        if head is None:
            head = bytes(buf[:min(len(buf), header_end or len(buf), 1 << 28)])
        kb = key.encode("utf-8")
        pos = head.find(len(kb).to_bytes(8, "little") + kb)
        at = None
        if pos >= 0:
            at = where.offset(pos + 8 + len(kb) + 4 + 8)  # key, value type, string length
        check_template(ctx, value, where, source=f"GGUF key {key}", loader="gguf", offset=at, exact=at is not None)
        n += 1
    return n


def json_or_none(buf):
    try:
        return json.loads(bytes(buf).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
