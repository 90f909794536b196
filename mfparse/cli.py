"""Command line: `mfparse inspect FILE... [--json|--jsonl] [--stats] [--tree] [--filter PATTERN] [--collapse]
[--sort KEY]`,
`mfparse scan PATH... [--json|--jsonl|--format sarif] [--sarif FILE] [--fail-on LEVEL] [--allow NAME]
[--policy FILE] [--jobs N] [--max-stdin-bytes N] [--engine local|dask] [--address URL] [--workers N]
[--report OUT.jsonl] [--resume OUT.jsonl] [--timeout S] [--memory-limit BYTES] [--retries N]`
(folders are walked; "-" is standard input; URLs, globs and @lists go through mfparse.scan_many),
`mfparse convert SRC DST` ("-" is standard input / standard output), `mfparse quantize`,
`mfparse diff A B` (one of them may be "-"), `mfparse bench MODEL ...` (also `python -m mfparse`).

Each subcommand lives in its own function; main() only parses arguments and dispatches.
Exit codes: 0 success, 1 a finding or failed comparison (scan, diff), 2 an error.
Every message says what is wrong ("PATH: no such file or directory"); every line of output,
text or JSON, ends with a newline.

Machine output (`--json`) has one shape whatever the number of inputs:
``{"schema_version", "mfparse_version", "command", "files": [one record per input], "summary"}``;
`--jsonl` prints the records one per line as each input finishes, then the summary record
(``{"schema_version", "mfparse_version", "command", "summary"}``). JSON Schemas: mfparse/schemas/.
"""

from __future__ import annotations

import errno
import os
import sys

from mfparse.errors import MFParseError


def error_text(e: BaseException, path=None) -> str:
    """A one-line message naming the file and what is wrong with it: an OSError as
    "PATH: no such file or directory" (never the bare path, never "[Errno 2]"), an MFParseError
    as it reads (it names the file and the byte offset), anything else as "PATH: message"."""
    if isinstance(e, OSError) and not isinstance(e, MFParseError):
        from mfparse.scan import os_error_text

        where = e.filename if e.filename is not None else path
        what = os_error_text(e)
        if isinstance(e, IsADirectoryError) and what == "is a directory":
            what += " (not a SavedModel or TF checkpoint folder; `mfparse scan` walks folders)"
        if where is None:
            return what
        return f"{os.fsdecode(where) if isinstance(where, (str, bytes, os.PathLike)) else where}: {what}"
    text = str(e) or type(e).__name__
    if path is not None and isinstance(e, MFParseError) and e.path is None:
        return f"{os.fsdecode(path)}: {text}"
    return text


def _print_error(e: BaseException, path=None) -> None:
    print(f"mfparse: {error_text(e, path)}", file=sys.stderr)


def _dump_json(obj) -> None:
    import json

    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


#: the name "-" gives standard input (inputs) or standard output (convert's DST)
STDIO = "-"
STDIN_NAME = "<stdin>"
#: the schema_version of inspect's JSON records and documents (mfparse/schemas/inspect.json)
INSPECT_SCHEMA_VERSION = 1


def _stdin_source(max_bytes: int):
    """What mfparse.open takes for standard input: the file object when a regular file is
    redirected into it (memory-mapped, no limit), else its bytes, read to the end (at most
    max_bytes: more is an OSError naming standard input)."""
    import stat

    from mfparse.io.local import read_all

    stream = sys.stdin.buffer
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return read_all(stream, max_bytes, STDIN_NAME)
    if os.isatty(fd):
        raise OSError(errno.EINVAL, "standard input is a terminal: pipe or redirect a file into it", STDIN_NAME)
    if stat.S_ISREG(st.st_mode) and os.lseek(fd, 0, os.SEEK_CUR) == 0:
        return stream
    return read_all(stream, max_bytes, STDIN_NAME)


def _envelope(command: str, files: list, summary: dict, **extra) -> dict:
    from mfparse import __version__

    return {"schema_version": INSPECT_SCHEMA_VERSION if command == "inspect" else _scan_schema_version(),
            "mfparse_version": __version__, "command": command, **extra, "files": files, "summary": summary}


def _scan_schema_version() -> int:
    from mfparse.scan.report import SCHEMA_VERSION

    return SCHEMA_VERSION


