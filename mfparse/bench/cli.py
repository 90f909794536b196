"""The `mfparse bench` subcommand: arguments and the command itself (cli.py only registers it)."""

from __future__ import annotations

import sys

from mfparse.bench.base import EXIT_STATUS_HELP, RUNTIME_TOKENS

EPILOG = """\
MODEL is a TorchScript file, a module:callable (or file.py:callable) returning a torch.nn.Module,
or an .onnx file. A benchmark runs the model: give only code you trust. --weights files are
read by mfparse (never unpickled); their names may carry a wrapper's prefix (module., model.,
_orig_mod., ...). Runtimes (--runtimes):
""" + "".join(f"  {k:<17} {v}\n" for k, v in RUNTIME_TOKENS.items()) + """  all               every one of them
  auto (default)    those available here: torch for torch models, onnxruntime when installed,
                    the GPU runtimes where a GPU and their package are present
A runtime named explicitly is required: when it cannot run, its row says why and the exit
status is 2.
Accuracy gates (none by default): --max-abs-diff 1e-4 --min-cosine int8=0.99 (a plain number
applies to every precision, PRECISION=NUMBER to one; repeat the option).
Examples:
  mfparse bench mfparse.bench.examples:cnn --batch 1,8,32 --json cnn.json --plot cnn.png
  mfparse bench mfparse.bench.examples:tiny_lm --seq-len 128 --precision fp32,int8 \\
      --max-abs-diff fp32=1e-4 --min-cosine int8=0.99     # a CI gate: exit 1 when over"""


def add_parser(sub, epilog_extra: str = "") -> None:
    """Register `bench` on the subparsers `sub`; `epilog_extra` is mfparse.cli's line of exit
    statuses (the same text as EXIT_STATUS_HELP, which is shown when none is given)."""
    import argparse
    import textwrap

    p = sub.add_parser("bench", help="benchmark one model under torch, ONNX Runtime and TensorRT",
                       description="Benchmark one model under torch, ONNX Runtime and TensorRT: the same "
                                   "seeded inputs, warm-up apart, equal threads, accuracy vs torch fp32.",
                       epilog=EPILOG + "\n\n" + textwrap.fill(epilog_extra or EXIT_STATUS_HELP, 96,
                                                                break_on_hyphens=False, break_long_words=False),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="TorchScript file, module:callable, file.py:callable or .onnx file")
    p.add_argument("--weights", metavar="FILE", help="weights for a torch MODEL, any format mfparse reads")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME:]1x3x224x224[:DTYPE]",
                   help="an input's shape (repeat for several inputs); dim 0 is the batch")
    p.add_argument("--batch", metavar="1,8,32", help="batch sizes to sweep")
    p.add_argument("--runtimes", default="auto", metavar="LIST",
                   help=f"comma-separated, of: {', '.join(RUNTIME_TOKENS)}, all; or auto: those available "
                        "here (default: %(default)s)")
    p.add_argument("--precision", default="fp32", metavar="fp32,fp16,int8",
                   help="precisions to run, comma-separated (default: %(default)s)")
    p.add_argument("--seq-len", type=int, metavar="N",
                   help="sequence length (dim 1) of integer token-id inputs; rows then also give tokens/s")
    p.add_argument("--max-abs-diff", action="append", metavar="[PREC=]X",
                   help="fail (exit 1) a row whose max |output - reference| exceeds X; PREC= limits it to "
                        "one precision; repeatable (default: no limit)")
    p.add_argument("--min-cosine", action="append", metavar="[PREC=]X",
                   help="fail (exit 1) a row whose cosine similarity to the reference is below X; "
                        "repeatable like --max-abs-diff (default: no limit)")
    p.add_argument("--warmup", type=int, default=5, metavar="N",
                   help="warm-up iterations after the first run, outside the statistics (default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iterations", type=int, metavar="N", help="timed iterations per row")
    g.add_argument("--duration", type=float, metavar="S", help="seconds of timed iterations per row (default 3)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for every runtime (default: usable cores)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the inputs and of an untrained model's weights (default: %(default)s)")
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
    p.add_argument("--verbose", "-v", action="store_true",
                   help="print on stderr everything torch.onnx printed while exporting (and the int8 "
                        "quantization's log); without it a failed export is one line")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    """The command: prints the table (and writes --json/--plot); returns the exit status
    (mfparse.bench.base.EXIT_STATUS_HELP)."""
    from mfparse.bench import BenchError, render_table, run
    from mfparse.bench.base import EXIT_ERROR
    from mfparse.bench.models import parse_int_list
    from mfparse.errors import MFParseError

    def progress(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def log(title, text):
        print(f"---- {title}: captured output ----\n{text.rstrip()}\n---- end of {title} ----",
              file=sys.stderr, flush=True)

    try:
        batches = parse_int_list(args.batch, "--batch") if args.batch else None
        report = run(args.model, weights=args.weights, input_shapes=args.input_shape, batches=batches,
                     runtimes=args.runtimes.split(","), precisions=args.precision.split(","),
                     warmup=args.warmup, iterations=args.iterations, duration=args.duration,
                     threads=args.threads, seed=args.seed, cache_dir=args.cache_dir,
                     exporter=args.exporter, opset=args.opset, ort_spinning=args.ort_spinning,
                     progress=progress, seq_len=args.seq_len, max_abs_diff=args.max_abs_diff,
                     min_cosine=args.min_cosine, log=log if args.verbose else None)
        print(render_table(report), flush=True)
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
        return EXIT_ERROR
    except BrokenPipeError:
        raise
    except OSError as e:
        print(f"mfparse bench: {e}", file=sys.stderr)
        return EXIT_ERROR
    return int(report["verdict"]["exit_code"])
