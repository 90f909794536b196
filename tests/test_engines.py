"""mfparse.scan_many and `mfparse scan --engine ...`: many files on a local pool or a REAL Dask
cluster (a scheduler and two workers started here as processes on 127.0.0.1), every verdict the
local scan's, every file reported exactly once, even when a worker is killed mid-run, a file
crashes or hangs its scan, or a run is resumed.

Misbehaving files are made by test-only scanners (tests/engine_hooks.py, passed as
scanner="engine_hooks:..."), never by hooks in mfparse. Malicious files are bytes built with
tests/pickle_asm.py; nothing is ever unpickled.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import mfparse
from mfparse.engines.journal import PARTIAL_SUFFIX, key_of
from mfparse.scan import scan_paths
from helpers import UNDER_ASAN
from pickle_asm import call_pickle, torch_zip, zip_bytes
from servers import DaskCluster, Server, s3_server

distributed = pytest.importorskip("distributed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, TESTS])}


# ---- the corpus ------------------------------------------------------------------------------

def _kinds() -> dict:
    """{file name: bytes} of one of each kind: real writers' output and hostile bytes."""
    import io

    import torch
    from safetensors.numpy import save as st_save

    def torch_bytes(obj) -> bytes:
        bio = io.BytesIO()
        torch.save(obj, bio)
        return bio.getvalue()

    def npz_bytes(**arrays) -> bytes:
        bio = io.BytesIO()
        np.savez(bio, **arrays)
        return bio.getvalue()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = torch.nn.Linear(3, 2)
        out = {
            "weights.pt": torch_bytes({"w": torch.zeros(2, 3), "b": torch.ones(2), "epoch": 3}),
            "linear.pth": torch_bytes(lin.state_dict()),
            "legacy.bin": b"",  # replaced below
            "model.safetensors": st_save({"w": np.ones((2, 3), np.float32)}),
            "arrays.npz": npz_bytes(x=np.arange(6, dtype=np.int16), y=np.ones(2)),
            "plain.pkl": pickle.dumps({"a": [1, 2, 3], "b": "text"}, protocol=4),
            "os_system.pkl": call_pickle("os", "system", "echo hi"),
            "popen.bin": call_pickle("subprocess", "Popen", "x"),
            "unknown_class.pkl": call_pickle("mylab.config", "Settings", "x"),
            "evil.pt": torch_zip(call_pickle("builtins", "eval", "1+1")),
            "nested.zip": zip_bytes({"inner/data.pkl": call_pickle("os", "popen", "id")}),
            "payload.pkl.gz": gzip.compress(call_pickle("posix", "system", "x"), mtime=0),
            "truncated.pkl": call_pickle("collections", "OrderedDict")[:-3],
            "README.md": b"# a model\n\nnothing to see\n",
            "config.json": b'{"hidden_size": 8, "architectures": ["X"]}\n',
            "model.bin": b"",  # an empty weights file: an error
        }
        bio = io.BytesIO()
        torch.save({"w": torch.zeros(2)}, bio, _use_new_zipfile_serialization=False)
        out["legacy.bin"] = bio.getvalue()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of 320 small files (20 sub-folders of the 16 kinds) and the local scan's record
    of each, by path."""
    root = tmp_path_factory.mktemp("corpus")
    kinds = _kinds()
    for i in range(20):
        sub = root / f"d{i:02d}"
        sub.mkdir()
        for name, data in kinds.items():
            (sub / name).write_bytes(data)
    local = {r.path: _comparable(r.to_dict()) for r in scan_paths([str(root)])}
    assert len(local) == 20 * len(kinds)
    verdicts = {os.path.basename(p): r["verdict"] for p, r in local.items()}
    assert verdicts["os_system.pkl"] == verdicts["evil.pt"] == verdicts["nested.zip"] == "unsafe"
    assert verdicts["weights.pt"] == verdicts["model.safetensors"] == verdicts["README.md"] == "safe"
    assert verdicts["truncated.pkl"] == verdicts["model.bin"] == "error"
    return str(root), local


def _comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "seconds"}


def validate_report_lines(lines: list) -> None:
    """Every line of a --report file against mfparse/schemas/scan.json (jsonl_line)."""
    js = pytest.importorskip("jsonschema")
    from mfparse import schemas

    v = js.Draft202012Validator(schemas.sub("scan", "jsonl_line"))
    for x in lines:
        v.validate(x)


def _by_path(recs) -> dict:
    """{path: record} after asserting that no path came twice."""
    out = {}
    for r in recs:
        assert r["path"] not in out, f"{r['path']} reported twice"
        out[r["path"]] = r
    return out


def assert_same_as_local(recs, local: dict) -> None:
    got = _by_path(recs)
    assert sorted(got) == sorted(local), "files lost or added"
    for path, rec in got.items():
        assert _comparable(rec) == local[path], path


# ---- a real cluster: a scheduler and two workers on 127.0.0.1 -------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # allowed-failures 1: a batch that killed two workers is given up on (then split);
    # idle-timeout and --death-timeout: should this test process die without its teardown,
    # the scheduler leaves after 5 idle minutes and the workers a minute after it
    c = DaskCluster(tmp_path_factory.mktemp("dask"),
                    {**ENV, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
                     "DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT": "300s",
                     "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "30s"})
    try:
        c.add_worker()
        c.add_worker()
        c.wait_for_workers(2)
        yield c
    finally:
        c.close()


@pytest.fixture
def two_workers(cluster):
    """The cluster with two live workers (a test before may have killed one)."""
    while len(cluster.alive_workers()) < 2:
        cluster.add_worker()
    cluster.wait_for_workers(2)
    return cluster


def _wait_workers_exactly(cluster, n: int) -> None:
    with distributed.Client(cluster.address, timeout=60) as c:
        deadline = time.monotonic() + 120
        while len(c.nthreads()) != n:
            assert time.monotonic() < deadline, c.nthreads()
            time.sleep(0.2)


# ---- the Dask engine on a real cluster ------------------------------------------------------

def test_dask_verdicts_are_the_local_scans(corpus, two_workers):
    root, local = corpus
    recs = list(mfparse.scan_many([root], engine="dask", address=two_workers.address, batch_size=16))
    assert_same_as_local(recs, local)


def test_dask_worker_killed_mid_run_loses_nothing_and_doubles_nothing(corpus, two_workers):
    root, local = corpus
    victim = two_workers.alive_workers()[0]
    recs = []
    killed_after = None
    for rec in mfparse.scan_many([root], engine="dask", address=two_workers.address, batch_size=8,
                                 scanner="engine_hooks:slow"):
        recs.append(rec)
        if len(recs) == 40:  # batches are in flight on both workers: kill one (nanny, worker, child)
            two_workers.kill(victim)
            killed_after = len(recs)
    assert killed_after == 40 and victim.poll() is not None
    assert len(recs) > killed_after + 100  # the rest was scanned by the surviving worker
    assert_same_as_local(recs, local)


@pytest.mark.skipif(UNDER_ASAN, reason="ASan turns the hooks' SIGSEGV into exit status 1")
def test_dask_crashing_files_are_isolated_after_bounded_retries(tmp_path, corpus, two_workers):
    root, local = corpus
    sub = os.path.join(root, "d00")
    (tmp_path / "crash_exit.pkl").write_bytes(pickle.dumps(1))
    (tmp_path / "segv_here.pkl").write_bytes(pickle.dumps(2))
    recs = list(mfparse.scan_many([sub, str(tmp_path)], engine="dask", address=two_workers.address, batch_size=4,
                                  retries=2, scanner="engine_hooks:misbehave"))
    got = _by_path(recs)
    crash, segv = got.pop(str(tmp_path / "crash_exit.pkl")), got.pop(str(tmp_path / "segv_here.pkl"))
    assert crash["verdict"] == segv["verdict"] == "error"
    assert crash["errors"] == ["the scan process exited with status 70 (3 tries): the file cannot be judged"]
    assert segv["errors"][0].startswith("the scan process killed by SIGSEGV")
    assert "(3 tries)" in segv["errors"][0]
    assert_same_as_local(got.values(), {p: r for p, r in local.items() if p.startswith(sub + os.sep)})
    _wait_workers_exactly(two_workers, 2)  # the crashes took scan children, never a worker


def test_dask_hanging_file_hits_the_timeout(tmp_path, corpus, two_workers):
    root, local = corpus
    sub = os.path.join(root, "d01")
    (tmp_path / "hang_forever.pkl").write_bytes(pickle.dumps(3))
    t0 = time.monotonic()
    recs = list(mfparse.scan_many([str(tmp_path), sub], engine="dask", address=two_workers.address, batch_size=4,
                                  timeout=3, retries=0, scanner="engine_hooks:misbehave"))
    assert time.monotonic() - t0 < 120  # the hang is an hour long
    got = _by_path(recs)
    hung = got.pop(str(tmp_path / "hang_forever.pkl"))
    assert hung["verdict"] == "error"
    assert hung["errors"] == ["scan timed out after 3 s (1 try): the file cannot be judged"]
    assert_same_as_local(got.values(), {p: r for p, r in local.items() if p.startswith(sub + os.sep)})


def test_dask_file_that_kills_its_worker_is_split_out(tmp_path, corpus, two_workers):
    """isolate=False scans in the worker itself: the file kills it each time its batch runs;
    Dask gives up on the batch (KilledWorker), the client halves it until the file is alone."""
    root, local = corpus
    sub = os.path.join(root, "d02")
    for name in ("a.pkl", "b.pkl", "killer.pkl", "c.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps(name))
    recs = list(mfparse.scan_many([str(tmp_path), sub], engine="dask", address=two_workers.address, batch_size=4,
                                  isolate=False, scanner="engine_hooks:misbehave"))
    got = _by_path(recs)
    killer = got.pop(str(tmp_path / "killer.pkl"))
    assert killer["verdict"] == "error"
    assert killer["errors"][0].startswith("the scan killed its Dask worker each time it ran"), killer["errors"]
    for name in ("a.pkl", "b.pkl", "c.pkl"):
        rec = got.pop(str(tmp_path / name))
        assert rec["verdict"] == "safe", rec
    assert_same_as_local(got.values(), {p: r for p, r in local.items() if p.startswith(sub + os.sep)})


def test_cli_engine_dask_report_and_exit_status(tmp_path, corpus, two_workers):
    root, local = corpus
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "mfparse", "scan", root, "--engine", "dask", "--address",
                        two_workers.address, "--report", str(out), "--format", "jsonl"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 1, r.stderr  # unsafe files in the corpus
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    validate_report_lines(lines)
    *files, summary = lines
    assert_same_as_local(files, local)
    assert summary["summary"]["files"] == len(local) and summary["summary"]["exit_status"] == 1
    assert summary["summary"]["unsafe"] == sum(v["verdict"] == "unsafe" for v in local.values())
    stdout = [json.loads(x) for x in r.stdout.splitlines()]
    assert stdout == lines  # the same records on standard output, in the same order
    assert not os.path.exists(str(out) + PARTIAL_SUFFIX)


# ---- the local engine, sources, resume (no cluster) ------------------------------------------

def test_local_engine_verdicts_are_the_local_scans(corpus):
    root, local = corpus
    assert_same_as_local(mfparse.scan_many(root, jobs=2), local)


def test_every_file_once_whatever_the_sources(corpus, tmp_path, monkeypatch):
    root, local = corpus
    sub = os.path.join(root, "d03")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# sources\n\n  {sub}  \n{sub}/weights.pt\n@{tmp_path / 'list2.txt'}\n")
    (tmp_path / "list2.txt").write_text(f"{root}/d0[34]/*.pt\n{root}/**/missing-*.xyz\n")
    monkeypatch.chdir(root)
    recs = list(mfparse.scan_many([sub, f"@{lst}", "d03/weights.pt", "./d03/../d03/evil.pt", "@nope.txt"], jobs=2,
                                  batch_size=5))
    got = _by_path(recs)
    assert got.pop(f"{root}/**/missing-*.xyz")["errors"] == ["no file matches this pattern"]
    assert got.pop("@nope.txt")["errors"] == ["cannot read this list: no such file or directory"]
    want = {p for p in local if p.startswith(sub + os.sep)} | {f"{root}/d04/{n}" for n in ("weights.pt", "evil.pt")}
    assert set(got) == want  # d03 once (listed four ways), d04's *.pt from the glob
    for p in want:
        assert _comparable(got[p]) == local[p]


def test_listing_is_lazy_and_the_window_bounded(tmp_path):
    pulled = []

    def sources():
        for i in range(100_000):
            pulled.append(i)
            yield str(tmp_path / f"absent-{i}.pt")

    it = mfparse.scan_many(sources(), jobs=1, batch_size=4, window=2)
    first = [next(it) for _ in range(5)]
    assert all(r["verdict"] == "error" and r["errors"] == ["cannot read: no such file or directory"] for r in first)
    assert len(pulled) <= 4 * 4  # the window (2 batches) and the next ones: never the whole listing
    it.close()


@pytest.fixture
def hooks_importable(monkeypatch):
    """Scan children of the local engine inherit this environment: let them import engine_hooks."""
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's shadow memory does not fit under the scan child's RLIMIT_DATA")
def test_local_engine_timeout_crash_and_memory_limit(tmp_path, hooks_importable):
    for name in ("ok.pkl", "crash_me.pkl", "hang_me.pkl", "hog_me.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps(name))
    recs = _by_path(mfparse.scan_many(str(tmp_path), jobs=2, timeout=3, retries=1, memory_limit="512MiB",
                                      scanner="engine_hooks:misbehave"))
    assert recs[str(tmp_path / "ok.pkl")]["verdict"] == "safe", recs[str(tmp_path / "ok.pkl")]
    assert recs[str(tmp_path / "crash_me.pkl")]["errors"] == [
        "the scan process exited with status 70 (2 tries): the file cannot be judged"]
    assert recs[str(tmp_path / "hang_me.pkl")]["errors"] == [
        "scan timed out after 3 s (2 tries): the file cannot be judged"]
    hog = recs[str(tmp_path / "hog_me.pkl")]
    assert hog["verdict"] == "error" and hog["errors"][0].startswith("ran out of memory while scanning"), hog


def test_a_consumer_that_stops_early_does_not_wait_for_a_hung_scan(tmp_path, hooks_importable):
    (tmp_path / "a_ok.pkl").write_bytes(pickle.dumps(1))
    (tmp_path / "hang.pkl").write_bytes(pickle.dumps(2))
    it = mfparse.scan_many(str(tmp_path), jobs=2, batch_size=1, scanner="engine_hooks:misbehave")
    assert next(it)["path"] == str(tmp_path / "a_ok.pkl")
    t0 = time.monotonic()
    it.close()  # the hung scan's child is killed, not waited for (the hang is an hour)
    assert time.monotonic() - t0 < 60


def test_resume_skips_what_was_done(corpus, tmp_path, monkeypatch, hooks_importable):
    """An interrupted run (OUT.jsonl.partial with a torn last line) is resumed: the files it
    reported are not scanned again, the torn one is, and the report holds each file once."""
    root, local = corpus
    sub = os.path.join(root, "d05")
    out = tmp_path / "out.jsonl"
    log = tmp_path / "scanned.txt"
    monkeypatch.setenv("MFPARSE_TEST_SCAN_LOG", str(log))
    first = list(mfparse.scan_many(sub, jobs=1, scanner="engine_hooks:logged"))
    done, torn = first[:9], first[9]
    partial = out.parent / (out.name + PARTIAL_SUFFIX)
    partial.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in done) + json.dumps(torn).encode()[:40])
    r = subprocess.run([sys.executable, "-m", "mfparse", "scan", sub, "--resume", str(out), "--jobs", "2",
                        "--format", "jsonl"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 1, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    validate_report_lines(lines)
    *files, summary = lines
    assert files[:9] == done  # carried over as they were
    assert_same_as_local(files, {p: v for p, v in local.items() if p.startswith(sub + os.sep)})
    assert summary["summary"]["resumed"] == 9 and summary["summary"]["files"] == len(files)
    new = [json.loads(x) for x in r.stdout.splitlines()][:-1]
    assert {x["path"] for x in new} == {x["path"] for x in files[9:]}  # only the others were scanned
    assert not partial.exists()
    # the Python API: resume=the report skips every file in it
    log.write_text("")
    again = list(mfparse.scan_many([sub, os.path.join(root, "d06")], jobs=2, resume=str(out),
                                   scanner="engine_hooks:logged"))
    assert {x["path"] for x in again} == {p for p in local if p.startswith(os.path.join(root, "d06") + os.sep)}
    assert set(log.read_text().splitlines()) == {x["path"] for x in again}


def test_keys_identify_files_not_spellings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert key_of("a/b.pt") == key_of(str(tmp_path / "a" / "b.pt")) == key_of("./a/../a/b.pt")
    assert key_of("a/b.pt") != key_of("a/c.pt")
    assert key_of("s3://bucket/a.pt") != key_of("s3://bucket/b.pt")


def test_remote_prefix_is_listed_and_scanned(corpus, tmp_path):
    """An http:// folder (index pages) is walked with fsspec and each file read whole and scanned
    (mfparse.scan of the URL); a file larger than the in-memory spool goes through a temporary
    file and gets the local scan's report."""
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")

    root, local = corpus
    served = tmp_path / "srv"
    (served / "models").mkdir(parents=True)
    picks = ("os_system.pkl", "weights.pt", "README.md", "nested.zip")
    for name in picks:
        shutil.copyfile(os.path.join(root, "d07", name), served / "models" / name)
    with open(served / "models" / "huge.bin", "wb") as f:
        f.truncate((64 << 20) + 1)  # past mfparse.io.local.SPOOL_MEMORY
    s = Server("http", str(served))
    try:
        base = f"{s.url}/models/"
        recs = _by_path(mfparse.scan_many([base], jobs=2))
        assert set(recs) == {base + n for n in (*picks, "huge.bin")}
        for name in picks:
            want = dict(local[os.path.join(root, "d07", name)], path=base + name)
            assert _comparable(recs[base + name]) == want, name
        want = _comparable(mfparse.scan(str(served / "models" / "huge.bin")).to_dict())
        assert _comparable(recs[base + "huge.bin"]) == dict(want, path=base + "huge.bin")
    finally:
        s.stop()