def _summary_record(command: str, summary: dict, **extra) -> dict:
    doc = _envelope(command, [], summary, **extra)
    del doc["files"]
    return doc


def _print_jsonl(obj) -> None:
    import json

    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _cmd_inspect(args) -> int:
    """Exit 0 when every input was listed, 2 when one could not be read (or a bad --filter).
    "-" reads standard input (a pipe is read to its end, at most --max-stdin-bytes)."""
    import mfparse
    from mfparse.inspect import add_totals, name_matcher, render_grand_total, render_text, summarize

    if args.files.count(STDIO) > 1:
        print("mfparse: standard input (-) can be read only once", file=sys.stderr)
        return 2
    filters = getattr(args, "filter", None)
    if filters:
        try:
            name_matcher(filters)
        except ValueError as e:
            print(f"mfparse: {e}", file=sys.stderr)
            return 2
    view = {"filters": filters, "sort": getattr(args, "sort", None), "collapse": getattr(args, "collapse", False)}
    fmt = "jsonl" if args.jsonl else ("json" if args.json else "text")
    status = 0
    records = []
    totals = {"files": 0, "listed": 0, "errors": 0, "tensor_count": 0, "parameters": 0, "data_bytes": 0}
    grand: dict = {}
    for path in args.files:
        name = STDIN_NAME if path == STDIO else path
        totals["files"] += 1
        try:
            src = _stdin_source(args.max_stdin_bytes) if path == STDIO else path
            with mfparse.open(src) as m:
                s = summarize(m, stats=args.stats, tree=args.tree and fmt != "text", **view)
                tree = m.tree() if args.tree and fmt == "text" else None
            if path == STDIO:
                s["path"] = STDIN_NAME
        except BrokenPipeError:
            raise
        except (MFParseError, OSError) as e:
            status = 2
            totals["errors"] += 1
            if fmt == "text":
                _print_error(e, name)
            else:
                rec = {"schema_version": INSPECT_SCHEMA_VERSION, "path": name, "error": error_text(e, name),
                       "error_type": type(e).__name__}
                if fmt == "jsonl":
                    _print_jsonl(rec)
                else:
                    records.append(rec)
            continue
        totals["listed"] += 1
        add_totals(grand, s)
        if fmt == "text":
            if len(args.files) > 1:
                print("=" * 78)
            print(render_text(s, stats=args.stats, tree_obj=tree), flush=True)
            continue
        rec = {"schema_version": INSPECT_SCHEMA_VERSION, **s}
        if fmt == "jsonl":
            _print_jsonl(rec)
        else:
            records.append(rec)
    for k in ("tensor_count", "parameters", "data_bytes"):
        totals[k] = grand.get(k, 0)
    totals.update(elements=grand.get("elements", 0), size=grand.get("size", 0),
                  totals_by_dtype=grand.get("totals_by_dtype", {}), exit_status=status)
    if fmt == "json":
        _dump_json(_envelope("inspect", records, totals))
    elif fmt == "jsonl":
        _print_jsonl(_summary_record("inspect", totals))
    elif len(args.files) > 1:
        print("=" * 78)
        print(render_grand_total(totals), flush=True)
    return status


def _scan_policy(args):
    from mfparse.scan.policy import Policy

    if args.policy:
        return Policy.from_file(args.policy, fail_on=args.fail_on, allow=args.allow or ())
    kw = {"fail_on": args.fail_on} if args.fail_on else {}
    return Policy(allow=args.allow or (), source="--allow", **kw)


