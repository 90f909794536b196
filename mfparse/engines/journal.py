"""The report file of a scan over many files (`mfparse scan ... --report OUT.jsonl`), and what
`--resume` reads back.

Decided: the report is written as an append-only journal, OUT.jsonl.partial, one record per file
as it finishes (each line is one write(2) of the whole line, so a process that dies leaves at
most one torn last line), and renamed to OUT.jsonl once the summary record is written and the
file is fsync'ed: OUT.jsonl is either absent or a finished report, never half of one (the
project's rule: a file is written whole, by rename). `--resume OUT.jsonl` reads OUT.jsonl.partial
when it exists (an interrupted run), else OUT.jsonl (a finished run, to add what was not in it),
keeps every well-formed record of the current schema_version (a torn last line, summary records
and records of another schema version are dropped; a path seen twice keeps its first record),
writes them to a new OUT.jsonl.partial (a temporary file renamed over it) and appends from
there. Files whose record was kept are skipped; every other file is scanned. A record is lost
only if the machine itself crashes before the kernel wrote it: that file is scanned again on
resume, never reported twice.
"""

from __future__ import annotations

import hashlib
import json
import os

PARTIAL_SUFFIX = ".partial"


def key_of(name: str) -> bytes:
    """The identity of a file for exactly-once: 16 bytes of BLAKE2b of its absolute normalised
    path (so `./a.pt` and `a.pt` are one file), or of the URL as reported. Digests, not the
    strings, so that a run of millions of files keeps a small set."""
    if "://" not in name:
        name = os.path.normpath(os.path.abspath(name))
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class DoneSet:
    """The files already reported (keys of key_of)."""

    def __init__(self, names=()):
        self._keys = set()
        for n in names:
            self.add(n)

    def add(self, name: str) -> bool:
        """Add a file; False when it was already there."""
        k = key_of(name)
        if k in self._keys:
            return False
        self._keys.add(k)
        return True

    def __contains__(self, name: str) -> bool:
        return key_of(name) in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def resume_file(path) -> str | None:
    """What --resume PATH reads: PATH.partial (an interrupted run) when it exists, else PATH,
    else None (nothing to resume: every file is scanned)."""
    path = os.fspath(path)
    for p in (path + PARTIAL_SUFFIX, path):
        if os.path.exists(p):
            return p
    return None


def read_records(path):
    """The file records of a JSONL report, lazily: well-formed lines of this schema version
    that name a file (summary records, torn or foreign lines are skipped)."""
    from mfparse.scan.report import SCHEMA_VERSION, VERDICTS

    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # a torn last line: the run died while writing it
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if (isinstance(rec, dict) and isinstance(rec.get("path"), str) and rec.get("verdict") in VERDICTS
                    and rec.get("schema_version") == SCHEMA_VERSION and "summary" not in rec):
                yield rec


def done_set(resume) -> DoneSet:
    """The DoneSet of `resume`: a DoneSet, a report path (resume_file), or names."""
    if isinstance(resume, DoneSet):
        return resume
    if isinstance(resume, (str, os.PathLike)):
        done = DoneSet()
        src = resume_file(resume)
        if src is not None:
            for rec in read_records(src):
                done.add(rec["path"])
        return done
    return DoneSet(resume or ())


class Journal:
    """OUT.jsonl.partial, appended to record by record, renamed to OUT.jsonl by finish().

    Args:
        path: the report to write.
        resume: a report to resume (its records are copied first and their files skipped),
            or None to start afresh (an old OUT.jsonl.partial is discarded).
        on_prior: called with each record copied from `resume` (the command line counts them
            in its summary and exit status).

    Attributes:
        done: the DoneSet of the records copied (pass it to scan_many(resume=...)).
    """

    def __init__(self, path, resume=None, on_prior=None):
        import tempfile

        self.path = os.fspath(path)
        self.partial = self.path + PARTIAL_SUFFIX
        self.done = DoneSet()
        src = resume_file(resume) if resume is not None else None
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(self.path) + ".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                if src is not None:
                    for rec in read_records(src):
                        if self.done.add(rec["path"]):
                            out.write(json.dumps(rec).encode() + b"\n")
                            if on_prior is not None:
                                on_prior(rec)
            os.replace(tmp, self.partial)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.fd = os.open(self.partial, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))

    def write(self, rec: dict) -> None:
        """Append one record (one write of the whole line)."""
        view = memoryview(json.dumps(rec).encode() + b"\n")
        while view:
            view = view[os.write(self.fd, view):]

    def finish(self, summary: dict) -> None:
        """Append the summary record, flush to disk and rename into place."""
        self.write(summary)
        os.fsync(self.fd)
        self.close()
        os.replace(self.partial, self.path)

    def close(self) -> None:
        """Stop writing; OUT.jsonl.partial stays for --resume."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
