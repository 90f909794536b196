"""The scan report: a verdict, findings, errors and notes, and the per-file scan context."""

from __future__ import annotations

import os
from collections import namedtuple

#: finding severities, worst first: "dangerous" and "suspicious" make a file unsafe, "info" (a
#: known-benign import, or one the user's policy allows) never does
SEVERITIES = ("dangerous", "suspicious", "info")
VERDICTS = ("safe", "unsafe", "error")
#: version of the JSON record of one scanned file (ScanReport.to_dict) and of the documents
#: `mfparse scan --json/--jsonl` print (mfparse/schemas/scan.json). Raised when a field changes
#: meaning or disappears; new fields may appear within a version.
SCHEMA_VERSION = 1


_FINDING_FIELDS = ("severity", "why", "module", "qualname", "member", "pickle", "offset", "kind", "count",
                   "offset_in")


class Finding(namedtuple("Finding", _FINDING_FIELDS, defaults=(None, None, None, None, None, "import", 1, None))):
    """One reason not to load a file.

    Attributes:
        severity: "dangerous" (reaches code execution, files, network, a nested loader, a
            name resolver, or attacks the loader), "suspicious" (anything else off the allowlist)
            or "info" (an import of a known-benign class, or one the user's policy allows: the
            loader needs that library, but the file is not unsafe for it).
        module, qualname: the global the pickle would import (None when the finding is not
            about one global: a zip anomaly, a FRAME lie, a memo blow-up, ...).
        member: where it is: the zip/tar member path ("archive/data.pkl"), nested containers
            joined by "!", a decompression step as "[gzip]"; None for the file itself.
        pickle: index of the stacked pickle in that stream (0 = first), or None.
        offset: byte offset of the opcode (or structure): a file offset when the bytes lie in
            the file as they are; an offset into the decompressed member otherwise.
        why: the reason, in words.
        kind: what triggered it: "import", "call", "build", "setitem", "append", "computed",
            "ext", "frame", "resource", "loader", "container", "nested", "keras", "format".
        count: how many times the same finding occurred in that stream (first offset kept).
        offset_in: "file" when offset is a byte offset in the file itself, "member" when it is an
            offset into the decompressed bytes of `member`; None without an offset.
    """

    __slots__ = ()

    @property
    def global_name(self) -> str | None:
        """'module.qualname' of the global, or None."""
        if self.module is None and self.qualname is None:
            return None
        return f"{self.module}.{self.qualname}"

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "global": self.global_name,
            "module": self.module,
            "qualname": self.qualname,
            "member": self.member,
            "pickle": self.pickle,
            "offset": self.offset,
            "kind": self.kind,
            "why": self.why,
            "count": self.count,
            "offset_in": self.offset_in,
        }

    @classmethod
    def from_dict(cls, f: dict) -> Finding:
        return cls(severity=f["severity"], why=f["why"], module=f["module"], qualname=f["qualname"],
                   member=f["member"], pickle=f["pickle"], offset=f["offset"], kind=f["kind"],
                   count=f.get("count", 1), offset_in=f.get("offset_in"))

    def location(self) -> str:
        parts = []
        if self.member is not None:
            parts.append(self.member)
        if self.pickle is not None:
            parts.append(f"pickle {self.pickle}")
        if self.offset is not None:
            parts.append(f"byte {self.offset}")
        return ", ".join(parts) or "file"


