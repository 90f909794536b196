"""Command line: `mfparse inspect FILE [--json] [--stats] [--tree]`,
`mfparse scan PATH... [--json] [--recursive] [--jobs N]`, `mfparse bench MODEL ...`
(also `python -m mfparse`).

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfparse", description="Read model files without running them.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    ins = sub.add_parser("inspect", help="list a model file's tensors, dtypes, shapes and structure")
    ins.add_argument("files", nargs="+", metavar="FILE")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--stats", action="store_true", help="min/max/mean/std and zero fraction per tensor")
    ins.add_argument("--tree", action="store_true", help="show the checkpoint's structure")
    ins.set_defaults(func=_cmd_inspect)

    sc = sub.add_parser("scan", help="judge every pickle a file holds, without running it")
    sc.add_argument("paths", nargs="+", metavar="PATH")
    sc.add_argument("--json", action="store_true", help="machine-readable output")
    sc.add_argument("--recursive", "-r", action="store_true", help="scan every file under directories")
    sc.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="scan N files in parallel")
    sc.set_defaults(func=_cmd_scan)

    from mfparse.bench.cli import add_parser as add_bench  # light: imports no runtime

    add_bench(sub)
    return p


def _version() -> str:
    from mfparse import __version__

    return f"mfparse {__version__}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
