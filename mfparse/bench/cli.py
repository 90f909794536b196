"""The `mfparse bench` subcommand: arguments and the command itself (cli.py only registers it)."""

from __future__ import annotations

import sys

from mfparse.bench.base import DEFAULT_RUNTIMES, RUNTIME_TOKENS

EPILOG = """\
MODEL is a TorchScript file, a module:callable (or file.py:callable) returning a torch.nn.Module,
or an .onnx file. A benchmark runs the model: give only code you trust. --weights files are
read by mfparse (never unpickled). Runtimes: """ + "; ".join(f"{k}: {v}" for k, v in RUNTIME_TOKENS.items()) + """.
Example: mfparse bench mfparse.bench.examples:cnn --batch 1,8,32 --json cnn.json --plot cnn.png"""


def add_parser(sub, epilog_extra: str = "") -> None:
    import argparse

    p = sub.add_parser("bench", help="benchmark one model under torch, ONNX Runtime and TensorRT",
                       description="Benchmark one model under torch, ONNX Runtime and TensorRT: the same "
                                   "seeded inputs, warm-up apart, equal threads, accuracy vs torch fp32.",
                       epilog=EPILOG + ("\n\n" + epilog_extra if epilog_extra else ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="TorchScript file, module:callable, file.py:callable or .onnx file")
    p.add_argument("--weights", metavar="FILE", help="weights for a torch MODEL, any format mfparse reads")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME:]1x3x224x224[:DTYPE]",
                   help="an input's shape (repeat for several inputs); dim 0 is the batch")
    p.add_argument("--batch", metavar="1,8,32", help="batch sizes to sweep")
    p.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES), metavar="LIST",
                   help=f"comma-separated, of: {', '.join(RUNTIME_TOKENS)}, all (default: %(default)s)")
    p.add_argument("--precision", default="fp32", metavar="fp32,fp16,int8", help="(default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, metavar="N",
                   help="warm-up iterations after the first run, outside the statistics (default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iterations", type=int, metavar="N", help="timed iterations per row")
    g.add_argument("--duration", type=float, metavar="S", help="seconds of timed iterations per row (default 3)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for every runtime (default: usable cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write latency and throughput plots (needs matplotlib)")
    p.add_argument("--cache-dir", metavar="DIR", help="exported ONNX files and TensorRT engines "
                   "(default: $MFPARSE_CACHE/bench or ~/.cache/mfparse/bench)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                   help="torch.onnx exporter (auto: dynamo when onnxscript is installed)")
    p.add_argument("--opset", type=int, help="ONNX opset of the export")
    p.add_argument("--ort-spinning", action="store_true",
                   help="let ONNX Runtime's threads spin (off by default so they do not steal CPU)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from mfparse.bench import BenchError, render_table, run
    from mfparse.bench.models import parse_int_list
    from mfparse.errors import MFParseError

    def progress(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        batches = parse_int_list(args.batch, "--batch") if args.batch else None
        report = run(args.model, weights=args.weights, input_shapes=args.input_shape, batches=batches,
                     runtimes=args.runtimes.split(","), precisions=args.precision.split(","),
                     warmup=args.warmup, iterations=args.iterations, duration=args.duration,
                     threads=args.threads, seed=args.seed, cache_dir=args.cache_dir,
                     exporter=args.exporter, opset=args.opset, ort_spinning=args.ort_spinning,
                     progress=progress)
        print(render_table(report))
        if args.json:
            from mfparse.bench import write_json

            write_json(report, args.json)
            progress(f"wrote {args.json}")
        if args.plot:
            from mfparse.bench import plot

            plot(report, args.plot)
            progress(f"wrote {args.plot}")
    except (BenchError, MFParseError) as e:
        print(f"mfparse bench: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as e:
        print(f"mfparse bench: {e}", file=sys.stderr)
        return 2
    return 0
