"""JSON Schemas (draft 2020-12) of mfparse's machine output, shipped with the package.

- ``scan``: `mfparse scan --json` (and, in ``$defs/file``, one scanned file: ScanReport.to_dict(),
  the record `--jsonl` and the engines print; ``$defs/jsonl_line`` any `--jsonl` line);
- ``inspect``: `mfparse inspect --json` (``$defs/jsonl_line`` for `--jsonl`);
- ``bench``: `mfparse bench --json OUT` (its fields: mfparse/bench/report.py).

    >>> from mfparse import schemas
    >>> schemas.load("scan")["$defs"]["file"]["required"][:3]
    ['schema_version', 'path', 'verdict']

Validating needs a JSON Schema library (e.g. the jsonschema package); mfparse does not.
"""

from __future__ import annotations

import json
from importlib import resources

NAMES = ("scan", "inspect", "bench")


def load(name: str) -> dict:
    """The schema `name` ("scan", "inspect" or "bench") as a dict."""
    if name not in NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")
    return json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))


def sub(name: str, definition: str) -> dict:
    """A schema for one of `name`'s $defs (e.g. sub("scan", "file") for one ScanReport.to_dict()),
    its references resolved against the whole document."""
    doc = load(name)
    return {**doc["$defs"][definition], "$defs": doc["$defs"]}
