#!/usr/bin/env bash
# benchmarks/gpu_check.sh: `mfparse bench` on a GPU machine with every runtime present there, on
# the tutorial's CNN and a ResNet-50-sized model (mfparse.bench.examples).
#
#   bash benchmarks/gpu_check.sh                    # results in benchmarks/.data/gpu_check/
#   WRITE_RESULTS=1 bash benchmarks/gpu_check.sh    # ... and the section of benchmarks/RESULTS.md
#
# Installs nothing and needs no network: it runs the Python named by $PYTHON (default .venv/bin/python
# when present, else python3) with whatever that Python has: torch built with CUDA, onnxruntime or
# onnxruntime-gpu, tensorrt 10+, cuda-python. What is missing shows up as rows with available=false
# and the reason. Every step has a timeout and the whole script a deadline ($BUDGET_S, default 285 s),
# so it ends in under 5 minutes; engines and ONNX files are cached (a second run is faster).
#
# Settings: GPU_CHECK_OUT (output folder), MFPARSE_CACHE (exports and engines), THREADS (CPU threads,
# default: all cores), BUDGET_S.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUTDIR=${GPU_CHECK_OUT:-benchmarks/.data/gpu_check}
mkdir -p "$OUTDIR"
export MFPARSE_CACHE=${MFPARSE_CACHE:-$OUTDIR/cache}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
THREADS=${THREADS:-$(nproc)}
BUDGET_S=${BUDGET_S:-285}
START=$(date +%s)

# 1. the C extension (mfparse reads --weights through it); built in place if missing, offline
if ! $PY -c "import mfparse._native" 2>/dev/null; then
    echo "== building the mfparse extension"
    $PY setup.py -q build_ext --inplace || { echo "gpu_check: cannot build mfparse"; exit 2; }
fi

# 2. what this machine has
$PY - <<'EOF' 2>&1 | tee "$OUTDIR/present.txt"
import importlib, importlib.util, shutil, subprocess
def have(name):
    return importlib.util.find_spec(name) is not None
print("gpu_check: what is present")
if shutil.which("nvidia-smi"):
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True)
    print("  nvidia-smi:", r.stdout.strip() or r.stderr.strip())
else:
    print("  nvidia-smi: not found")
try:
    import torch
    print(f"  torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}",
          f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
except Exception as e:
    print("  torch:", e)
try:
    import onnxruntime as ort
    print(f"  onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}")
except Exception as e:
    print("  onnxruntime:", e)
try:
    import tensorrt as trt
    print(f"  tensorrt {trt.__version__}")
except Exception as e:
    print(f"  tensorrt: {type(e).__name__}: {e}")
for name in ("cuda.bindings", "cuda", "onnxscript", "matplotlib"):
    try:
        print(f"  {name}: {'present' if have(name) else 'missing'}")
    except Exception as e:
        print(f"  {name}: {e}")
EOF

GPU_RT=torch-cuda,onnxruntime-cuda,onnxruntime-trt,tensorrt
CPU_RT=torch,onnxruntime-cpu
COMMON=(--threads "$THREADS" --quiet)
FAILED=()
REPORTS=()

step() {  # step NAME TIMEOUT_S ARGS...: one mfparse bench run, bounded by its timeout and the deadline
    local name=$1 tmo=$2
    shift 2
    local left=$(( BUDGET_S - ($(date +%s) - START) ))
    if (( left < 15 )); then
        echo "== $name: skipped (deadline: ${left}s left)"
        FAILED+=("$name (skipped)")
        return
    fi
    (( tmo > left )) && tmo=$left
    echo "== $name (timeout ${tmo}s): mfparse bench $*"
    timeout --signal=INT --kill-after=10 "$tmo" $PY -m mfparse bench "$@" "${COMMON[@]}" \
        --json "$OUTDIR/$name.json" --plot "$OUTDIR/$name.png"
    local rc=$?
    echo "== $name: exit $rc, $(( $(date +%s) - START ))s elapsed"
    # exit 2 also means "a requested runtime did not run" (the report is still written): keep the
    # report, and list the step
    [ -s "$OUTDIR/$name.json" ] && REPORTS+=("$OUTDIR/$name.json")
    [ $rc -ne 0 ] && FAILED+=("$name (exit $rc)")
    return 0
}

rm -f "$OUTDIR"/*.json "$OUTDIR"/*.png
# the tutorial's CNN: every GPU runtime in fp32 and fp16, then the CPU runtimes for comparison
step cnn-gpu 60 mfparse.bench.examples:cnn --runtimes "$GPU_RT" --precision fp32,fp16 --batch 1,64 \
    --iterations 300 --warmup 30
step cnn-cpu 25 mfparse.bench.examples:cnn --runtimes "$CPU_RT" --precision fp32 --batch 1,64 \
    --duration 1 --warmup 5
# ResNet-50-sized: TensorRT builds one engine per precision and batch; ORT's TensorRT EP only at
# batch 32 fp16, to stay inside the budget
step resnet50-gpu 120 mfparse.bench.examples:resnet50 --runtimes torch-cuda,onnxruntime-cuda,tensorrt \
    --precision fp32,fp16 --batch 1,32 --iterations 100 --warmup 10
step resnet50-ort-trt 45 mfparse.bench.examples:resnet50 --runtimes onnxruntime-trt --precision fp16 \
    --batch 32 --iterations 100 --warmup 10
step resnet50-cpu 30 mfparse.bench.examples:resnet50 --runtimes "$CPU_RT" --precision fp32 --batch 1 \
    --duration 2 --warmup 2

# 3. one table of everything that ran (benchmarks/RESULTS.md format)
if (( ${#REPORTS[@]} )); then
    WRITE=--no-write
    [ "${WRITE_RESULTS:-0}" = 1 ] && WRITE=
    $PY benchmarks/bench_runtimes.py --from-json "${REPORTS[@]}" $WRITE \
        --title "bench: GPU runtimes (gpu_check.sh)" --command "bash benchmarks/gpu_check.sh" \
        | tee "$OUTDIR/results.md"
fi
echo "gpu_check: $(( $(date +%s) - START ))s; reports in $OUTDIR"
if (( ${#FAILED[@]} )); then
    echo "gpu_check: steps that did not finish or had rows that did not run: ${FAILED[*]}"
    exit 1
fi
