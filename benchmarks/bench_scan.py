"""Scan benchmark (issue 3): mfparse.scan against picklescan and fickling, in one process on the
same files: files/s and MB/s per group of files, and a verdict comparison (no file that either
competitor flags may scan safe with mfparse).

Files (generated once, cached in benchmarks/.data/; MFPARSE_BENCH_DATA=... reuses another cache):
  llama.pth     ~2.7 GB fp16 LLaMA-shaped torch.save checkpoint (219 tensors)
  many.pth      20,000 small float32 tensors
  scan_corpus/benign/*     real writer outputs (torch.save of every kind, legacy, TorchScript,
                           numpy, plain pickles, joblib)
  scan_corpus/malicious/*  payloads built as bytes (one per technique; nothing is ever loaded)

Also timed on the same files: mfparse.scan with its fast path off (MFPARSE_SCAN_FASTPATH=0: the
full scan of every file) and reading each file with os.open/read/close alone (the floor of a
scanner that reads what it judges); the benign corpus is also timed without its TorchScript archive
(whose code Python's ast parses), and the slowest files of each corpus are listed.

Competitors (optional imports; a missing one is reported as "not installed"):
  picklescan: picklescan.scanner.scan_file_path; flagged = dangerous globals found
  fickling:   fickling.scan_zip_archive for zip files, fickling.scan_file otherwise (what its CLI
              does); flagged = severity above LIKELY_SAFE

Usage: [MFPARSE_SCAN_BIG_DIR=dir] python benchmarks/bench_scan.py [--repeat N] [--no-write] [--no-big]
       python benchmarks/bench_scan.py --cold-npz [--baseline OTHER_CHECKOUT]   (cold-cache scan of a 2.7 GB .npz)
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import logging
import os
import sys
import time
import warnings
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import common  # noqa: E402


# ---- files ---------------------------------------------------------------------------------

def ensure_big():
    """llama.pth and many.pth: read from MFPARSE_SCAN_BIG_DIR when set (e.g. another checkout's
    benchmarks/.data, read only), else generated into the cache as bench_listing.py does."""
    import numpy as np
    import torch

    out = {}
    big_dir = os.environ.get("MFPARSE_SCAN_BIG_DIR")
    for tag, specs, dtype in (("llama", common.llama_specs(), torch.float16),
                              ("many", common.many_specs(), torch.float32)):
        if big_dir and os.path.exists(os.path.join(big_dir, f"{tag}.pth")):
            out[tag] = common.Path(big_dir) / f"{tag}.pth"
            continue
        path = common.cached(f"{tag}.pth")
        if not path.exists():
            print(f"generating {tag}.pth ...", flush=True)
            sd = {name: torch.from_numpy(common.fill(shape, np.float32, i)).to(dtype)
                  for i, (name, shape) in enumerate(specs)}
            tmp = str(path) + ".tmp"
            torch.save(sd, tmp)
            os.replace(tmp, path)
            del sd
        out[tag] = path
    return out


def _benign(d):
    import collections
    import pickle

    import numpy as np
    import torch

    d.mkdir(parents=True, exist_ok=True)
    m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    sd = m.state_dict()
    opt = torch.optim.Adam(m.parameters())
    m(torch.ones(1, 64)).sum().backward()
    opt.step()
    torch.save(sd, d / "state_dict.pt")
    torch.save(sd, d / "state_dict_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "epoch": 3}, d / "checkpoint.pt")
    torch.save({"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.4.0", "state_dict": sd,
                "optimizer_states": [opt.state_dict()], "hyper_parameters": {"lr": 0.1}}, d / "lightning.ckpt")
    torch.save({str(t): torch.ones(5, dtype=t) for t in (torch.float16, torch.bfloat16, torch.int8, torch.bool,
                                                        torch.complex64, torch.float8_e4m3fn)}, d / "dtypes.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.rand(4, 4), 0.1, 10, torch.quint8)
    torch.save({"q": q, "size": torch.Size([2]), "dev": torch.device("cpu")}, d / "misc.pt")
    torch.jit.save(torch.jit.script(m), d / "scripted.pt")
    np.save(d / "array.npy", np.arange(1000.0))
    np.savez(d / "arrays.npz", a=np.arange(10), b=np.ones((3, 3)))
    (d / "builtins.pkl").write_bytes(pickle.dumps({"a": [1, 2.5, "s"], "s": {1}, "b": b"x"}, protocol=4))
    (d / "numpy.pkl").write_bytes(pickle.dumps({"a": np.arange(100)}, protocol=2))
    (d / "od_p0.pkl").write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=0))
    try:
        import joblib

        joblib.dump({"a": np.arange(1000)}, d / "arrays.joblib")
    except ImportError:
        pass


def _malicious(d):
    from pickle_asm import P, call_pickle, torch_zip, zip_bytes
    from scan_helpers import break_crc, rename_local, set_flags

    d.mkdir(parents=True, exist_ok=True)
    sys_ = call_pickle("os", "system", "echo pwned")
    files = {
        "reduce.pkl": sys_,
        "reduce.bin": call_pickle("posix", "system", "x"),
        "stack_global.pt": P(4).call("subprocess", "Popen", "x", stack_global=True).stop().data,
        "inst.pkl": P().mark().unicode("id").inst("subprocess", "check_output").stop().data,
        "obj.pkl": P().mark().glob("smtplib", "SMTP").unicode("h").obj().stop().data,
        "memo_put.pkl": P(2).unicode("builtins").put(5).unicode("os").put(0).pop().pop().get(0)
        .unicode("system").stack_global().args("x").reduce().stop().data,
        "memo_mixed.pkl": P(4).unicode("builtins").binput(5).unicode("os").memoize().pop().pop().binget(1)
        .unicode("system").stack_global().args("x").reduce().stop().data,
        "binstring.pkl": P(4).binstring("os").binstring("system").stack_global().args("x").reduce().stop().data,
        "computed.pkl": P(4).sglob("builtins", "str.join").unicode("").mark().unicode("o").unicode("s").list()
        .tuple2().reduce().unicode("system").stack_global().args("x").reduce().stop().data,
        "garbage.pkl": P(2).call("os", "system", "x").data + b"\xff\xfe\xfd",
        "frame.pkl": P(4).frame(11).raw(P().call("os", "system", "x", stack_global=True).data).stop().data,
        "dotted.pkl": P(4).sglob("pathlib", "os.system").args("x").reduce().stop().data,
        "dunder.pkl": P(4).sglob("builtins", "eval.__call__").args("1").reduce().stop().data,
        "asyncio.pkl": call_pickle("asyncio.unix_events", "_UnixSubprocessTransport._start", "x"),
        "resolver.pkl": call_pickle("pkgutil", "resolve_name", "os:system"),
        "pydoc.pkl": call_pickle("pydoc", "locate", "os.system"),
        "import.pkl": call_pickle("builtins", "__import__", "os"),
        "getattr.pkl": call_pickle("builtins", "getattr", "os"),
        "codetype.pkl": call_pickle("types", "CodeType", 0),
        "marshal.pkl": call_pickle("marshal", "loads", b"\xe3"),
        "nested.pkl": call_pickle("pickle", "loads", sys_),
        "partial.pkl": P(2).glob("functools", "partial").mark().glob("torch", "load").tuple().reduce()
        .args("x").reduce().stop().data,
        "pip.pkl": call_pickle("pip", "main", "install"),
        "runpy.pkl": call_pickle("runpy", "_run_code", "x"),
        "ctypes.pkl": call_pickle("ctypes", "CDLL", "x"),
        "fileio.pkl": call_pickle("_io", "FileIO", "x"),
        "urllib.pkl": call_pickle("urllib.request", "urlopen", "http://x"),
        "build_callable.pkl": P(2).glob("torch._utils", "_rebuild_tensor").none().empty_dict().unicode("__code__")
        .none().setitem().tuple2().build().stop().data,
        "ext.pkl": P(2).ext1(7).args("x").reduce().stop().data,
        "memo_bomb.pkl": P(2).none().long_binput(0xFFFFFFF0).stop().data,
        "torch_zip.pt": torch_zip(sys_),
        "data_txt.zip": zip_bytes({"model/data.txt": sys_}),
        "name_mismatch.pt": rename_local(torch_zip(sys_), "archive/data.pkl", "archive/data.txt"),
        "flag_0x1.pt": set_flags(torch_zip(sys_), "archive/data.pkl", 0x1),
        "flag_0x20.pt": set_flags(torch_zip(sys_), "archive/data.pkl", 0x20),
        "bad_crc.pt": break_crc(torch_zip(sys_), "archive/data.pkl"),
        "constants.pt": torch_zip(P(2).empty_dict().stop().data, extra={"constants.pkl": sys_}),
        "nested.zip": zip_bytes({"inner.zip": torch_zip(sys_)}),
        "payload.npy": (b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little")
                        + b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".ljust(117) + b"\n" + sys_),
        "payload.pkl.gz": gzip.compress(sys_),
        "polyglot.pt": sys_ + zip_bytes({"archive/data.pkl": P(2).empty_dict().stop().data}),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    # a legacy file whose 4th pickle is the payload
    magic = P(2).raw(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")).stop().data
    (d / "legacy4.pt").write_bytes(magic + P(2).int(1001).stop().data + P(2).empty_dict().stop().data + sys_
                                   + P(2).empty_list().stop().data)


def ensure_corpus():
    root = common.cached("scan_corpus")
    stamp = root / ".complete"
    if not stamp.exists():
        print("generating scan_corpus ...", flush=True)
        _benign(root / "benign")
        _malicious(root / "malicious")
        stamp.write_text("ok\n")
    return sorted((root / "benign").iterdir()), sorted((root / "malicious").iterdir())


# ---- scanners ------------------------------------------------------------------------------

def mfparse_scan(path):
    import mfparse

    r = mfparse.scan(path)
    return {"flagged": r.verdict == "unsafe", "error": r.verdict == "error", "verdict": r.verdict}


@contextlib.contextmanager
def full_scan():
    """mfparse.scan without its fast path (mfparse/scan/quick.py): what every file cost before it."""
    from mfparse.scan import quick

    old = quick.ENABLED
    quick.ENABLED = False
    try:
        yield
    finally:
        quick.ENABLED = old


def mfparse_full_scan(path):
    with full_scan():
        return mfparse_scan(path)


def read_only(path):
    """Open, read and close the file with os-level calls: the floor of any in-process scanner
    that reads what it judges (the C fast path does the same syscalls without the os module)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)
    return {"flagged": False, "error": False, "verdict": "read"}


