"""The byte-source layer for remote files and streams (mfparse/io/remote.py, stream.py) against
real servers started as processes on 127.0.0.1 (tests/servers.py): an HTTP server with Range,
ETag, If-Match and fault switches, and moto's S3 endpoint. Request counts, round trips and
bytes are asserted exactly; only the slow-server case depends on time (a 1 s client timeout
against a 4 s server delay)."""

import os
import pickle
import random
import subprocess
import sys
import threading

import pytest

import mfparse
from mfparse.errors import TruncatedFileError
from mfparse.io import (
    LocalSource,
    OutsideFolderError,
    RangeNotSupportedError,
    RemoteReadError,
    SourceChangedError,
    SourceSpec,
    StreamLimitError,
    StreamPositionError,
    StreamSource,
    open_fileset,
    open_source,
)
from mfparse.io.remote import RemoteFileSet, RemoteSource, open_stream, public_options, redact_url

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import http_fixtures, s3_server  # noqa: E402

# the remote tests need the [remote] extra; the stream tests need nothing
needs_fsspec = pytest.mark.skipif(__import__("importlib.util").util.find_spec("fsspec") is None,
                                  reason="fsspec is not installed (pip install mfparse[remote])")

KiB = 1024
BIG = 4 * 1024 * KiB  # 64 blocks of 64 KiB
PASSWORD = "s3cr3t-Pa55word"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def write(path, data: bytes) -> None:
    """Replace a file atomically (a new inode: a new ETag on the test server)."""
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    write(d / "big.bin", blob(BIG, 1))
    write(d / "small.bin", blob(1000, 2))
    write(d / "empty.bin", b"")
    (d / "sub" / "deep").mkdir(parents=True)
    write(d / "sub" / "a.bin", blob(300 * KiB, 3))
    write(d / "sub" / "deep" / "c d.bin", blob(10, 4))
    (d / "private").mkdir()
    write(d / "private" / "p.bin", blob(5000, 5))
    hf = d / "org" / "model" / "resolve"
    (hf / "main").mkdir(parents=True)
    (hf / COMMIT).mkdir()
    write(hf / "main" / "weights.bin", blob(200 * KiB, 6))
    os.link(hf / "main" / "weights.bin", hf / COMMIT / "weights.bin")  # same inode, same ETag
    return d


server, http = http_fixtures("root")


def gets(log, path):
    return [e for e in log if e["path"] == path and e["method"] == "GET"]


def src_at(http, path, **kw):
    kw.setdefault("timeout", 10)
    kw.setdefault("backoff", 0.01)
    return RemoteSource(http.url + path, **kw)


# -- discovery, cache, batches ----------------------------------------------------------------

def test_discovery_is_head_and_tail_in_one_round_trip(http, root):
    data = (root / "big.bin").read_bytes()
    src = src_at(http, "/big.bin")
    assert src.stats == {"requests": 2, "round_trips": 1, "bytes": 128 * KiB}
    assert src.size == BIG and src.buf is None and src.path is None
    st = os.stat(root / "big.bin")
    assert src.version == f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
    log = gets(http.log(), "/big.bin")
    assert sorted(e["range"] for e in log) == ["bytes=-65536", "bytes=0-65535"]
    assert all(e["status"] == 206 and e["if_match"] is None for e in log)
    # reads inside the head and the tail cost nothing
    assert bytes(src.read(100, 1000)) == data[100:1100]
    assert bytes(src.read(BIG - 10, 10)) == data[-10:]
    assert src.read_ranges([(0, 5), (BIG - 64 * KiB, 64 * KiB)])[1] == data[-64 * KiB:]
    assert src.stats == {"requests": 2, "round_trips": 1, "bytes": 128 * KiB}
    assert len(gets(http.log(), "/big.bin")) == 2