@pytest.mark.parametrize("argv, message", [
    (["-", "--report", "{out}"], "standard input (-) cannot be scanned with --engine"),
    (["{dir}", "--workers", "2"], "--address and --workers are for --engine dask"),
    (["{dir}", "--engine", "dask", "--address", "tcp://127.0.0.1:1", "--workers", "2"], "cannot be combined"),
    (["{dir}", "--memory-limit", "lots"], "cannot read the size 'lots'"),
    (["{dir}", "--timeout", "0"], "--timeout must be a positive number"),
])
def test_cli_engine_options_are_checked(tmp_path, argv, message):
    argv = [a.format(out=tmp_path / "out.jsonl", dir=tmp_path) for a in argv]
    r = subprocess.run([sys.executable, "-m", "mfparse", "scan", *argv], capture_output=True, text=True, env=ENV,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_s3_prefix_and_pattern_are_listed_and_scanned(corpus):
    """s3:// through moto's S3 server: a prefix walked folder by folder, a pattern, a missing
    prefix (an error record that names no secret)."""
    root, local = corpus
    secret = "Engines-S3-Secret-0123456789"
    with s3_server(secret) as (_, opts, client):
        client.create_bucket(Bucket="hub")
        keys = {"models/a/weights.pt": "weights.pt", "models/a/evil.pt": "evil.pt",
                "models/b/c/os_system.pkl": "os_system.pkl", "models/config.json": "config.json",
                "other/popen.bin": "popen.bin"}
        for key, name in keys.items():
            with open(os.path.join(root, "d08", name), "rb") as f:
                client.put_object(Bucket="hub", Key=key, Body=f.read())
        recs = _by_path(mfparse.scan_many(["s3://hub/models/", "s3://hub/other/*.bin", "s3://hub/nothing/"],
                                          jobs=2, storage_options=opts))
        missing = recs.pop("s3://hub/nothing/")
        assert missing["verdict"] == "error" and secret not in json.dumps(missing)
        assert set(recs) == {f"s3://hub/{k}" for k in keys}
        for key, name in keys.items():
            want = dict(local[os.path.join(root, "d08", name)], path=f"s3://hub/{key}")
            assert _comparable(recs[f"s3://hub/{key}"]) == want, key


def test_bad_arguments_fail_at_the_call():
    with pytest.raises(ValueError, match="engine must be"):
        mfparse.scan_many(["x"], engine="ray")
    with pytest.raises(ValueError, match="isolate=True"):
        mfparse.scan_many(["x"], engine="dask", isolate=False, timeout=3)
    with pytest.raises(ValueError, match="cannot read the size"):
        mfparse.scan_many(["x"], memory_limit="lots")
    with pytest.raises(ValueError, match="jobs"):
        mfparse.scan_many(["x"], engine="dask", jobs=2)
