"""Command line: `mfparse inspect FILE [--json] [--stats] [--tree]`,
`mfparse scan PATH... [--json] [--recursive] [--jobs N]`, `mfparse convert`, `mfparse quantize`,
`mfparse diff`, `mfparse bench MODEL ...` (also `python -m mfparse`).

Each subcommand lives in its own function; main() only parses arguments and dispatches.
Exit codes: 0 success, 1 a finding or failed comparison (scan, diff), 2 an error.
"""

from __future__ import annotations

import argparse
import json
import sys

from mfparse.errors import MFParseError


def _cmd_inspect(args) -> int:
    import mfparse
    from mfparse.inspect import render_text, summarize

    status = 0
    results = []
    for path in args.files:
        try:
            with mfparse.open(path) as m:
                s = summarize(m, stats=args.stats, tree=args.tree and args.json)
                tree = m.tree() if args.tree and not args.json else None
                if args.json:
                    results.append(s)
                else:
                    if len(args.files) > 1:
                        print("=" * 78)
                    print(render_text(s, stats=args.stats, tree_obj=tree))
        except (MFParseError, OSError) as e:
            status = 2
            if args.json:
                results.append({"path": path, "error": str(e), "error_type": type(e).__name__})
            else:
                print(f"mfparse: {e}", file=sys.stderr)
    if args.json:
        out = results[0] if len(results) == 1 else results
        json.dump(out, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    return status


def _cmd_scan(args) -> int:
    """Exit 0 when every file is safe, 1 when any is unsafe (unsafe wins over errors), 2 when
    there are only errors."""
    from mfparse.scan import render_text, scan_paths

    counts = {"safe": 0, "unsafe": 0, "error": 0}
    results = []
    try:
        for r in scan_paths(args.paths, recursive=args.recursive, jobs=args.jobs):
            counts[r.verdict] += 1
            if args.json:
                results.append(r.to_dict())
            else:
                print(render_text(r), flush=True)
    except OSError as e:
        print(f"mfparse: {e}", file=sys.stderr)
        counts["error"] += 1
    if args.json:
        out = results[0] if len(results) == 1 else results
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif sum(counts.values()) > 1:
        print(f"{sum(counts.values())} files: {counts['safe']} safe, {counts['unsafe']} unsafe, "
              f"{counts['error']} error")
    if counts["unsafe"]:
        return 1
    return 2 if counts["error"] else 0

def _fail(e) -> int:
    print(f"mfparse: {e}", file=sys.stderr)
    return 2


def _cmd_convert(args) -> int:
    from mfparse.convert import convert
    from mfparse.writers import WriteError

    try:
        r = convert(args.src, args.dst, args.to, overwrite=args.force, skip_unsupported=args.skip_unsupported,
                    progress=False if args.no_progress else None, fsync=args.fsync,
                    max_shard_size=args.max_shard_size, weights_only=args.weights_only)
    except (MFParseError, OSError, WriteError) as e:
        return _fail(e)
    if args.json:
        json.dump(r.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        what = f"{len(r.files)} files, " if r.files else ""
        print(f"wrote {r.dst} ({r.format}): {what}{r.tensors} tensors, {r.bytes:,} bytes in {r.seconds:.2f} s")
        for name, why in r.skipped:
            print(f"  skipped {name}: {why}")
        for note in r.notes:
            print(f"  note: {note}")
    return 0


def _cmd_quantize(args) -> int:
    from mfparse.quantize import quantize
    from mfparse.writers import WriteError

    try:
        rep = quantize(args.src, args.output, args.scheme, group_size=args.group_size, include=args.include,
                       exclude=args.exclude, prune=args.prune, prune_mode=args.prune_mode, threads=args.threads,
                       overwrite=args.force, progress=False if args.no_progress else None)
    except (MFParseError, OSError, WriteError) as e:
        return _fail(e)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(rep.to_dict(), f, indent=2)
    if args.json:
        json.dump(rep.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(rep.table())
    return 0


def _cmd_diff(args) -> int:
    from mfparse.diff import diff

    try:
        rep = diff(args.a, args.b, atol=args.atol, rtol=args.rtol, strict=args.strict)
    except (MFParseError, OSError) as e:
        return _fail(e)
    if args.json:
        json.dump(rep.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(rep.text())
    return 0 if rep.equal else 1


# exit statuses, shown in each subcommand's --help
EXIT_CODES = {
    "inspect": "exit status: 0 every file listed; 2 a file could not be read (missing, unsupported, damaged)",
    "scan": "exit status: 0 every file safe; 1 a finding in any file (unsafe wins over errors); "
            "2 a file could not be judged",
    "convert": "exit status: 0 written; 2 an error (nothing is left at DST)",
    "quantize": "exit status: 0 written; 2 an error (nothing is left at DST)",
    "diff": "exit status: 0 equal (within the tolerances); 1 different; 2 an error",
    "bench": "exit status: 0 the report was produced; 2 an error",
}


def _args_inspect(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="model files to list (any format mfparse reads), or model folders, index files or "
                        "shards (the whole model: a per-file table and the total)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--stats", action="store_true", help="min/max/mean/std and zero fraction per tensor")
    p.add_argument("--tree", action="store_true", help="show the checkpoint's structure")
    p.set_defaults(func=_cmd_inspect)


def _args_scan(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to judge")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--recursive", "-r", action="store_true", help="scan every file under directories")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="scan N files in parallel")
    p.set_defaults(func=_cmd_scan)


def _args_convert(p) -> None:
    from mfparse.writers import FORMATS as OUT_FORMATS

    p.add_argument("src", metavar="SRC", help="the model to read: any file mfparse reads, or a model folder, "
                                              "index or shard (the whole model, never unpickled)")
    p.add_argument("dst", metavar="DST", help="the file to write, its extension names the format unless --to; or a "
                                              "folder (existing, ending in /, or without extension): safetensors "
                                              "shards + index as transformers' save_pretrained writes them")
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
    p.add_argument("--json", action="store_true", help="machine-readable result")
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
    p.add_argument("a", metavar="A", help="first model file, or a model folder, index or shard")
    p.add_argument("b", metavar="B", help="second model (any format, one file or several: tensors are matched "
                                          "by name)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    p.add_argument("--strict", action="store_true", help="dtype and metadata changes also count")
    p.add_argument("--json", action="store_true", help="machine-readable output")
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


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The argument parser, with the arguments of the subcommands in `commands` (default: all).
    The others are listed with their help line only, so that `mfparse scan` never imports the
    code of bench or convert."""
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


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser([_chosen_command(argv)]).parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