def _cmd_scan(args) -> int:
    """Exit 1 when any file has a finding at or above --fail-on (this wins over errors), else 2
    when a file could not be judged, else 0. Folders are walked (--recursive is accepted and
    changes nothing); "-" reads standard input. With --engine dask, --report, --resume,
    --timeout, --memory-limit, or a URL, glob or @list among the sources, the files go through
    mfparse.scan_many (reports as they finish, not in input order)."""
    from mfparse import __version__
    from mfparse.scan import STDIN, render_text, scan_paths
    from mfparse.scan.policy import PolicyError

    if args.max_stdin_bytes < 0:
        print("mfparse: --max-stdin-bytes must be >= 0", file=sys.stderr)
        return 2
    try:
        policy = _scan_policy(args)
    except (PolicyError, OSError) as e:
        _print_error(e, args.policy)
        return 2
    fmt = args.format
    if args.sarif == STDIO:
        if fmt not in ("text", "sarif"):
            print("mfparse: --sarif - writes SARIF to standard output: it cannot be combined with "
                  f"--format {fmt}", file=sys.stderr)
            return 2
        fmt, args.sarif = "sarif", None
    counts = {"safe": 0, "unsafe": 0, "error": 0}
    severities = {"dangerous": 0, "suspicious": 0, "info": 0}
    tally = {"failed": 0, "unjudged": 0, "resumed": 0}
    reports = []
    keep = fmt in ("json", "sarif") or args.sarif

    def account(r) -> None:
        counts[r.verdict] += 1
        for sev, n in r.severity_counts().items():
            severities[sev] = severities.get(sev, 0) + n
        if policy.fails(r):
            tally["failed"] += 1
        if r.errors:
            tally["unjudged"] += 1

    def account_prior(rec: dict) -> None:  # a record carried over from the report resumed
        from mfparse.scan.report import ScanReport

        tally["resumed"] += 1
        account(ScanReport.from_dict(rec))

    journal = None
    engine = _engine_wanted(args)
    if engine:
        started = _scan_engine(args, policy, account_prior)
        if isinstance(started, int):
            return started
        journal, found = started
    else:
        found = scan_paths(args.paths, jobs=args.jobs, max_stdin_bytes=args.max_stdin_bytes, policy=policy)
    single = not engine and len(args.paths) == 1 and (args.paths[0] == STDIN or not os.path.isdir(args.paths[0]))
    try:
        for r in found:
            account(r)
            if keep:
                reports.append(r)
            if fmt == "text":
                print(render_text(r), flush=True)
            elif fmt == "jsonl":
                _print_jsonl(r.to_dict())
    except BrokenPipeError:
        raise
    except (OSError, ImportError, RuntimeError) as e:  # not a file's content: a worker process that could
        _print_error(e)                                # not start, a cluster that went away, no dask
        counts["error"] += 1
        tally["unjudged"] += 1
        if journal is not None:
            journal.close()  # OUT.jsonl.partial stays: --resume OUT.jsonl goes on from there
            print(f"mfparse: the report so far is in {journal.partial} (--resume {journal.path})", file=sys.stderr)
            journal = None
    failed, unjudged = tally["failed"], tally["unjudged"]
    status = 1 if failed else (2 if unjudged else 0)
    n = sum(counts.values())
    summary = {"files": n, **counts, "failed": failed, "findings": severities, "fail_on": policy.fail_on,
               "exit_status": status}
    if engine and args.resume:
        summary["resumed"] = tally["resumed"]
    if journal is not None:
        try:
            journal.finish(_summary_record("scan", summary, policy=policy.to_dict()))
        except OSError as e:
            _print_error(e, journal.path)
            status = summary["exit_status"] = 1 if status == 1 else 2
    if args.sarif:
        from mfparse.scan.sarif import to_sarif

        try:
            import json

            _write_text_atomic(args.sarif, json.dumps(to_sarif(reports, __version__, policy), indent=2) + "\n")
        except OSError as e:
            _print_error(e, args.sarif)
            status = max(status, 2) if status != 1 else 1
    if fmt == "json":
        _dump_json(_envelope("scan", [r.to_dict() for r in reports], summary, policy=policy.to_dict()))
    elif fmt == "jsonl":
        _print_jsonl(_summary_record("scan", summary, policy=policy.to_dict()))
    elif fmt == "sarif":
        from mfparse.scan.sarif import to_sarif

        _dump_json(to_sarif(reports, __version__, policy))
    else:
        quiet = counts["unsafe"] - failed  # unsafe files that do not fail the gate
        if not single:
            resumed = f" ({tally['resumed']} of them from {args.resume})" if tally["resumed"] else ""
            print(f"{n} file{'s' if n != 1 else ''}: {counts['safe']} safe, {counts['unsafe']} unsafe, "
                  f"{counts['error']} error{resumed}", flush=True)
        if quiet:
            print(f"not failing: {quiet} unsafe file{'s' if quiet != 1 else ''} with only suspicious findings "
                  f"(--fail-on {policy.fail_on})", flush=True)
    return status


