"""The scan report: a verdict, findings, errors and notes, and the per-file scan context."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SEVERITIES = ("dangerous", "suspicious")
VERDICTS = ("safe", "unsafe", "error")


@dataclass(frozen=True)
class Finding:
    """One reason not to load a file.

    Attributes:
        severity: "dangerous" (reaches code execution, files, network, a nested loader, a
            name resolver, or attacks the loader) or "suspicious" (anything else off the allowlist).
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
    """

    severity: str
    why: str
    module: str | None = None
    qualname: str | None = None
    member: str | None = None
    pickle: int | None = None
    offset: int | None = None
    kind: str = "import"
    count: int = 1

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
        }

    def location(self) -> str:
        parts = []
        if self.member is not None:
            parts.append(self.member)
        if self.pickle is not None:
            parts.append(f"pickle {self.pickle}")
        if self.offset is not None:
            parts.append(f"byte {self.offset}")
        return ", ".join(parts) or "file"


@dataclass
class ScanReport:
    """What `mfparse.scan` found in one file.

    Attributes:
        path: the file scanned (None for bytes).
        verdict: "safe" (every pickle was read to its end and names only allowlisted globals,
            and every container was opened), "unsafe" (at least one finding; unsafe wins over
            errors) or "error" (no finding, but some part could not be read or judged).
        findings: [Finding], dangerous first.
        errors: what could not be read or judged, each ending with its byte offset when known.
        notes: information that does not change the verdict (formats seen, TorchScript code, ...).
        globals: every global the pickles would import, allowed ones included: {dotted name: count}.
        pickles: number of pickles interpreted.
        size: file size in bytes.
    """

    path: str | None
    verdict: str = "safe"
    findings: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    globals: dict = field(default_factory=dict)
    pickles: int = 0
    size: int = 0
    seconds: float = 0.0

    @property
    def safe(self) -> bool:
        return self.verdict == "safe"

    @property
    def dangerous(self) -> list:
        return [f for f in self.findings if f.severity == "dangerous"]

    def to_dict(self) -> dict:
        return {
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
        fs = [Finding(severity=f["severity"], why=f["why"], module=f["module"], qualname=f["qualname"],
                      member=f["member"], pickle=f["pickle"], offset=f["offset"], kind=f["kind"],
                      count=f.get("count", 1)) for f in d["findings"]]
        return cls(path=d["path"], verdict=d["verdict"], findings=fs, errors=list(d["errors"]),
                   notes=list(d["notes"]), globals=dict(d["globals"]), pickles=d["pickles"], size=d["size"],
                   seconds=d.get("seconds", 0.0))

    def __str__(self) -> str:
        return render_text(self)


def render_text(r: ScanReport) -> str:
    head = f"{r.path or '<bytes>'}: {r.verdict.upper()}"
    extra = []
    if r.findings:
        extra.append(f"{len(r.findings)} finding{'s' if len(r.findings) != 1 else ''}")
    if r.errors:
        extra.append(f"{len(r.errors)} error{'s' if len(r.errors) != 1 else ''}")
    if extra:
        head += " (" + ", ".join(extra) + ")"
    lines = [head]
    for f in r.findings:
        g = f.global_name
        what = f" {g}" if g else ""
        times = f" (x{f.count})" if f.count > 1 else ""
        lines.append(f"  {f.severity:<10}{what} [{f.location()}]{times}: {f.why}")
    for e in r.errors:
        lines.append(f"  error      {e}")
    for n in r.notes:
        lines.append(f"  note       {n}")
    return "\n".join(lines)


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

    def __init__(self, path: str | None, size: int):
        self.path = path
        self.size = size
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
            self._findings[key] = Finding(severity, why, module, qualname, member, pickle, offset, kind, count)
        else:
            self._findings[key] = Finding(f.severity, f.why, f.module, f.qualname, f.member, f.pickle, f.offset,
                                          f.kind, f.count + count)

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
        findings = sorted(self._findings.values(), key=lambda f: (SEVERITIES.index(f.severity),))
        verdict = "unsafe" if findings else ("error" if self.errors else "safe")
        return ScanReport(path=self.path, verdict=verdict, findings=findings, errors=list(self.errors),
                          notes=list(self.notes), globals=dict(self.globals), pickles=self.pickles,
                          size=self.size, seconds=seconds)


def display_path(path) -> str | None:
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    name = getattr(path, "name", None)
    return name if isinstance(name, str) else None