def fast_path_share(files):
    """How many of the files the fast path judged by itself (the others took the full scan)."""
    import time as _time

    from mfparse.scan import ScanReport, quick

    return sum(isinstance(quick.scan(f, _time.perf_counter()), ScanReport) for f in files)


def per_file(fn, files, repeat):
    """{file name: median seconds of one scan} (for the slowest files of a group)."""
    out = {}
    with quiet():
        for f in files:
            out[f.name] = common.timeit(lambda: fn(f), repeat=max(repeat, 5) * 3, warmup=2)
    return out


def picklescan_scan(path):
    from picklescan.scanner import scan_file_path

    r = scan_file_path(str(path))
    return {"flagged": r.issues_count > 0 or r.infected_files > 0, "error": bool(r.scan_err),
            "verdict": "flagged" if r.issues_count else ("error" if r.scan_err else "clean")}


def fickling_scan(path):
    import fickling

    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(str(path), graceful=True).values())
    else:
        results = [fickling.scan_file(str(path), graceful=True)]
    flagged = any(not r.is_safe for r in results)
    error = any(r.errors for r in results)
    return {"flagged": flagged, "error": error, "verdict": "flagged" if flagged else ("error" if error else "clean")}


SCANNERS = {"mfparse": mfparse_scan, "picklescan": picklescan_scan, "fickling": fickling_scan}