def test_scattered_batch_is_one_round_trip(http, root):
    data = (root / "big.bin").read_bytes()
    src = src_at(http, "/big.bin")
    # 20 ranges in blocks 2, 5, 8, ... 59: two missing blocks (128 KiB) between neighbours,
    # more than coalesce_gap (64 KiB)
    ranges = [((2 + 3 * i) * 64 * KiB + 1000 + i, 100 + i) for i in range(20)]
    out = src.read_ranges(ranges)
    assert [bytes(b) for b in out] == [data[o:o + n] for o, n in ranges]
    assert src.stats == {"requests": 22, "round_trips": 2, "bytes": 128 * KiB + 20 * 64 * KiB}
    log = gets(http.log(), "/big.bin")[2:]
    assert sorted(e["range"] for e in log) == sorted(
        f"bytes={(2 + 3 * i) * 64 * KiB}-{(3 + 3 * i) * 64 * KiB - 1}" for i in range(20))
    assert {e["if_match"] for e in log} == {src.version}  # every ranged read is pinned
    # the same ranges again: from the cache
    assert [bytes(b) for b in src.read_ranges(ranges)] == [data[o:o + n] for o, n in ranges]
    assert src.stats["requests"] == 22


def test_neighbours_are_coalesced(http, root):
    data = (root / "big.bin").read_bytes()
    src = src_at(http, "/big.bin")
    b = 64 * KiB
    # blocks 10 and 11 touch, block 13 is one block away (a gap of 64 KiB <= coalesce_gap): one
    # request for blocks 10..13; block 30 is far: a second request; a range over blocks 40-41
    ranges = [(10 * b + 5, 10), (11 * b + 7, 3), (13 * b, 100), (30 * b + 9, 1), (41 * b - 2, 4)]
    out = src.read_ranges(ranges)
    assert [bytes(x) for x in out] == [data[o:o + n] for o, n in ranges]
    assert src.stats == {"requests": 5, "round_trips": 2, "bytes": 2 * b + 4 * b + b + 2 * b}
    log = gets(http.log(), "/big.bin")[2:]
    assert sorted(e["range"] for e in log) == sorted(
        [f"bytes={10 * b}-{14 * b - 1}", f"bytes={30 * b}-{31 * b - 1}", f"bytes={40 * b}-{42 * b - 1}"])
    # coalesce_gap=0: only touching blocks merge
    src2 = src_at(http, "/big.bin", coalesce_gap=0)
    src2.read_ranges(ranges)
    assert src2.stats == {"requests": 6, "round_trips": 2, "bytes": 2 * b + 2 * b + b + b + 2 * b}


def test_cache_is_bounded_lru(http, root):
    data = (root / "big.bin").read_bytes()
    b = 64 * KiB
    src = src_at(http, "/big.bin", cache_bytes=4 * b, head_bytes=b, tail_bytes=0)
    assert src.stats == {"requests": 1, "round_trips": 1, "bytes": b}
    for i in (5, 7, 9, 11, 13):
        assert bytes(src.read(i * b, 10)) == data[i * b:i * b + 10]
    assert src._cache.nbytes == 4 * b
    assert src.stats["requests"] == 6
    src.read(13 * b + 1, 5)  # held
    assert src.stats["requests"] == 6
    src.read(5, 5)  # the head was evicted first
    assert src.stats["requests"] == 7
    big = src.read(20 * b, 6 * b)  # larger than the cache: returned, not kept
    assert bytes(big) == data[20 * b:26 * b] and src._cache.nbytes <= 4 * b


def test_small_and_empty_files(http, root):
    small = src_at(http, "/small.bin")
    assert small.size == 1000
    assert small.stats == {"requests": 2, "round_trips": 1, "bytes": 2000}
    assert bytes(small.read(0, 1000)) == (root / "small.bin").read_bytes()
    assert small.stats["requests"] == 2
    empty = src_at(http, "/empty.bin")
    assert empty.size == 0 and bytes(empty.read(0, 0)) == b""
    assert empty.stats == {"requests": 2, "round_trips": 1, "bytes": 0}
    with pytest.raises(TruncatedFileError):
        empty.read(0, 1)
    with pytest.raises(TruncatedFileError):
        small.read(990, 11)