def _engine_wanted(args) -> bool:
    """True when the sources or options need mfparse.scan_many rather than the plain scan."""
    from mfparse.io.base import is_glob, is_url

    if (args.engine != "local" or args.report or args.resume or args.timeout is not None
            or args.memory_limit is not None or args.address or args.workers is not None or args.retries is not None):
        return True
    return any(p.startswith("@") or is_url(p) or is_glob(p) for p in args.paths)


def _scan_engine(args, policy, account_prior):
    """(journal or None, ScanReports as they finish) for the engine route, or an exit status
    after an error message."""
    from mfparse.scan import STDIN
    from mfparse.scan.report import ScanReport

    if STDIN in args.paths:
        print("mfparse: standard input (-) cannot be scanned with --engine, --report, --resume, --timeout, "
              "--memory-limit or URL/glob/@list sources: scan it on its own (mfparse scan -)", file=sys.stderr)
        return 2
    if args.engine == "local" and (args.address or args.workers is not None):
        print("mfparse: --address and --workers are for --engine dask (the local engine takes --jobs)", file=sys.stderr)
        return 2
    if args.address and args.workers is not None:
        print("mfparse: --workers starts a local Dask cluster: it cannot be combined with --address", file=sys.stderr)
        return 2
    import mfparse.engines as engines
    from mfparse.engines.journal import Journal

    kw = {"timeout": args.timeout, "retries": engines.DEFAULT_RETRIES if args.retries is None else args.retries,
          "policy": policy}
    if args.engine == "local":
        kw["jobs"] = args.jobs
    else:
        kw.update(address=args.address, workers=args.workers)
    try:
        if args.memory_limit is not None:
            kw["memory_limit"] = engines.parse_bytes(args.memory_limit)
        if args.timeout is not None and not args.timeout > 0:
            raise ValueError("--timeout must be a positive number of seconds")
        if kw["retries"] < 0:
            raise ValueError("--retries must be >= 0")
    except ValueError as e:
        print(f"mfparse: {e}", file=sys.stderr)
        return 2
    journal = None
    target = args.report or args.resume
    if target:
        try:
            journal = Journal(target, resume=args.resume, on_prior=account_prior)
        except OSError as e:
            _print_error(e, target)
            return 2
        kw["resume"] = journal.done
    elif args.resume:
        kw["resume"] = args.resume
    found = engines.scan_many(args.paths, engine=args.engine, **kw)

    def reports():
        for d in found:
            if journal is not None:
                journal.write(d)  # before anything is printed: what was shown is in the report
            yield ScanReport.from_dict(d)

    return journal, reports()


def _write_text_atomic(path, text: str) -> None:
    """Write a report file atomically (a temporary file beside it, renamed into place)."""
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _fail(e, path=None) -> int:
    _print_error(e, path)
    return 2


def _stdin_file(stack) -> str:
    """A path holding standard input, for commands that read their input as a file (convert):
    /dev/stdin when a regular file is redirected into it, else a temporary file the input is
    copied into (removed when `stack` closes)."""
    import shutil
    import stat
    import tempfile

    fd = sys.stdin.fileno()
    if os.isatty(fd):
        raise OSError(errno.EINVAL, "standard input is a terminal: pipe or redirect a file into it", STDIN_NAME)
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and os.lseek(fd, 0, os.SEEK_CUR) == 0 and os.path.exists("/dev/stdin"):
        return "/dev/stdin"
    tmp = tempfile.NamedTemporaryFile(prefix="mfparse-stdin-", delete=False)
    stack.callback(_unlink_quietly, tmp.name)
    with tmp:
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
    return tmp.name


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _rename_input(e: BaseException, temp, shown: str) -> None:
    """Make an error about a temporary stand-in for standard input name standard input."""
    if temp is None:
        return
    if isinstance(e, MFParseError) and e.path in (temp, os.path.abspath(temp)):
        e.path = shown
    elif isinstance(e, OSError) and e.filename in (temp, os.path.abspath(temp)):
        e.filename = shown