def available():
    out = {"mfparse": mfparse_scan}
    for name, mod in (("picklescan", "picklescan.scanner"), ("fickling", "fickling")):
        try:
            __import__(mod)
            out[name] = SCANNERS[name]
        except ImportError:
            pass
    return out


@contextlib.contextmanager
def quiet():
    """Competitors print and log per file; keep their chatter out of the timing and output."""
    logging.disable(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    logging.disable(logging.NOTSET)


def run_group(fn, files, repeat):
    def once():
        for f in files:
            try:
                fn(f)
            except Exception:  # a competitor crashing on a hostile file still spends its time
                pass

    with quiet():
        return common.timeit(once, repeat=repeat, warmup=1)


def verdicts(fn, files):
    out = {}
    with quiet():
        for f in files:
            try:
                out[f.name] = fn(f)
            except Exception as e:
                out[f.name] = {"flagged": False, "error": True, "verdict": f"crash: {type(e).__name__}"}
    return out


def competitor_versions():
    from importlib import metadata

    v = common.versions("numpy", "torch")
    for name in ("picklescan", "fickling", "joblib"):
        try:
            v[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            v[name] = "not installed"
    return v


# ---- cold page cache: what a scan reads of a multi-GB .npz (issue 16, class 11) --------------

_COLD_CHILD = """
import sys, time
t0 = time.perf_counter()
import mfparse
assert mfparse.__file__.startswith(sys.argv[2]), mfparse.__file__
r = mfparse.scan(sys.argv[1])
print(r.verdict, time.perf_counter() - t0)
"""


def _resident_bytes(path) -> int:
    """Bytes of the file in the page cache (mincore over a fresh mapping)."""
    import ctypes
    import ctypes.util
    import mmap

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        vec = ctypes.create_string_buffer((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        libc.mincore(ctypes.c_void_p(addr), size, vec)
        libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec.raw) * mmap.PAGESIZE


def cold_npz(repeat: int, baseline: str | None, write: bool) -> None:
    """Scan benchmarks/.data/llama.npz (2.7 GB, np.savez layout) with the file dropped from the
    page cache before each run (posix_fadvise DONTNEED), in a fresh process; report the wall
    time and the bytes the scan brought into the page cache. --baseline DIR runs the same
    measurement with another checkout's mfparse (e.g. the code before issue 16)."""
    import statistics
    import subprocess

    import bench_npz

    path = common.cached("llama.npz").resolve()
    if not path.exists():
        print("generating llama.npz ...", flush=True)
        bench_npz.make(path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)  # dirty pages of a file just written are not dropped
    os.close(fd)
    size = os.path.getsize(path)
    root = os.path.dirname(HERE)
    rows = []
    rev = ""
    if baseline:
        rev = subprocess.run(["git", "-C", baseline, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    runs = [("this checkout", root)]
    if baseline:
        runs.append((f"baseline {baseline} ({rev})", os.path.abspath(baseline)))
    for label, where in runs:
        times, touched = [], []
        for _ in range(repeat):
            common.drop_cache(path)
            out = subprocess.run([sys.executable, "-c", _COLD_CHILD, str(path), where], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": where}, cwd=where, check=True).stdout.split()
            times.append(float(out[1]))
            touched.append(_resident_bytes(path))
            verdict = out[0]
        rows.append((label, verdict, f"{statistics.median(times):.2f}", f"{statistics.median(touched) / 1e6:.1f}",
                     f"{100 * statistics.median(touched) / size:.2f}"))
    cmd = "PYTHONPATH=. python benchmarks/bench_scan.py --cold-npz" + (f" --baseline {baseline}" if baseline else "")
    text = "\n".join([
        f"Command: `{cmd}`",
        f"Machine: {common.machine()}; file: benchmarks/.data/llama.npz ({size / 1e9:.2f} GB, "
        "219 stored fp16 members, zip64; bench_npz.make)",
        "",
        f"Each run: the file dropped from the page cache (posix_fadvise DONTNEED), then `mfparse.scan` in a fresh "
        f"process (import included); median of {repeat}. 'MB read' is what the page cache holds of the file after "
        "the scan (mincore): the bytes the scan made the kernel read, read-ahead included.",
        "",
        common.table(rows, ["mfparse", "verdict", "s (cold)", "MB read", "% of file"]),
        "",
        "Scan judges the zip directory, each member's .npy header and every pickle; a numeric member's data is "
        "never read (its CRC-32 is not verified during scan) and the map is read with MADV_RANDOM so that the "
        "kernel's read-around (8 MiB per fault on this machine) does not pull tensor data in.",
    ])
    print(text)
    if write:
        common.write_section("Scan: cold cache, 2.7 GB .npz (issue 16)", text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-big", action="store_true", help="skip the 2.7 GB llama.pth")
    ap.add_argument("--cold-npz", action="store_true", help="only the cold-cache scan of the 2.7 GB llama.npz")
    ap.add_argument("--baseline", help="with --cold-npz: another checkout whose mfparse is measured too")
    args = ap.parse_args()
    if args.cold_npz:
        cold_npz(args.repeat, args.baseline, not args.no_write)
        return

    scanners = available()
    extra = {"mfparse, full scan only": mfparse_full_scan, "read only (os.open/read/close)": read_only}
    benign, malicious = ensure_corpus()
    groups = [("benign corpus", benign), ("malicious corpus", malicious)]
    # the one TorchScript archive (torch.jit.save): its code is parsed with Python's ast, which alone
    # costs more than the rest of the corpus
    ts = [f for f in benign if f.name == "scripted.pt"]
    if ts:
        groups.insert(1, ("benign corpus without scripted.pt", [f for f in benign if f not in ts]))
    big = {} if args.no_big else ensure_big()
    for tag in ("many", "llama"):
        if tag in big:
            groups.append((f"{tag}.pth", [big[tag]]))

    rows = []
    speed = {}
    shares = {}
    for gname, files in groups:
        nbytes = sum(os.path.getsize(f) for f in files)
        small = nbytes < (1 << 30)
        tools = {**scanners, **extra} if small else scanners
        for sname, fn in tools.items():
            t = run_group(fn, files, args.repeat if small else max(3, args.repeat // 2))
            speed[(gname, sname)] = t
            rows.append((gname, len(files), f"{nbytes / 1e6:.1f}", sname, f"{t * 1e3:.2f}",
                         f"{len(files) / t:.0f}", f"{nbytes / 1e6 / t:.0f}"))
        base = speed[(gname, "mfparse")]
        for sname in scanners:
            if sname != "mfparse":
                rows.append((gname, "", "", f"mfparse speed-up vs {sname}", "", f"{speed[(gname, sname)] / base:.1f}x",
                             ""))
        shares[gname] = (fast_path_share(files), len(files))
    slow = {}
    for gname, files in groups[:3]:
        times = per_file(mfparse_scan, files, args.repeat)
        slow[gname] = sorted(times.items(), key=lambda kv: -kv[1])[:4]

    # verdicts on every file
    allfiles = benign + malicious + [big[t] for t in ("many", "llama") if t in big]
    table = {s: verdicts(fn, allfiles) for s, fn in scanners.items()}
    vrows = []
    missed = []
    for f in allfiles:
        ours = table["mfparse"][f.name]["verdict"]
        theirs = {s: table[s][f.name]["verdict"] for s in scanners if s != "mfparse"}
        if ours == "safe" and any(table[s][f.name]["flagged"] for s in theirs):
            missed.append(f.name)
        vrows.append((f.parent.name if f.parent.name in ("benign", "malicious") else "big", f.name, ours,
                      *theirs.values()))
    mal = [f.name for f in malicious]
    caught = {s: sum(table[s][n]["flagged"] for n in mal) for s in scanners}
    benign_names = [f.name for f in benign] + [big[t].name for t in ("many", "llama") if t in big]
    false_pos = {s: sum(table[s][n]["flagged"] for n in benign_names) for s in scanners}

    with full_scan():
        full_table = verdicts(mfparse_scan, allfiles)
    same_verdicts = all(table["mfparse"][f.name]["verdict"] == full_table[f.name]["verdict"] for f in allfiles)

    env = competitor_versions()
    # the competitors may come from a folder of their own (pip install --target DIR picklescan fickling)
    path = ":".join(p if p in (".", "") else "$DIR" for p in os.environ.get("PYTHONPATH", ".").split(":"))
    cmd = f"PYTHONPATH={path} python benchmarks/bench_scan.py " + " ".join(sys.argv[1:])
    where = " ($DIR: `pip install --target $DIR picklescan fickling`)" if "$DIR" in path else ""
    big_dir = os.environ.get("MFPARSE_SCAN_BIG_DIR")
    body = [
        f"Command: `{('MFPARSE_SCAN_BIG_DIR=' + big_dir + ' ') if big_dir else ''}{cmd.strip()}`{where}",
        f"Machine: {common.machine()} (load average {os.getloadavg()[0]:.1f} at the end of the run: the "
        "machine is shared, so single runs vary by up to 2x); versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
        "Each group is scanned file by file with each tool, in this process, warm page cache, median of "
        f"{args.repeat} runs after a warm-up. mfparse scans every zip member by content (first bytes, then "
        "the interpreter where they could start a pickle); picklescan and fickling read the members named "
        "like pickles. 'mfparse, full scan only' is mfparse.scan with its fast path off "
        "(MFPARSE_SCAN_FASTPATH=0: mfparse/scan/quick.py, csrc/mf_scan.c); 'read only' opens, reads and "
        "closes each file with the os module and judges nothing (the floor of reading in Python).",
        "",
        common.table(rows, ["files", "n", "MB", "tool", "ms", "files/s", "MB/s"]),
        "",
        f"Malicious files flagged (of {len(mal)}): " + ", ".join(f"{s} {caught[s]}" for s in scanners)
        + f". Benign files flagged (of {len(benign_names)}): " + ", ".join(f"{s} {false_pos[s]}" for s in scanners)
        + ".",
        "Malicious files a competitor flags that mfparse calls safe: "
        + (", ".join(n for n in missed if n in mal) or "none") + ". Benign files a competitor flags that "
        "mfparse calls safe: " + (", ".join(n for n in missed if n not in mal) or "none")
        + " (fickling flags every import outside the standard library, torch and numpy included, and every "
        "call of one; picklescan flags none of them).",
        "",
        "Goal (>= 10x picklescan's throughput): "
        + "; ".join(f"{g}: {speed[(g, 'picklescan')] / speed[(g, 'mfparse')]:.1f}x "
                    f"({'reached' if speed[(g, 'picklescan')] >= 10 * speed[(g, 'mfparse')] else 'missed'})"
                    for g, _ in groups if (g, "picklescan") in speed) + ".",
        "Files the fast path judged by itself (one C call: read, sniff, interpret, judge; the others take "
        "the full scan): " + "; ".join(f"{g} {a} of {n}" for g, (a, n) in shares.items()) + ". Verdicts with "
        "the fast path off: " + ("the same on every file" if same_verdicts else "DIFFERENT") + ".",
        "Slowest files for mfparse (median of one scan): "
        + "; ".join(f"{g}: " + ", ".join(f"{n} {t * 1e6:.0f} us" for n, t in items) for g, items in slow.items())
        + ".",
        "",
        "<details><summary>Verdict per file</summary>",
        "",
        common.table(vrows, ["set", "file", "mfparse", *[s for s in scanners if s != "mfparse"]]),
        "",
        "</details>",
    ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        common.write_section("Scan: mfparse.scan vs picklescan and fickling", text)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
