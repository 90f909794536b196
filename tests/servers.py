"""Servers the remote-source tests start as processes on 127.0.0.1.

    python tests/servers.py http ROOT    a folder over HTTP/1.1 (see RangeHandler)
    python tests/servers.py s3           moto's S3 endpoint (moto[server])

Each prints `PORT <n>` on its first line once it listens, then serves until terminated.
`Server` (below) starts one from a test and talks to the HTTP server's control endpoint.

The HTTP server honours one byte range per request (`bytes=a-b`, `bytes=a-`, `bytes=-n`;
several ranges get the whole body, as RFC 9110 allows), sends ETag and Last-Modified, answers
HEAD, If-Match and If-Unmodified-Since (412), 416 with `Content-Range: bytes */size`, lists
folders as HTML links, and takes faults per request from its control endpoint:

    POST /_control/fault   {"path": "/f.bin", "fault": F, "arg": A, "times": 1, "range_prefix": ""}
        F = "ignore_range" (200 and the whole body), "drop" (headers, A body bytes, then the
        connection is closed), "slow" (sleep A seconds before answering), "status" (answer
        HTTP A). A fault applies to the next `times` requests for path whose Range header
        starts with range_prefix.
    POST /_control/options {"etag": "strong"|"weak"|"none", "last_modified": true,
        "if_match": true (honour it), "auth": "user:password" (required under /private/),
        "repo_commit": "<40 hex>" (sent as X-Repo-Commit for paths with /resolve/),
        "latency": seconds every request waits before it is answered (a far-away server)}
    POST /_control/reset   faults, options and the log back to their defaults
    GET  /_control/log     every other request so far: method, path, range, if_match,
                           status, body bytes sent (logged before the body is written)

The Hugging Face Hub's tree listing is answered for repositories laid out as the Hub's resolve
URLs are (ROOT/<org>/<name>/resolve/<revision>/<files>): `GET /api/models/<org>/<name>/tree/
<revision>[/<folder>]?recursive=...` lists their files as JSON (what huggingface_hub's
list_repo_tree reads), so that `hf://org/name` with the endpoint set to this server is a
repository.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

DEFAULT_OPTIONS = {"etag": "strong", "last_modified": True, "if_match": True, "auth": None, "repo_commit": None,
                   "latency": 0.0}


class State:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.faults = []
        self.log = []
        self.options = dict(DEFAULT_OPTIONS)

    def take_fault(self, path: str, rng: str | None):
        with self.lock:
            for f in self.faults:
                if f["path"] == path and (rng or "").startswith(f.get("range_prefix", "")) and f["times"] > 0:
                    f["times"] -= 1
                    return f
        return None


class RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State = None

    def log_message(self, *args):  # quiet
        pass

    # -- control ----------------------------------------------------------------------------
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        st = self.state
        with st.lock:
            if self.path == "/_control/fault":
                body.setdefault("times", 1)
                st.faults.append(body)
            elif self.path == "/_control/options":
                st.options.update(body)
            elif self.path == "/_control/reset":
                st.reset()
            else:
                return self._plain(404, b"no such control")
        self._plain(200, b"ok")

    def _plain(self, status: int, body: bytes, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- files ------------------------------------------------------------------------------
    def do_HEAD(self):
        self._serve()

    def do_GET(self):
        if self.path == "/_control/log":
            with self.state.lock:
                data = json.dumps(self.state.log).encode()
            return self._plain(200, data, {"Content-Type": "application/json"})
        self._serve()

    def _entry(self, status: int, sent: int, path: str):
        with self.state.lock:
            self.state.log.append({"method": self.command, "path": path, "range": self.headers.get("Range"),
                                   "if_match": self.headers.get("If-Match"), "status": status, "sent": sent})

    def _serve(self):
        st = self.state
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        opts = dict(st.options)
        if opts["latency"]:
            time.sleep(float(opts["latency"]))
        if path.startswith("/api/models/") and "/tree/" in path:
            return self._hf_tree(path)
        fault = st.take_fault(path, rng)
        if fault and fault["fault"] == "slow":
            time.sleep(float(fault["arg"]))
        if fault and fault["fault"] == "status":
            self._entry(int(fault["arg"]), 0, path)
            return self._plain(int(fault["arg"]), b"")
        if opts["auth"] and path.startswith("/private/"):
            auth = self.headers.get("Authorization", "")
            want = "Basic " + base64.b64encode(opts["auth"].encode()).decode()
            if auth != want:
                status = 403 if auth else 401
                self._entry(status, 0, path)
                return self._plain(status, b"", {"WWW-Authenticate": 'Basic realm="t"'} if status == 401 else None)
        full = os.path.realpath(os.path.join(st.root, path.lstrip("/")))
        if full != st.root and not full.startswith(st.root + os.sep):
            self._entry(404, 0, path)
            return self._plain(404, b"")
        if os.path.isdir(full):
            return self._listing(full, path)
        try:
            f = open(full, "rb")
        except OSError:
            self._entry(404, 0, path)
            return self._plain(404, b"not found")
        with f:
            self._file(f, path, rng, opts, fault)

    def _file(self, f, path, rng, opts, fault):
        stat = os.fstat(f.fileno())
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        etag = f'"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        if opts["etag"] == "strong":
            headers["ETag"] = etag
        elif opts["etag"] == "weak":
            headers["ETag"] = "W/" + etag
        if opts["last_modified"]:
            headers["Last-Modified"] = email.utils.formatdate(stat.st_mtime, usegmt=True)
        if opts["repo_commit"] and "/resolve/" in path:
            headers["X-Repo-Commit"] = opts["repo_commit"]
        if opts["if_match"]:
            im = self.headers.get("If-Match")
            if im is not None and im.strip() != "*":
                tags = [t.strip() for t in im.split(",")]
                if opts["etag"] != "strong" or etag not in tags:
                    self._entry(412, 0, path)
                    return self._plain(412, b"", headers)
            ius = self.headers.get("If-Unmodified-Since")
            if ius is not None:
                t = email.utils.parsedate_to_datetime(ius).timestamp()
                if int(stat.st_mtime) > t:
                    self._entry(412, 0, path)
                    return self._plain(412, b"", headers)
        size = stat.st_size
        status, (a, b) = 200, (0, size - 1)
        if rng and not (fault and fault["fault"] == "ignore_range"):
            span = self._parse_range(rng, size)
            if span == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{size}"
                self._entry(416, 0, path)
                return self._plain(416, b"", headers)
            if span is not None:
                status, (a, b) = 206, span
                headers["Content-Range"] = f"bytes {a}-{b}/{size}"
        f.seek(a)
        length = b + 1 - a if self.command != "HEAD" else 0
        send = length
        if fault and fault["fault"] == "drop":
            send = min(int(fault["arg"]), length)
        self._entry(status, send, path)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(b + 1 - a))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            left = send
            while left:  # in pieces: a whole multi-GB file is never held in memory
                piece = f.read(min(left, 1 << 20))
                if not piece:
                    break
                self.wfile.write(piece)
                left -= len(piece)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if send < length:  # the dropped connection: close it with the body unfinished
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _parse_range(value: str, size: int):
        m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
        if m is None:
            return None  # several ranges or a malformed header: the whole body
        a, b = m.groups()
        if a == "" and b == "":
            return None
        if a == "":
            n = int(b)
            if n == 0 or size == 0:
                return "unsatisfiable"
            return max(size - n, 0), size - 1
        a = int(a)
        b = size - 1 if b == "" else min(int(b), size - 1)
        if a >= size or a > b:
            return "unsatisfiable"
        return a, b

    def _hf_tree(self, path: str):
        repo, _, rest = path[len("/api/models/"):].partition("/tree/")
        revision, _, folder = rest.partition("/")
        base = os.path.join(self.state.root, repo, "resolve", revision)
        top = os.path.join(base, folder) if folder else base
        if not os.path.isdir(top):
            self._entry(404, 0, path)
            return self._plain(404, b'{"error": "not found"}', {"Content-Type": "application/json",
                                                                  "X-Error-Code": "RepoNotFound"})
        items = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                full = os.path.join(dirpath, f)
                rel = os.path.relpath(full, base).replace(os.sep, "/")
                items.append({"type": "file", "path": rel, "size": os.path.getsize(full), "oid": "0" * 40})
        body = json.dumps(items).encode()
        self._entry(200, len(body), path)
        self._plain(200, body, {"Content-Type": "application/json"})

    def _listing(self, full: str, path: str):
        base = path if path.endswith("/") else path + "/"
        links = []
        for name in sorted(os.listdir(full)):
            slash = "/" if os.path.isdir(os.path.join(full, name)) else ""
            links.append(f'<a href="{quote(base + name)}{slash}">{name}{slash}</a>')
        body = ("<html><body>" + "\n".join(links) + "</body></html>").encode()
        self._entry(200, len(body), path)
        self._plain(200, body, {"Content-Type": "text/html"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a batch of concurrent connections must not overflow the backlog


def serve_http(root: str) -> None:
    RangeHandler.state = State(root)
    server = _Server(("127.0.0.1", 0), RangeHandler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


def serve_s3() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(f"PORT {server.get_host_and_port()[1]}", flush=True)
    while True:
        time.sleep(3600)


class Server:
    """A server process started by a test: `url`, `port`, `stop()`; for the HTTP server
    `fault()`, `options()`, `reset()` and `log()` talk to the control endpoint."""

    def __init__(self, kind: str, *args: str):
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen([sys.executable, os.path.join(here, "servers.py"), kind, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the {kind} server did not start")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _post(self, what: str, body: dict) -> None:
        req = urllib.request.Request(f"{self.url}/_control/{what}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()

    def fault(self, path: str, fault: str, arg=None, times: int = 1, range_prefix: str = "") -> None:
        self._post("fault", {"path": path, "fault": fault, "arg": arg, "times": times, "range_prefix": range_prefix})

    def options(self, **opts) -> None:
        self._post("options", opts)

    def reset(self) -> None:
        self._post("reset", {})

    def log(self) -> list:
        with urllib.request.urlopen(f"{self.url}/_control/log", timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()



def http_fixtures(root: str):
    """pytest fixtures for a test module: `server`, the HTTP range server of the folder that the
    module's fixture named `root` gives, started once per module; `http`, that server with its
    request log and faults reset around each test. Use: `server, http = http_fixtures("served")`."""
    import pytest

    @pytest.fixture(scope="module")
    def server(request):
        pytest.importorskip("fsspec")
        pytest.importorskip("aiohttp")
        s = Server("http", str(request.getfixturevalue(root)))
        yield s
        s.stop()

    @pytest.fixture
    def http(server):
        server.reset()
        yield server
        server.reset()

    return server, http

@contextlib.contextmanager
def s3_server(secret: str = "testing"):
    """moto's S3 server on 127.0.0.1 with the AWS environment pointing at its credentials (restored
    on exit; skips the test without s3fs, moto or boto3): yields (server, storage_options for
    mfparse/fsspec, a boto3 client)."""
    import pytest

    for mod in ("s3fs", "moto.server", "boto3"):
        pytest.importorskip(mod)
    import boto3

    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1")
    s = Server("s3")
    try:
        client = boto3.client("s3", endpoint_url=s.url, aws_access_key_id="testing", aws_secret_access_key=secret,
                              region_name="us-east-1")
        yield s, {"key": "testing", "secret": secret, "client_kwargs": {"endpoint_url": s.url}}, client
    finally:
        s.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class DaskCluster:
    """`dask scheduler` and `dask worker` processes (python -m distributed.cli.*) on 127.0.0.1,
    started with `env`, each in its own session so that a worker (nanny, worker process, scan
    children) can be killed at once; logs in `folder`."""

    def __init__(self, folder, env: dict):
        self.folder = str(folder)
        self.env = env
        self.procs = []
        self.workers = []
        self.address = None
        log = os.path.join(self.folder, "scheduler.log")
        self.scheduler = self._spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                      "--port", "0", "--no-dashboard"], log)
        deadline = time.monotonic() + 120
        while self.address is None:
            time.sleep(0.1)
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
            assert self.scheduler.poll() is None and time.monotonic() < deadline, "no scheduler:\n" + text
            for line in text.splitlines():
                if "Scheduler at:" in line:
                    self.address = line.split("Scheduler at:")[1].strip()

    def _spawn(self, argv, log):
        with open(log, "ab") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                                 cwd=self.folder, start_new_session=True)
        self.procs.append(p)
        return p

    def add_worker(self):
        n = len(self.workers)
        p = self._spawn([sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1",
                         "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{n}",
                         "--death-timeout", "60"],
                        os.path.join(self.folder, f"worker{n}.log"))
        self.workers.append(p)
        return p

    def wait_for_workers(self, n: int) -> None:
        import distributed

        with distributed.Client(self.address, timeout=60) as c:
            c.wait_for_workers(n, timeout=120)

    def alive_workers(self) -> list:
        return [p for p in self.workers if p.poll() is None]

    def kill(self, p) -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=30)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # what SIGTERM left, scan children included
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


if __name__ == "__main__":
    if sys.argv[1] == "http":
        serve_http(sys.argv[2])
    elif sys.argv[1] == "s3":
        serve_s3()
    else:
        raise SystemExit(f"unknown server {sys.argv[1]!r}")
