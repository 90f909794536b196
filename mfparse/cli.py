"""Command line: `mfparse inspect FILE [--json] [--stats] [--tree]`, `mfparse bench MODEL ...`
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
