"""`mfparse scan --format sarif` / `--sarif FILE`: the scan as a SARIF 2.1.0 log, which code
scanning UIs (GitHub code scanning, Azure DevOps, VS Code's SARIF viewer) read.

Mapping (SARIF 2.1.0, OASIS):
- one run; tool.driver = mfparse, its version and one rule (reportingDescriptor) per finding
  kind that occurs ("import", "call", "build", ...), plus "scan-error" for what could not be
  judged;
- one result per finding: ruleId = its kind, level from its severity (dangerous -> "error",
  suspicious -> "warning", info -> "note"), message = the global and why;
- location: the scanned file as artifactLocation.uri (a relative URI for a relative path, a
  file:// URI for an absolute one); a byte offset in the file itself as a binary region
  (region.byteOffset); a zip/tar member and an offset inside decompressed bytes as a
  logicalLocation (kind "member", fullyQualifiedName "member path", properties.offset);
- result.properties holds the finding's own fields (severity, module, qualname, member, pickle,
  offset, offset_in, count); partialFingerprints a hash of kind, global, member and reason;
- one result per scan error (ruleId "scan-error", level "error"): a file that could not be
  judged must show up where the findings do; invocations[0].executionSuccessful is false
  when any file could not be judged.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

LEVELS = {"dangerous": "error", "suspicious": "warning", "info": "note"}

#: finding kind -> (rule name, short description)
RULES = {
    "import": ("PickleImport", "A pickle imports a global that is not on mfparse's allowlist"),
    "call": ("PickleCall", "A pickle calls a value computed at load time or named by an extension code"),
    "build": ("PickleBuild", "A pickle sets attributes (BUILD) on an object that must not receive them"),
    "setitem": ("PickleSetItem", "A pickle sets items on an object that is not a plain container"),
    "append": ("PickleAppend", "A pickle calls append/extend on an object that is not a plain list"),
    "computed": ("ComputedGlobal", "A pickle imports a name computed at load time"),
    "ext": ("ExtensionCode", "A pickle imports through copyreg's extension registry"),
    "frame": ("FrameMismatch", "A pickle FRAME's length disagrees with the opcodes it holds"),
    "resource": ("ResourceExhaustion", "Loading would exhaust memory, stack or time (a bomb)"),
    "loader": ("LoaderAttack", "A tensor or storage record points outside the bytes the file holds"),
    "container": ("ContainerAnomaly", "An archive whose structure readers disagree on"),
    "nested": ("NestedPayload", "A payload that a loader deserializes again"),
    "keras": ("KerasConfig", "A Keras model config that runs code or names modules outside Keras"),
    "format": ("FormatRisk", "A model format feature that runs code or touches files when loaded"),
    "polyglot": ("Polyglot", "A file that two loaders read as two different formats"),
    "scan-error": ("ScanError", "A file, or part of it, that mfparse could not read or judge"),
}


def artifact_uri(path: str | None) -> str:
    """A URI reference for a scanned path: relative paths stay relative (forward slashes,
    percent-encoded), absolute ones become file:// URIs; standard input is "stdin"."""
    if path is None or path == "<stdin>":
        return "stdin"
    p = path.replace(os.sep, "/")
    if os.path.isabs(path):
        return "file://" + urllib.parse.quote(p)
    return urllib.parse.quote(p)


def _rule(kind: str) -> dict:
    name, text = RULES.get(kind, (kind.title().replace("-", "").replace("_", ""), f"mfparse finding of kind {kind}"))
    return {"id": kind, "name": name, "shortDescription": {"text": text},
            "help": {"text": "mfparse docs/architecture.md, 'Safety model: mfparse scan'"}}


def _fingerprint(*parts) -> str:
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:32]


def _location(path, index: int, member=None, offset=None, offset_in=None) -> dict:
    phys = {"artifactLocation": {"uri": artifact_uri(path), "index": index}}
    if offset is not None and offset_in == "file":
        phys["region"] = {"byteOffset": offset, "byteLength": 1}
    loc = {"physicalLocation": phys}
    if member is not None:
        logical = {"name": member.rsplit("!", 1)[-1], "fullyQualifiedName": member, "kind": "member"}
        if offset is not None and offset_in != "file":
            logical["properties"] = {"offset": offset}
        loc["logicalLocations"] = [logical]
    return loc


def to_sarif(reports, version: str, policy=None) -> dict:
    """A SARIF 2.1.0 log (a JSON-ready dict) of ScanReports."""
    results = []
    kinds: list[str] = []
    artifacts = []
    failed = False
    for index, r in enumerate(reports):
        artifacts.append({"location": {"uri": artifact_uri(r.path)}, "length": r.size,
                          "roles": ["analysisTarget"]})
        for f in r.findings:
            if f.kind not in kinds:
                kinds.append(f.kind)
            g = f.global_name
            text = f"{f.severity}: {g + ': ' if g else ''}{f.why}"
            if f.count > 1:
                text += f" (x{f.count})"
            results.append({
                "ruleId": f.kind,
                "ruleIndex": kinds.index(f.kind),
                "level": LEVELS.get(f.severity, "warning"),
                "message": {"text": text},
                "locations": [_location(r.path, index, f.member, f.offset, f.offset_in)],
                "partialFingerprints": {"mfparseFinding/v1": _fingerprint(f.kind, g, f.member, f.why)},
                "properties": {k: v for k, v in f.to_dict().items() if k not in ("why",)},
            })
        for e in r.errors:
            failed = True
            if "scan-error" not in kinds:
                kinds.append("scan-error")
            results.append({
                "ruleId": "scan-error",
                "ruleIndex": kinds.index("scan-error"),
                "level": "error",
                "message": {"text": f"could not be judged: {e}"},
                "locations": [_location(r.path, index)],
                "partialFingerprints": {"mfparseFinding/v1": _fingerprint("scan-error", e)},
            })
    run = {
        "tool": {"driver": {"name": "mfparse", "version": version, "semanticVersion": version,
                            "rules": [_rule(k) for k in kinds]}},
        "artifacts": artifacts,
        "results": results,
        "invocations": [{"executionSuccessful": not failed,
                         **({"properties": {"policy": policy.to_dict()}} if policy is not None else {})}],
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
