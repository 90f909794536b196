"""The scanner on remote files and streams (issue 19 items 3 and 4): `mfparse.scan(url)` reads
the file whole, front to back, by ranges (or as the one 200 body of a server that ignores
Range), spooled to a temporary file past mfparse.io.local.SPOOL_MEMORY, and gives the local
scan's report; a pipe on standard input is spooled the same way. Against the real HTTP server
of tests/servers.py, started as a process on 127.0.0.1. Malicious files are built as bytes and
never loaded."""

import os
import shutil
import sys

import pytest

import mfparse
from mfparse.scan import scan, scan_stdin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import pipe_with  # noqa: E402
from servers import http_fixtures  # noqa: E402

pytestmark = pytest.mark.skipif(__import__("importlib.util").util.find_spec("aiohttp") is None,
                                reason="aiohttp is not installed (pip install mfparse[remote])")

#: protocol 2: GLOBAL os.system, the argument, REDUCE (built as bytes, never loaded)
EVIL = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("scan-served")
    torch.save({f"w{i}": torch.full((64, 64), float(i)) for i in range(8)}, d / "model.pth")
    torch.save({"w": torch.ones(3)}, d / "legacy.pth", _use_new_zipfile_serialization=False)
    (d / "evil.pkl").write_bytes(EVIL)
    (d / "README.md").write_text("# a model\n")
    shutil.copyfile(d / "model.pth", d / "big.pth")
    with open(d / "big.pth", "ab") as f:  # data after the archive: a finding, and more than one chunk
        f.write(b"\0" * (300 << 10))
    return d


server, http = http_fixtures("served")


def comparable(r, path):
    d = r.to_dict()
    d.pop("seconds")
    d["path"] = path
    return d


NAMES = ["model.pth", "legacy.pth", "evil.pkl", "README.md", "big.pth"]


@pytest.mark.parametrize("name", NAMES)
def test_scan_of_a_url_is_the_local_scan(http, served, name):
    url = f"{http.url}/{name}"
    want = comparable(scan(str(served / name)), url)
    assert comparable(scan(url), url) == want
    gets = [e for e in http.log() if e["method"] == "GET"]
    assert gets and all(e["range"] for e in gets)  # by ranges
    assert sum(e["sent"] for e in gets) <= os.path.getsize(served / name) + (64 << 10)


def test_evil_pickle_over_http_is_unsafe(http):
    r = scan(f"{http.url}/evil.pkl")
    assert r.verdict == "unsafe" and any(f.module == "os" and f.qualname == "system" for f in r.findings)


def test_spooled_to_a_temporary_file_in_many_ranges(http, served, monkeypatch):
    import importlib

    from mfparse.io import local

    scan_pkg = importlib.import_module("mfparse.scan")  # the package (mfparse.scan is also the function)

    monkeypatch.setattr(local, "SPOOL_MEMORY", 4096)
    monkeypatch.setattr(scan_pkg, "REMOTE_CHUNK", 16 << 10)
    url = f"{http.url}/big.pth"
    assert comparable(scan(url), url) == comparable(scan(str(served / "big.pth")), url)
    gets = [e for e in http.log() if e["method"] == "GET" and e["status"] == 206]
    size = os.path.getsize(served / "big.pth")
    assert len(gets) > 2  # in pieces (RemoteSource rounds them to its blocks)
    assert size <= sum(e["sent"] for e in gets) <= size + (128 << 10)  # about every byte once


@pytest.mark.parametrize("name", ["model.pth", "evil.pkl"])
def test_server_that_ignores_range_is_read_as_a_stream(http, served, name):
    url = f"{http.url}/{name}"
    http.fault(f"/{name}", "ignore_range", times=100)
    assert comparable(scan(url), url) == comparable(scan(str(served / name)), url)


def test_missing_url_is_an_error_naming_it(http):
    with pytest.raises(OSError) as e:
        scan(f"{http.url}/nope.pth")
    assert "nope.pth" in str(e.value)


def test_credentials_never_in_the_report(http, served):
    http.options(auth="user:s3cret")
    url = f"http://user:s3cret@127.0.0.1:{http.port}/private/x"
    os.makedirs(served / "private", exist_ok=True)
    shutil.copyfile(served / "evil.pkl", served / "private" / "evil.pkl")
    r = scan(url.replace("/x", "/evil.pkl"))
    assert r.verdict == "unsafe"
    assert "s3cret" not in str(r.to_dict()) and "s3cret" not in str(r)


def test_stdin_pipe_past_the_spool_is_scanned_from_a_temporary_file(served, monkeypatch):
    from mfparse.io import local

    monkeypatch.setattr(local, "SPOOL_MEMORY", 4096)
    data = (served / "big.pth").read_bytes()
    r, t = pipe_with(data)
    with r:
        got = scan_stdin(stream=r)
    t.join()
    assert comparable(got, "<stdin>") == comparable(scan(str(served / "big.pth")), "<stdin>")


def test_stdin_pipe_over_the_limit_is_an_error(served):
    r, t = pipe_with(b"\0" * 10000)
    with r:
        got = scan_stdin(1000, stream=r)
    t.join()
    assert got.verdict == "error" and "more than 1,000 bytes" in got.errors[0]


def test_scan_many_of_a_large_remote_file(http, served, monkeypatch):
    """The engines' remote scans go through mfparse.scan(url) (no size limit of their own)."""
    rec = next(mfparse.scan_many([f"{http.url}/big.pth"], jobs=1))
    assert rec["verdict"] == scan(str(served / "big.pth")).verdict and rec["path"] == f"{http.url}/big.pth"