def _cmd_convert(args) -> int:
    """SRC "-" reads standard input (a pipe is copied to a temporary file first); DST "-" writes
    the output to standard output (the writers seek, so it is written to a temporary file first
    and then copied out; ONNX, whose external data is a second file, cannot go there)."""
    import contextlib
    import tempfile

    from mfparse.convert import convert
    from mfparse.writers import WriteError

    to_stdout = args.dst == STDIO
    if to_stdout:
        if not args.to:
            print("mfparse: DST - (standard output) needs --to FORMAT", file=sys.stderr)
            return 2
        if args.to == "onnx":
            print("mfparse: ONNX output keeps its tensors in a second file (external data): it cannot be "
                  "written to standard output; give a file name", file=sys.stderr)
            return 2
        if sys.stdout.isatty():
            print("mfparse: refusing to write a model file to a terminal: redirect standard output (> FILE) or "
                  "pipe it", file=sys.stderr)
            return 2
    temp_src = None
    with contextlib.ExitStack() as stack:
        try:
            src = args.src
            if src == STDIO:
                src = temp_src = _stdin_file(stack)
            dst = args.dst
            if to_stdout:
                dst = os.path.join(stack.enter_context(tempfile.TemporaryDirectory(prefix="mfparse-convert-")),
                                   "output")
            r = convert(src, dst, args.to, overwrite=args.force, skip_unsupported=args.skip_unsupported,
                        progress=False if args.no_progress or to_stdout else None, fsync=args.fsync,
                        max_shard_size=args.max_shard_size, weights_only=args.weights_only)
            if to_stdout:
                _copy_to_stdout(dst)
        except (MFParseError, OSError, WriteError) as e:
            _rename_input(e, temp_src, STDIN_NAME)
            return _fail(e)
    if temp_src is not None:
        r.src = STDIN_NAME
    if to_stdout:
        r.dst = STDIO
    out = sys.stderr if to_stdout else sys.stdout
    if args.json:
        import json

        json.dump(r.to_dict(), out, indent=2)
        out.write("\n")
    else:
        where = "standard output" if to_stdout else r.dst
        what = f"{len(r.files)} files, " if r.files else ""
        print(f"wrote {where} ({r.format}): {what}{r.tensors} tensors, {r.bytes:,} bytes in {r.seconds:.2f} s",
              file=out)
        for name, why in r.skipped:
            print(f"  skipped {name}: {why}", file=out)
        for note in r.notes:
            print(f"  note: {note}", file=out)
    return 0


def _copy_to_stdout(path) -> None:
    import shutil

    sys.stdout.flush()
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 8 << 20)
    sys.stdout.buffer.flush()


def _cmd_quantize(args) -> int:
    from mfparse.quantize import quantize
    from mfparse.writers import WriteError

    try:
        rep = quantize(args.src, args.output, args.scheme, group_size=args.group_size, include=args.include,
                       exclude=args.exclude, prune=args.prune, prune_mode=args.prune_mode, threads=args.threads,
                       overwrite=args.force, progress=False if args.no_progress else None)
    except (MFParseError, OSError, WriteError) as e:
        return _fail(e)
    status = 0
    if args.report:
        try:
            with open(args.report, "w") as f:
                import json

                json.dump(rep.to_dict(), f, indent=2)
                f.write("\n")
        except OSError as e:
            status = _fail(e, args.report)
    if args.json:
        _dump_json(rep.to_dict())
    else:
        print(rep.table())
    return status


def _cmd_diff(args) -> int:
    """One of A and B may be "-": standard input (a pipe is read to its end, at most
    --max-stdin-bytes)."""
    from mfparse.diff import diff

    if args.a == STDIO and args.b == STDIO:
        print("mfparse: standard input (-) can be only one of A and B", file=sys.stderr)
        return 2
    try:
        a = _stdin_source(args.max_stdin_bytes) if args.a == STDIO else args.a
        b = _stdin_source(args.max_stdin_bytes) if args.b == STDIO else args.b
        rep = diff(a, b, atol=args.atol, rtol=args.rtol, strict=args.strict)
    except (MFParseError, OSError) as e:
        return _fail(e)
    if args.a == STDIO:
        rep.a = STDIN_NAME
    if args.b == STDIO:
        rep.b = STDIN_NAME
    if args.json:
        _dump_json(rep.to_dict())
    else:
        print(rep.text())
    return 0 if rep.equal else 1