class ScanReport:
    """What `mfparse.scan` found in one file.

    `to_dict()` is the JSON record of one scanned file (mfparse/schemas/scan.json, "$defs/file"),
    the same in `--json`, `--jsonl` and any engine's report; `from_dict()` reads it back.

    Attributes:
        path: the file scanned (None for bytes).
        verdict: "safe" (every pickle was read to its end and names only allowlisted globals,
            and every container was opened), "unsafe" (at least one finding; unsafe wins over
            errors; "info" findings never count) or "error" (no finding, but some part could not be
            read or judged).
        findings: [Finding], dangerous first, then suspicious, then info.
        errors: what could not be read or judged, each ending with its byte offset when known.
        notes: information that does not change the verdict (formats seen, TorchScript code, ...).
        globals: every global the pickles would import, allowed ones included: {dotted name: count}.
        pickles: number of pickles interpreted.
        size: file size in bytes.
    """

    __slots__ = ("path", "verdict", "findings", "errors", "notes", "globals", "pickles", "size", "seconds")

    def __init__(self, path: str | None, verdict: str = "safe", findings: list | None = None,
                 errors: list | None = None, notes: list | None = None, globals: dict | None = None,
                 pickles: int = 0, size: int = 0, seconds: float = 0.0):
        self.path = path
        self.verdict = verdict
        self.findings = [] if findings is None else findings
        self.errors = [] if errors is None else errors
        self.notes = [] if notes is None else notes
        self.globals = {} if globals is None else globals
        self.pickles = pickles
        self.size = size
        self.seconds = seconds

    def _fields(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()

    __hash__ = None  # mutable

    def replace(self, **changes) -> "ScanReport":
        """A copy with some fields changed (the lists and dicts are shared, not copied)."""
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return ScanReport(**fields)

    def __repr__(self) -> str:
        return "ScanReport(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"

    @property
    def safe(self) -> bool:
        return self.verdict == "safe"

    @property
    def dangerous(self) -> list:
        return [f for f in self.findings if f.severity == "dangerous"]

    def severity_counts(self) -> dict:
        """{severity: number of findings} for every severity (0 when none)."""
        out = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            out[f.severity] = out.get(f.severity, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "path": self.path,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "errors": list(self.errors),
            "notes": list(self.notes),
            "globals": dict(self.globals),
            "pickles": self.pickles,
            "size": self.size,
            "seconds": round(self.seconds, 6),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ScanReport:
        fs = [Finding.from_dict(f) for f in d["findings"]]
        return cls(path=d["path"], verdict=d["verdict"], findings=fs, errors=list(d["errors"]),
                   notes=list(d["notes"]), globals=dict(d["globals"]), pickles=d["pickles"], size=d["size"],
                   seconds=d.get("seconds", 0.0))

    def __str__(self) -> str:
        return render_text(self)


def sort_findings(findings) -> list:
    """Findings worst first (stable within a severity)."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def verdict_of(findings, errors) -> str:
    """"unsafe" with a dangerous or suspicious finding (wins over errors), else "error" when
    something could not be judged, else "safe"."""
    if any(f.severity != "info" for f in findings):
        return "unsafe"
    return "error" if errors else "safe"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def render_text(r: ScanReport) -> str:
    head = f"{r.path or '<bytes>'}: {r.verdict.upper()}"
    extra = []
    bad = [f for f in r.findings if f.severity != "info"]
    info = [f for f in r.findings if f.severity == "info"]
    if bad:
        extra.append(_plural(len(bad), "finding"))
    if r.errors:
        extra.append(_plural(len(r.errors), "error"))
    if info:
        extra.append(_plural(len(info), "known-benign import") if all(_known(f) for f in info)
                     else _plural(len(info), "allowed import"))
    if extra:
        head += " (" + ", ".join(extra) + ")"
    lines = [head]
    for f in bad:
        g = f.global_name
        what = f" {g}" if g else ""
        times = f" (x{f.count})" if f.count > 1 else ""
        lines.append(f"  {f.severity:<10}{what} [{f.location()}]{times}: {f.why}")
    for package, names in _by_package(info):
        lines.append(f"  info       loading imports {package}: {', '.join(names)}")
    for e in r.errors:
        lines.append(f"  error      {e}")
    for n in r.notes:
        lines.append(f"  note       {n}")
    return "\n".join(lines)


def _known(f) -> bool:
    return f.why.startswith("known-benign")


def _by_package(info) -> list:
    """[(top-level package, [names])] of info findings, in order of first appearance: one line
    per library a loader must import ("loading imports transformers: TrainingArguments, ...")."""
    groups: dict = {}
    for f in info:
        module = f.module or "?"
        names = groups.setdefault(module.split(".")[0], [])
        label = (f.qualname or "?") + ("" if _known(f) else " (allowed by the policy)")
        if label not in names:
            names.append(label)
    return list(groups.items())


class Where:
    """A position in the container tree: the member path and the file offset of buffer[0]
    (None when the buffer is decompressed, so offsets are relative to it)."""

    __slots__ = ("member", "base", "depth")

    def __init__(self, member: str | None = None, base: int | None = 0, depth: int = 0):
        self.member = member
        self.base = base
        self.depth = depth

    def child(self, name: str, base: int | None) -> Where:
        member = name if self.member is None else f"{self.member}!{name}"
        return Where(member, base, self.depth + 1)

    def wrapped(self, how: str) -> Where:
        """The decompressed content of this buffer."""
        member = f"[{how}]" if self.member is None else f"{self.member}[{how}]"
        return Where(member, None, self.depth + 1)

    def offset(self, pos: int) -> int:
        return pos if self.base is None else self.base + pos


class Context:
    """Collects findings, errors and notes while one file is scanned."""

    MAX_DEPTH = 8  # containers nested deeper than this are a finding, not a recursion

    def __init__(self, path: str | None, size: int, scan_bytes=None):
        self.path = path
        self.size = size
        # the scanner's entry for bytes found inside the file (a pickle.loads argument, a payload
        # in a Keras config): mfparse.scan passes mfparse.scan.containers.scan_buffer, so that
        # the modules that find such payloads need not import the container scanner
        self._scan_bytes = scan_bytes
        self._findings: dict = {}
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.globals: dict[str, int] = {}
        self.pickles = 0
        self.inflated = 0  # bytes produced by decompression so far

    def finding(self, severity: str, why: str, where: Where | None = None, *, pickle: int | None = None,
                offset: int | None = None, module: str | None = None, qualname: str | None = None,
                kind: str = "import", count: int = 1) -> None:
        member = where.member if where is not None else None
        key = (severity, kind, module, qualname, member, pickle, why)
        f = self._findings.get(key)
        if f is None:
            offset_in = None if offset is None else ("member" if where is not None and where.base is None else "file")
            self._findings[key] = Finding(severity, why, module, qualname, member, pickle, offset, kind, count,
                                          offset_in)
        else:
            self._findings[key] = Finding(f.severity, f.why, f.module, f.qualname, f.member, f.pickle, f.offset,
                                          f.kind, f.count + count, f.offset_in)

    def rescan(self, buf, where: Where, **kw) -> bool:
        """Scan bytes found inside the file as a file of their own (every container and pickle
        they hold is judged), reporting into this context."""
        if self._scan_bytes is None:
            raise RuntimeError("this scan Context was made without a scanner (mfparse.scan passes one)")
        return self._scan_bytes(self, buf, where, **kw)

    def error(self, message: str, where: Where | None = None, offset: int | None = None) -> None:
        text = message
        if where is not None and where.member is not None:
            text = f"{where.member}: {text}"
        if offset is not None and not text.endswith(")"):
            text = f"{text} (byte {offset})"
        if text not in self.errors:
            self.errors.append(text)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def saw_global(self, dotted: str) -> None:
        self.globals[dotted] = self.globals.get(dotted, 0) + 1

    def report(self, seconds: float = 0.0) -> ScanReport:
        findings = sort_findings(self._findings.values())
        verdict = verdict_of(findings, self.errors)
        return ScanReport(path=self.path, verdict=verdict, findings=findings, errors=list(self.errors),
                          notes=list(self.notes), globals=dict(self.globals), pickles=self.pickles,
                          size=self.size, seconds=seconds)


def display_path(path) -> str | None:
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    name = getattr(path, "name", None)
    return name if isinstance(name, str) else None