def test_whole_file_only_when_asked(http, root):
    data = (root / "big.bin").read_bytes()
    src = src_at(http, "/big.bin")
    fs = RemoteFileSet(http.url)
    assert fs.exists("big.bin") and fs.exists("sub/a.bin") and not fs.exists("nope.bin")
    assert fs.list() == ["big.bin", "empty.bin", "org/model/resolve/0123456789abcdef0123456789abcdef01234567/"
                         "weights.bin", "org/model/resolve/main/weights.bin", "private/p.bin", "small.bin",
                         "sub/a.bin", "sub/deep/c d.bin"]
    src.read_ranges([(200 * KiB, 10), (BIG // 2, 10)])
    sent = sum(e["sent"] for e in http.log() if e["path"] == "/big.bin")
    assert sent == src.stats["bytes"] == 4 * 64 * KiB
    assert bytes(src.read(0, BIG)) == data  # asked for: the middle in one request
    # (the two blocks held inside it are fetched again: gaps up to coalesce_gap are not cut out)
    assert src.stats == {"requests": 5, "round_trips": 3, "bytes": BIG + 2 * 64 * KiB}


# -- faults -----------------------------------------------------------------------------------

def test_server_ignoring_range(http, root):
    http.fault("/big.bin", "ignore_range", times=2)
    with pytest.raises(RangeNotSupportedError, match="ignores Range"):
        src_at(http, "/big.bin")
    # a small file served whole to a Range request is what was asked for
    http.fault("/small.bin", "ignore_range", times=2)
    assert bytes(src_at(http, "/small.bin").read(0, 1000)) == (root / "small.bin").read_bytes()
    # after discovery: refused, body not read
    src = src_at(http, "/big.bin")
    http.fault("/big.bin", "ignore_range")
    with pytest.raises(RangeNotSupportedError) as e:
        src.read(BIG // 2, 10)
    assert e.value.location == src.name and src.stats["bytes"] == 128 * KiB
    # such a server is read as a stream
    data = (root / "big.bin").read_bytes()
    http.fault("/big.bin", "ignore_range")
    st = open_stream(http.url + "/big.bin", max_bytes=256 * KiB)
    assert st.size == BIG and bytes(st.read(10, 20)) == data[10:30]
    assert bytes(st.read(3 * 1024 * KiB, 100)) == data[3 * 1024 * KiB:3 * 1024 * KiB + 100]
    with pytest.raises(StreamPositionError, match="cannot go back"):
        st.read(0, 1)
    st.close()


def test_dropped_connection_is_retried(http, root):
    data = (root / "big.bin").read_bytes()
    src = src_at(http, "/big.bin")
    http.fault("/big.bin", "drop", 1000)
    assert bytes(src.read(BIG // 2, 10)) == data[BIG // 2:BIG // 2 + 10]
    assert src.stats == {"requests": 4, "round_trips": 3, "bytes": 128 * KiB + 1000 + 64 * KiB}
    # always dropped: a clean error after 1 + retries tries
    http.fault("/big.bin", "drop", 10, times=10)
    with pytest.raises(RemoteReadError, match=r"connection failed or lost.*\(3 tries\)") as e:
        src_at(http, "/big.bin", retries=2).read(BIG // 2 + 64 * KiB, 10)
    assert http.url + "/big.bin" in str(e.value)


def test_discovery_drop_and_server_error_retried(http, root):
    http.fault("/big.bin", "drop", 5, range_prefix="bytes=-")
    src = src_at(http, "/big.bin")
    assert src.stats == {"requests": 3, "round_trips": 2, "bytes": 128 * KiB + 5}
    http.fault("/big.bin", "status", 503)
    assert bytes(src.read(BIG // 2, 4)) == (root / "big.bin").read_bytes()[BIG // 2:BIG // 2 + 4]
    assert src.stats["requests"] == 5
    http.fault("/big.bin", "status", 500, times=5)
    with pytest.raises(RemoteReadError, match="HTTP 500") as e:
        src.read(BIG // 4, 4)
    assert e.value.status == 500


def test_slow_server_times_out(http):
    src = src_at(http, "/big.bin", retries=0)
    src.timeout = 1  # (discovery ran with 10 s: only the slow answer may time out)
    http.fault("/big.bin", "slow", 4)
    with pytest.raises(TimeoutError, match=r"no answer within 1 s") as e:
        src.read(BIG // 2, 10)
    assert http.url + "/big.bin" in str(e.value)


@pytest.mark.parametrize("status,exc", [(404, FileNotFoundError), (403, PermissionError), (401, PermissionError)])
def test_status_errors_name_the_url(http, status, exc):
    http.fault("/big.bin", "status", status, times=2)
    with pytest.raises(exc) as e:
        src_at(http, "/big.bin")
    assert e.value.filename == http.url + "/big.bin"
    with pytest.raises(FileNotFoundError):
        src_at(http, "/missing.bin")


def test_416_is_an_error_not_empty_bytes(http):
    src = src_at(http, "/big.bin")
    http.fault("/big.bin", "status", 416)
    with pytest.raises(RemoteReadError, match="416") as e:
        src.read(BIG // 2, 10)
    assert e.value.status == 416


def test_file_replaced_between_requests(http, root, tmp_path):
    path = root / "sub" / "a.bin"
    old = path.read_bytes()
    try:
        src = src_at(http, "/sub/a.bin")
        write(path, blob(len(old), 99))  # same size, new ETag
        with pytest.raises(SourceChangedError, match="changed while it was read"):
            src.read(128 * KiB, 10)
        assert gets(http.log(), "/sub/a.bin")[-1]["status"] == 412
        # a server that ignores If-Match (many CDNs): the answer's ETag gives it away
        http.options(if_match=False)
        src = src_at(http, "/sub/a.bin")
        write(path, old)
        with pytest.raises(SourceChangedError, match="version"):
            src.read(128 * KiB, 10)
        # no ETag: Last-Modified (pinned with If-Unmodified-Since, compared in each answer)
        http.options(etag="none", if_match=False)
        src = src_at(http, "/sub/a.bin")
        assert src.version.startswith("last-modified:")
        write(path, blob(len(old), 98))
        os.utime(path, (1e9, 1e9))
        with pytest.raises(SourceChangedError):
            src.read(128 * KiB, 10)
        # neither: the size in Content-Range
        http.options(etag="none", last_modified=False, if_match=False)
        first = path.read_bytes()
        src = src_at(http, "/sub/a.bin")
        assert src.version is None
        write(path, old + b"x")
        with pytest.raises(SourceChangedError, match="bytes now"):
            src.read(128 * KiB, 10)
        # the cached bytes of the first version are never mixed with the second: reads in the
        # head still work, reads that need the server fail
        assert bytes(src.read(0, 10)) == first[:10]
    finally:
        write(path, old)


def test_spec_reopens_and_refuses_a_changed_file(http, root):
    path = root / "sub" / "a.bin"
    old = path.read_bytes()
    try:
        src = src_at(http, "/sub/a.bin")
        spec = pickle.loads(pickle.dumps(src.spec()))
        assert spec == SourceSpec(http.url + "/sub/a.bin", len(old), src.version, {})
        again = open_source(spec)
        assert isinstance(again, RemoteSource) and bytes(again.read(1000, 10)) == old[1000:1010]
        assert {e["if_match"] for e in gets(http.log(), "/sub/a.bin")[2:]} == {src.version}
        write(path, blob(len(old), 97))
        with pytest.raises(SourceChangedError):
            open_source(spec)
    finally:
        write(path, old)
    # local specs too
    with LocalSource(str(root / "small.bin")) as local:
        lspec = local.spec()
    with open_source(lspec) as again:
        assert bytes(again.read(0, 4)) == (root / "small.bin").read_bytes()[:4]
    with pytest.raises(SourceChangedError):
        open_source(lspec._replace(size=5))


# -- credentials ------------------------------------------------------------------------------

def test_credentials_never_shown(http, root):
    http.options(auth=f"user:{PASSWORD}")
    url = f"http://user:{PASSWORD}@127.0.0.1:{http.port}/private/p.bin?token=tok-{PASSWORD}&x=1"
    src = RemoteSource(url, {"headers": {"X-Api-Key": "hdr-" + PASSWORD}}, timeout=10)
    assert bytes(src.read(0, 5000)) == (root / "private" / "p.bin").read_bytes()
    assert src.name == f"http://127.0.0.1:{http.port}/private/p.bin?token=***&x=1"
    spec = src.spec()
    assert spec.options == {"headers": None}
    shown = [src.name, repr(src), repr(spec), str(pickle.dumps(spec))]
    # errors: a wrong password (403), a missing file (404), a drop and a 416 after retries
    for bad, fault in ((url.replace(PASSWORD, PASSWORD + "x"), None), (url.replace("p.bin", "q.bin"), None),
                       (url, "drop"), (url, "status")):
        if fault == "drop":
            http.fault("/private/p.bin", "drop", 3, times=4)  # 2 requests, 2 tries each
        elif fault == "status":
            http.fault("/private/p.bin", "status", 416, times=2)
        with pytest.raises(OSError) as e:
            RemoteSource(bad, {"headers": {"X-Api-Key": "hdr-" + PASSWORD}}, timeout=10, retries=1, backoff=0)
        shown += [str(e.value), repr(e.value.args)]
    with pytest.raises(PermissionError):
        RemoteSource(url.split("@")[0].replace("user:" + PASSWORD, "") + "@" + url.split("@")[1], timeout=10)
    # a folder behind the same credentials
    folder = f"http://user:{PASSWORD}@127.0.0.1:{http.port}/private"
    fs = RemoteFileSet(folder, timeout=10)
    assert fs.root == f"http://127.0.0.1:{http.port}/private" and fs.list() == ["p.bin"] and fs.exists("p.bin")
    for call in (lambda f: f.list(), lambda f: f.exists("p.bin")):
        with pytest.raises(OSError) as e:
            call(RemoteFileSet(folder.replace(PASSWORD, "wrong-" + PASSWORD), timeout=10))
        shown += [str(e.value), fs.location("p.bin")]
    for text in shown:
        assert PASSWORD not in text and "user:" not in text, text
    assert redact_url("https://a:b@h/p?X-Amz-Signature=abc&X-Amz-Credential=k%2Fd&v=1") == \
        "https://h/p?X-Amz-Signature=***&X-Amz-Credential=***&v=1"
    opts = {"key": "K", "secret": "S", "anon": False,
            "client_kwargs": {"endpoint_url": "http://e", "aws_secret_access_key": "S"}}
    assert public_options(opts) == {"key": None, "secret": None, "anon": False,
                                    "client_kwargs": {"endpoint_url": "http://e", "aws_secret_access_key": None}}


# -- FileSet ----------------------------------------------------------------------------------

def test_remote_fileset(http, root):
    fs = open_fileset(http.url + "/sub")
    assert isinstance(fs, RemoteFileSet) and fs.root == http.url + "/sub"
    assert fs.list() == ["a.bin", "deep/c d.bin"]
    assert fs.exists("deep/c d.bin") and not fs.exists("deep/none") and not fs.exists("../big.bin")
    assert bytes(fs.open("deep/c d.bin").read(0, 10)) == (root / "sub" / "deep" / "c d.bin").read_bytes()
    assert fs.location("deep/c d.bin") == http.url + "/sub/deep/c%20d.bin"
    for bad in ("../big.bin", "/etc/passwd", "deep/../../big.bin", "C:/x"):
        with pytest.raises(OutsideFolderError):
            fs.open(bad)
    assert not [e for e in http.log() if e["path"] == "/big.bin"]
    assert all(e["sent"] < 20 * KiB for e in http.log())  # listing and exists fetch no file


# -- hf:// ------------------------------------------------------------------------------------

def test_hf_urls_pin_the_commit(http, root):
    pytest.importorskip("huggingface_hub")
    http.options(repo_commit=COMMIT)
    token = "hf_" + PASSWORD
    src = RemoteSource("hf://org/model/weights.bin", {"endpoint": http.url, "token": token}, timeout=10)
    data = (root / "org" / "model" / "resolve" / "main" / "weights.bin").read_bytes()
    assert src.name == "hf://org/model/weights.bin"
    assert src.stats == {"requests": 2, "round_trips": 1, "bytes": 128 * KiB}
    assert bytes(src.read(100 * KiB, 10)) == data[100 * KiB:100 * KiB + 10]
    paths = [e["path"] for e in http.log() if e["method"] == "GET"]
    assert paths[-1] == f"/org/model/resolve/{COMMIT}/weights.bin"  # pinned after the first answer
    spec = src.spec()
    assert spec.location == f"hf://org/model@{COMMIT}/weights.bin"
    assert spec.options == {"endpoint": http.url, "token": None}
    assert token not in repr(spec) and token not in repr(src)
    again = open_source(spec, {"token": token}, timeout=10)
    assert again.version == src.version and bytes(again.read(150 * KiB, 5)) == data[150 * KiB:150 * KiB + 5]
    assert {e["path"] for e in http.log()[len(paths):] if e["method"] == "GET"} == {
        f"/org/model/resolve/{COMMIT}/weights.bin"}


def test_hf_url_parsing():
    from mfparse.io.remote import _hf_location, _hf_repo_file, _hf_resolve_url

    u = _hf_repo_file("hf://datasets/org/ds@refs/pr/3/dir/x.safetensors")
    assert (u.type, u.id, u.revision, u.path_in_repo) == ("dataset", "org/ds", "refs/pr/3", "dir/x.safetensors")
    assert _hf_resolve_url(u, "refs/pr/3", "https://hub.example") == \
        "https://hub.example/datasets/org/ds/resolve/refs%2Fpr%2F3/dir/x.safetensors"
    assert _hf_location(u, COMMIT) == f"hf://datasets/org/ds@{COMMIT}/dir/x.safetensors"
    assert _hf_location(u, "refs/pr/3") == "hf://datasets/org/ds@refs/pr/3/dir/x.safetensors"
    m = _hf_repo_file("hf://org/model@v1.0/w.bin")
    assert _hf_resolve_url(m, "v1.0", "https://hub.example") == "https://hub.example/org/model/resolve/v1.0/w.bin"
    assert _hf_location(m, None) == "hf://org/model/w.bin"
    assert _hf_repo_file("hf://org/model") is None  # a repository, not a file


# -- the generic fsspec path (memory://) ------------------------------------------------------

@needs_fsspec
def test_generic_fsspec_filesystem():
    import fsspec

    data = blob(1024 * KiB, 7)
    mem = fsspec.filesystem("memory")
    mem.pipe("/mfparse-test/g.bin", data)
    try:
        src = open_source("memory://mfparse-test/g.bin")
        assert isinstance(src, RemoteSource) and src.size == len(data)
        assert src.stats == {"requests": 3, "round_trips": 2, "bytes": 128 * KiB}  # info + head, then the tail
        ranges = [(i * 192 * KiB + 70 * KiB, 10) for i in range(5)]  # blocks 1, 4, 7, 10, 13
        assert [bytes(b) for b in src.read_ranges(ranges)] == [data[o:o + n] for o, n in ranges]
        assert src.stats == {"requests": 8, "round_trips": 3, "bytes": 128 * KiB + 5 * 64 * KiB}
        src = RemoteSource("memory://mfparse-test/g.bin", retries=1, backoff=0)
        mem.pipe("/mfparse-test/g.bin", data[:500 * KiB])  # shrinks: a short answer is never padded
        with pytest.raises(RemoteReadError, match=r"asked for 65536 bytes at 917504, got 0 \(2 tries\)"):
            src.read(900 * KiB, 4)
        with pytest.raises(FileNotFoundError):
            open_source("memory://mfparse-test/none.bin")
    finally:
        mem.rm("/mfparse-test", recursive=True)


# -- S3 (moto's server) -----------------------------------------------------------------------

S3_SECRET = "Moto-S3-Secret-" + PASSWORD


@pytest.fixture(scope="module")
def s3():
    with s3_server(S3_SECRET) as (s, opts, client):
        client.create_bucket(Bucket="plain")
        client.create_bucket(Bucket="versioned")
        client.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        yield s, opts, client


def test_s3_counts(s3):
    _, opts, client = s3
    data = blob(BIG, 11)
    client.put_object(Bucket="plain", Key="m/big.bin", Body=data)
    src = RemoteSource("s3://plain/m/big.bin", opts, timeout=10)
    assert src.size == BIG and src.name == "s3://plain/m/big.bin"
    assert src.version == client.head_object(Bucket="plain", Key="m/big.bin")["ETag"]
    assert src.stats == {"requests": 2, "round_trips": 1, "bytes": 128 * KiB}
    assert bytes(src.read(10, 10)) == data[10:20] and src.stats["requests"] == 2
    ranges = [((2 + 3 * i) * 64 * KiB + 1000 + i, 100 + i) for i in range(20)]
    assert [bytes(b) for b in src.read_ranges(ranges)] == [data[o:o + n] for o, n in ranges]
    assert src.stats == {"requests": 22, "round_trips": 2, "bytes": 128 * KiB + 20 * 64 * KiB}
    b = 64 * KiB
    src.read_ranges([(45 * b, 10), (46 * b + 3, 10), (48 * b, 1)])  # one request: blocks 45..48
    assert src.stats == {"requests": 23, "round_trips": 3, "bytes": 128 * KiB + 24 * 64 * KiB}


def test_s3_changed_object_and_errors(s3):
    _, opts, client = s3
    client.put_object(Bucket="plain", Key="c.bin", Body=blob(300 * KiB, 12))
    src = RemoteSource("s3://plain/c.bin", opts, timeout=10)
    spec = src.spec()
    endpoint = opts["client_kwargs"]["endpoint_url"]
    assert spec.options == {"key": None, "secret": None, "client_kwargs": {"endpoint_url": endpoint}}
    client.put_object(Bucket="plain", Key="c.bin", Body=blob(300 * KiB, 13))
    with pytest.raises(SourceChangedError, match="PreconditionFailed") as e:
        src.read(128 * KiB, 10)
    shown = [str(e.value), repr(src), repr(spec)]
    with pytest.raises(SourceChangedError):
        open_source(spec, {"key": "testing", "secret": S3_SECRET})
    with pytest.raises(FileNotFoundError) as e:
        RemoteSource("s3://plain/none.bin", opts, timeout=10)
    assert e.value.filename == "s3://plain/none.bin"
    shown.append(str(e.value))
    with pytest.raises(FileNotFoundError):
        RemoteSource("s3://no-such-bucket/x.bin", opts, timeout=10)
    for text in shown:
        assert S3_SECRET not in text and PASSWORD not in text


def test_s3_empty_object(s3):
    _, opts, client = s3
    client.put_object(Bucket="plain", Key="empty.bin", Body=b"")
    src = RemoteSource("s3://plain/empty.bin", opts, timeout=10)
    # moto refuses `bytes=0-65535` (InvalidRange: a HEAD after it tells the size) and answers
    # the suffix `bytes=-65536` with 200 and the empty body
    assert src.size == 0 and src.stats == {"requests": 3, "round_trips": 2, "bytes": 0}
    assert src.version == client.head_object(Bucket="plain", Key="empty.bin")["ETag"]
    assert bytes(src.read(0, 0)) == b""


def test_s3_versioned_bucket_reads_the_first_version(s3):
    _, opts, client = s3
    old = blob(300 * KiB, 14)
    vid = client.put_object(Bucket="versioned", Key="v.bin", Body=old)["VersionId"]
    src = RemoteSource("s3://versioned/v.bin", opts, timeout=10)
    assert src.version == f"version-id:{vid}"
    client.put_object(Bucket="versioned", Key="v.bin", Body=blob(300 * KiB, 15))
    assert bytes(src.read(200 * KiB, 10)) == old[200 * KiB:200 * KiB + 10]  # the pinned version, whole
    again = open_source(src.spec(), opts)
    assert bytes(again.read(150 * KiB, 10)) == old[150 * KiB:150 * KiB + 10]


def test_s3_fileset(s3):
    _, opts, client = s3
    for k in ("shards/a.bin", "shards/sub/b.bin", "shards2/c.bin"):
        client.put_object(Bucket="plain", Key=k, Body=b"x" * 10)
    fs = RemoteFileSet("s3://plain/shards", opts, timeout=10)
    assert fs.list() == ["a.bin", "sub/b.bin"]
    assert fs.exists("sub/b.bin") and not fs.exists("c.bin") and not fs.exists("../shards2/c.bin")
    assert bytes(fs.open("sub/b.bin").read(0, 10)) == b"x" * 10
    with pytest.raises(OutsideFolderError):
        fs.open("../shards2/c.bin")


# -- streams ----------------------------------------------------------------------------------

def pipe_of(data: bytes):
    r, w = os.pipe()

    def feed():
        try:
            with os.fdopen(w, "wb") as f:
                for i in range(0, len(data), 4096):
                    f.write(data[i:i + 4096])
        except BrokenPipeError:  # the reader stopped early (on purpose)
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return os.fdopen(r, "rb", buffering=0), t


def test_stream_source_forward_only():
    data = blob(200 * KiB, 21)
    f, t = pipe_of(data)
    st = open_source(f)
    assert isinstance(st, StreamSource) and st.size is None and st.buf is None
    assert bytes(st.read(0, 8)) == data[:8]
    assert bytes(st.read(0, 100)) == data[:100]  # the same offset again: still held
    assert bytes(st.read(50 * KiB, 10)) == data[50 * KiB:50 * KiB + 10]  # skipped bytes dropped
    with pytest.raises(StreamPositionError, match="cannot go back"):
        st.read(10, 1)
    with pytest.raises(StreamLimitError):
        StreamSource(f, max_bytes=16).read(60 * KiB, 17)
    assert [bytes(b) for b in st.read_ranges([(60 * KiB, 3), (70 * KiB, 3)])] == [
        data[60 * KiB:60 * KiB + 3], data[70 * KiB:70 * KiB + 3]]
    with pytest.raises(TruncatedFileError):
        st.read(200 * KiB - 2, 3)
    assert st.size == 200 * KiB and st.stats["bytes"] == 200 * KiB
    st.close()
    t.join()


def test_stream_read_all_cap():
    data = blob(100 * KiB, 22)
    f, t = pipe_of(data)
    with StreamSource(f) as st:
        assert st.read_all(100 * KiB) == data and st.position == 100 * KiB
    t.join()
    f, t = pipe_of(data)
    st = StreamSource(f, name="<stdin>")
    with pytest.raises(StreamLimitError, match=r"<stdin>: .*cap of 1000 bytes"):
        st.read_all(1000)
    assert st.stats["bytes"] == 1001
    st.close()
    t.join()
    assert isinstance(open_source(__import__("io").BytesIO(b"abc")), LocalSource)


def test_open_source_kinds(tmp_path):
    p = tmp_path / "a b.bin"
    p.write_bytes(b"hello")
    with open_source("file://" + str(p).replace(" ", "%20")) as src:
        assert isinstance(src, LocalSource) and src.path == str(p) and bytes(src.read(1, 3)) == b"ell"
    with open(p, "rb") as f, open_source(f) as src:
        assert isinstance(src, LocalSource) and bytes(src.read(0, 5)) == b"hello"
    assert open_source(src) is src
    with pytest.raises(ValueError, match="another host"):
        open_source("file://server/share/x.bin")


def test_io_imports_no_remote_packages():
    code = ("import sys, mfparse, mfparse.io\n"
            "mfparse.io.open_source(b'abc'); mfparse.io.open_source(sys.executable)\n"
            "heavy = ('fsspec', 'aiohttp', 's3fs', 'huggingface_hub', 'botocore')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(mfparse.__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