# exit statuses, shown in each subcommand's --help
EXIT_CODES = {
    "inspect": "exit status: 0 every file listed; 2 a file could not be read (missing, unsupported, damaged)",
    "scan": "exit status: 0 nothing at or above --fail-on (known-benign and allowed imports never count); "
            "1 a finding at or above --fail-on in any file (this wins over errors); 2 a file could not be "
            "judged, or a bad --policy/--allow",
    "convert": "exit status: 0 written; 2 an error (nothing is left at DST)",
    "quantize": "exit status: 0 written; 2 an error (nothing is left at DST)",
    "diff": "exit status: 0 equal (within the tolerances); 1 different; 2 an error",
    "bench": "exit status: 0 every row ran and passed the accuracy thresholds (if any); 1 a row is over "
             "--max-abs-diff or under --min-cosine (this wins over 2); 2 an error (bad arguments, a model "
             "that does not load or run under torch fp32), or a requested runtime/precision that did not "
             "run (not installed, no GPU, export failed, ...)",  # = mfparse.bench.base.EXIT_STATUS_HELP
}


def _max_stdin(p) -> None:
    from mfparse.io.local import MAX_STREAM_BYTES

    p.add_argument("--max-stdin-bytes", type=int, default=MAX_STREAM_BYTES, metavar="N",
                   help=f"read at most N bytes from standard input or a pipe (default {MAX_STREAM_BYTES:,}); "
                        "a longer input is an error")


def _args_inspect(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="model files to list (any format mfparse reads), or model folders, index files or "
                        "shards (the whole model: a per-file table and the total); - reads standard input")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="one JSON document: {schema_version, mfparse_version, command, files: [one record per "
                          "FILE], summary} (mfparse/schemas/inspect.json)")
    out.add_argument("--jsonl", action="store_true",
                     help="JSON lines: one record per FILE as it is listed, then a summary record")
    p.add_argument("--stats", action="store_true", help="min/max/mean/std and zero fraction per tensor")
    p.add_argument("--tree", action="store_true", help="show the checkpoint's structure")
    p.add_argument("--filter", action="append", metavar="PATTERN",
                   help="list only tensors whose name matches: a glob on the whole name ('*q_proj*', "
                        "'model.layers.1?.*'), or re:REGEX searched in it ('re:layers\\.(0|31)\\.'); repeatable "
                        "(any may match); counts, totals and --stats then cover the matching tensors only")
    p.add_argument("--collapse", action="store_true",
                   help="one row for tensors whose names differ only in one number and that have the same dtype "
                        "and shape: model.layers.{0..31}.mlp.up_proj.weight  32 x  [11008, 4096] (bytes: all of "
                        "them); JSON gets a \"groups\" list beside \"tensors\"")
    p.add_argument("--sort", choices=("name", "size", "shape", "dtype", "offset"), default=None,
                   help="order the rows: name (natural: layers.2 before layers.10), size (largest first), shape "
                        "(equal shapes together), dtype, offset (in the file); default: file order")
    _max_stdin(p)
    p.set_defaults(func=_cmd_inspect)


def _args_scan(p) -> None:
    from mfparse.scan import MAX_STREAM_BYTES
    from mfparse.scan.policy import DEFAULT_FAIL_ON, FAIL_ON

    p.description = ("Judge every pickle the files hold, without running them. A folder is scanned with every "
                     "file under it; - reads standard input. Imports of known-benign classes (transformers' "
                     "TrainingArguments, argparse.Namespace, datetime, pathlib paths, ...) and names you allow "
                     "are reported as info and never fail the scan.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a file, a folder (walked), or - for standard input; also a glob, @LIST.txt (one source a "
                        "line) or a URL or prefix (s3://bucket/models/, https://host/model.bin, hf://org/model)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--format", choices=("text", "json", "jsonl", "sarif"), default="text",
                     help="output on standard output: text (default); json: one document {schema_version, "
                          "mfparse_version, command, policy, files: [one record per file], summary} "
                          "(mfparse/schemas/scan.json); jsonl: one record per file as it finishes, then a summary "
                          "record; sarif: a SARIF 2.1.0 log for code-scanning UIs")
    out.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    out.add_argument("--jsonl", dest="format", action="store_const", const="jsonl", help="same as --format jsonl")
    p.add_argument("--sarif", metavar="FILE",
                   help="also write the results as a SARIF 2.1.0 log to FILE (- for standard output, instead of "
                        "the text)")
    p.add_argument("--fail-on", choices=FAIL_ON, default=None,
                   help=f"the mildest severity that fails the scan (exit 1); default {DEFAULT_FAIL_ON}: every "
                        "import off the allowlist fails, since an unaudited name can run anything its module does; "
                        "dangerous fails only on names that reach code execution, files, the network or another "
                        "loader (picklescan's default)")
    p.add_argument("--allow", action="append", metavar="MODULE.NAME",
                   help="also allow this global (or MODULE.* for a whole module): its imports become info findings "
                        "(repeatable; dangerous names cannot be allowed)")
    p.add_argument("--policy", metavar="FILE.toml",
                   help="a TOML policy: fail_on, allow = [names], [severity] name = level, known_benign = "
                        "true|false (docs/architecture.md, 'Scan policy'); --fail-on overrides its fail_on, --allow adds "
                        "names")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="accepted for compatibility: folders are always scanned recursively")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="scan N files in parallel")
    p.add_argument("--max-stdin-bytes", type=int, default=MAX_STREAM_BYTES, metavar="N",
                   help=f"read at most N bytes from standard input or a pipe (default {MAX_STREAM_BYTES:,}); "
                        "a longer input is an error")
    # many files (mfparse.scan_many): any of these, or a URL, glob or @list among the sources, scans
    # through the engines, reports as they finish (docs/architecture.md, "Engines")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="local (default): --jobs processes on this machine; dask: a Dask cluster (--address, or a "
                        "local one of --workers processes); needs pip install 'mfparse[dask]'")
    p.add_argument("--address", metavar="tcp://HOST:PORT", help="--engine dask: the scheduler of an existing cluster")
    p.add_argument("--workers", type=int, metavar="N",
                   help="--engine dask without --address: start a local cluster of N worker processes (default: "
                        "one per CPU), closed at the end")
    p.add_argument("--report", metavar="OUT.jsonl",
                   help="write one JSON record per file as it finishes (the --jsonl records), then a summary record: "
                        "OUT.jsonl.partial while running, renamed to OUT.jsonl at the end")
    p.add_argument("--resume", metavar="OUT.jsonl",
                   help="skip the files already in this report (its .partial if a run was interrupted) and add the "
                        "others; the report written is --report, else this one")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds one file's scan may take: its scan process is killed, the file tried again "
                        "(--retries), then reported as an error")
    p.add_argument("--memory-limit", metavar="BYTES",
                   help="heap one scan process may use (e.g. 4GB, 512MiB); a file that needs more is an error")
    p.add_argument("--retries", type=int, metavar="N",
                   help="tries after the first for a file whose scan process crashed or timed out (default 1)")
    p.set_defaults(func=_cmd_scan)


def _args_convert(p) -> None:
    from mfparse.writers import FORMATS as OUT_FORMATS

    p.add_argument("src", metavar="SRC", help="the model to read: any file mfparse reads, or a model folder, "
                                              "index or shard (the whole model, never unpickled); - reads standard "
                                              "input")
    p.add_argument("dst", metavar="DST", help="the file to write, its extension names the format unless --to; or a "
                                              "folder (existing, ending in /, or without extension): safetensors "
                                              "shards + index as transformers' save_pretrained writes them; - writes "
                                              "to standard output (needs --to; not onnx)")
    p.add_argument("--to", choices=OUT_FORMATS, help="output format (default: from DST's extension)")
    p.add_argument("--max-shard-size", metavar="SIZE", default=None,
                   help="folder output: largest shard, e.g. 5GB, 500MB (default 50GB, as transformers 5)")
    p.add_argument("--weights-only", action="store_true",
                   help="folder output: do not copy config, tokenizer and other files of the source folder")
    p.add_argument("--force", action="store_true", help="replace DST if it exists (never SRC)")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="drop tensors the output format cannot hold instead of failing")
    p.add_argument("--fsync", action="store_true", help="flush the output to disk before renaming it into place")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="machine-readable result (on standard error when DST is -)")
    p.set_defaults(func=_cmd_convert)


def _args_quantize(p) -> None:
    p.add_argument("src", metavar="SRC", help="the model to quantize: any file mfparse reads, or a model "
                                              "folder, index or shard")
    p.add_argument("-o", "--output", required=True, metavar="DST",
                   help="output .safetensors; for a source of several files without a .safetensors DST, a folder "
                        "of one quantized shard per source file plus the index")
    p.add_argument("--scheme", choices=("int8", "int4", "fp8", "none"), default="int8",
                   help="int8 per channel, int4 per group, fp8 e4m3 per tensor; none = prune only")
    p.add_argument("--group-size", type=int, default=128, help="int4 group length (default 128)")
    p.add_argument("--include", action="append", metavar="GLOB", help="quantize only matching names (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="never quantize matching names (repeatable)")
    p.add_argument("--prune", type=float, default=0.0, metavar="FRACTION",
                   help="zero this fraction of the smallest-magnitude weights first")
    p.add_argument("--prune-mode", choices=("global", "layer"), default="global",
                   help="rank magnitudes over all weights (global) or per tensor (layer)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--report", metavar="FILE.json", help="also write the per-tensor report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=_cmd_quantize)


def _args_diff(p) -> None:
    p.add_argument("a", metavar="A", help="first model file, or a model folder, index or shard; - reads "
                                          "standard input")
    p.add_argument("b", metavar="B", help="second model (any format, one file or several: tensors are matched "
                                          "by name; - reads standard input)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    p.add_argument("--strict", action="store_true", help="dtype and metadata changes also count")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _max_stdin(p)
    p.set_defaults(func=_cmd_diff)


#: subcommand -> (one-line help, the function that adds its arguments). The bench subcommand
#: builds its own parser (mfparse/bench/cli.py).
COMMANDS = {
    "inspect": ("list a model file's tensors, dtypes, shapes and structure", _args_inspect),
    "scan": ("judge every pickle a file holds, without running it", _args_scan),
    "bench": ("benchmark one model under torch, ONNX Runtime and TensorRT", None),
    "convert": ("convert a model file to safetensors, torch, npz, gguf or onnx", _args_convert),
    "quantize": ("weight-only int8/int4/fp8 quantization (and pruning) to safetensors", _args_quantize),
    "diff": ("compare two model files (exit 0 equal, 1 different, 2 error)", _args_diff),
}


def _chosen_command(argv) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def build_parser(commands=None):
    """The argument parser, with the arguments of the subcommands in `commands` (default: all).
    The others are listed with their help line only, so that `mfparse scan` never imports the
    code of bench or convert."""
    import argparse

    p = argparse.ArgumentParser(prog="mfparse", description="Read model files without running them.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_arguments) in COMMANDS.items():
        if commands is not None and name not in commands:
            sub.add_parser(name, help=help_)
        elif add_arguments is None:
            from mfparse.bench.cli import add_parser as add_bench  # imports no runtime

            add_bench(sub, epilog_extra=EXIT_CODES[name])
        else:
            add_arguments(sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                                         epilog=EXIT_CODES[name]))
    return p


def _version() -> str:
    from mfparse import __version__

    return f"mfparse {__version__}"


class _Declared:
    """Stands in for an argparse parser in a command's `_args_*` function and keeps what argparse
    would put in the namespace when no option is given: each option's default (the first
    declaration of a dest wins, as in argparse) and the command's function."""

    description = None

    def __init__(self):
        self.values = {}
        self.positional = None

    def add_argument(self, *flags, **kw):
        if not flags[0].startswith("-"):
            self.positional = kw.get("dest", flags[0])
            return
        dest = kw.get("dest") or next((f[2:] for f in flags if f.startswith("--")), flags[0][1:]).replace("-", "_")
        if dest not in self.values:
            self.values[dest] = kw.get("default", False if kw.get("action") == "store_true" else None)

    def add_mutually_exclusive_group(self, **_kw):
        return self

    def set_defaults(self, **kw):
        self.values.update(kw)


#: commands that a hook runs on plain paths, parsed without argparse when nothing else is given
_PATHS_ONLY = ("scan", "inspect")


def _paths_only(argv):
    """The namespace of `mfparse scan|inspect PATH...` (paths only, "-" included), built from the
    command's own declarations without importing argparse (its import and parser cost about as
    much as scanning a small file); None for any other command line."""
    if len(argv) < 2 or argv[0] not in _PATHS_ONLY or any(a.startswith("-") and a != "-" for a in argv[1:]):
        return None
    from types import SimpleNamespace

    d = _Declared()
    COMMANDS[argv[0]][1](d)
    return SimpleNamespace(command=argv[0], **d.values, **{d.positional: list(argv[1:])})


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _paths_only(argv) or build_parser([_chosen_command(argv)]).parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python's exit-time flush of
        # stdout from failing again
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
