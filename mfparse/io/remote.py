"""Remote files through fsspec: ranged reads, one round trip per batch, a bounded block cache,
every request pinned to the version seen first, bounded retries, clean errors.

The design (what a round trip is, how blocks are fetched and cached, how versions are pinned,
what happens when a server ignores Range) is in docs/architecture.md, "Byte sources". In short:

- The constructor fetches the head and the tail of the file in one round trip (two concurrent
  ranged requests: `bytes=0-65535` and the suffix `bytes=-65536`), which also tell the size
  and the version (ETag, Last-Modified, S3 version id).
- `read_ranges` looks every range up in the block cache, rounds what is missing out to whole
  blocks, merges fetches closer than `coalesce_gap`, and sends all of them at once.
- Every ranged request carries the version seen first (If-Match, or the S3 VersionId), and
  every answer's ETag / Last-Modified / Content-Range total is compared with it: a file that
  changes while it is read raises SourceChangedError; two versions are never mixed.
- fsspec's own file objects and caches are not used: fsspec's HTTP backend reads a 200 answer
  to a Range request whole and its `parts` cache fills holes with zeros. mfparse talks to the
  filesystem's session (aiohttp for http(s), the aiobotocore client of s3fs for s3) and
  checks status, Content-Range and length of every answer itself.

fsspec, aiohttp, s3fs and huggingface_hub are imported here only (`pip install mfparse[remote]`).
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import math
import re
import threading
import time
from collections import OrderedDict, namedtuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from mfparse.io.base import (
    ByteSource,
    FileSet,
    OutsideFolderError,
    RangeNotSupportedError,
    RemoteReadError,
    SourceChangedError,
    SourceError,
    SourceSpec,
    check_range,
    clean_relpath,
    is_url,
)

__all__ = ["RemoteSource", "RemoteFileSet", "open_stream", "redact_url", "public_options", "is_url"]

KiB = 1024
MiB = 1024 * KiB

HEAD_BYTES = 64 * KiB
TAIL_BYTES = 64 * KiB
BLOCK_SIZE = 64 * KiB
CACHE_BYTES = 64 * MiB
COALESCE_GAP = 64 * KiB
TIMEOUT = 30.0
RETRIES = 3
BACKOFF = 0.25
MAX_CONCURRENCY = 100  # aiohttp's default connection pool (fsspec's http sessions); s3fs's is set to it

# query parameters whose values are secrets (presigned URLs, tokens)
_SECRET_QUERY = re.compile(r"sig|token|key|secret|passw|credential|auth|security", re.I)
# storage options whose values a SourceSpec may carry (everything else travels as a name only)
_SAFE_OPTIONS = frozenset((
    "anon", "endpoint_url", "endpoint", "region_name", "requester_pays", "version_aware", "use_ssl",
    "client_kwargs", "config_kwargs", "project", "simple_links", "same_scheme", "encoded",
    "connect_timeout", "read_timeout", "signature_version", "s3", "addressing_style",
    "max_pool_connections", "verify", "cache_regions", "default_block_size", "revision",
))
_SECRET_OPTION = re.compile(r"key|secret|token|passw|cred|auth|header|cookie|session|signature", re.I)


def redact_url(url: str) -> str:
    """The URL without user name and password, secret query values replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        items = []
        for item in query.split("&"):
            k, eq, v = item.partition("=")
            items.append(f"{k}=***" if eq and v and _SECRET_QUERY.search(unquote(k)) else item)
        query = "&".join(items)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def public_options(options) -> dict:
    """Storage options as a SourceSpec carries them: every name, values only of the known
    harmless options (endpoints, regions, flags); secrets and unknown options map to None."""
    out = {}
    for k, v in (options or {}).items():
        if k in _SAFE_OPTIONS and not _SECRET_OPTION.search(k):
            out[k] = public_options(v) if isinstance(v, dict) else v
        else:
            out[k] = None
    return out


def _secret_strings(url: str, options) -> list:
    """Every string that must never appear in a message: URL credentials, secret query values,
    string values of secret-looking storage options (recursively)."""
    out = []
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        out.append(userinfo)
        for piece in userinfo.split(":"):
            out += [piece, unquote(piece)]
    for item in parts.query.split("&"):
        k, _, v = item.partition("=")
        if v and _SECRET_QUERY.search(unquote(k)):
            out += [v, unquote(v)]

    def walk(d, secret):
        if isinstance(d, dict):
            for k, v in d.items():
                walk(v, secret or bool(_SECRET_OPTION.search(str(k))) or str(k) not in _SAFE_OPTIONS)
        elif isinstance(d, (list, tuple)):
            for v in d:
                walk(v, secret)
        elif isinstance(d, str) and secret:
            out.append(d)
        elif secret and d is not None and not isinstance(d, (bool, int, float)):
            for attr in ("login", "password", "token"):  # aiohttp.BasicAuth and the like
                s = getattr(d, attr, None)
                if isinstance(s, str):
                    out.append(s)

    walk(dict(options or {}), False)
    return sorted({s for s in out if len(s) >= 3}, key=len, reverse=True)


class _Retry(Exception):
    """Internal: a request that may succeed when sent again (timeout, dropped connection,
    short body, 5xx/429)."""

    def __init__(self, kind: str, detail: str, status: int | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


#: one answer: `offset` and `data` (what was received), the file `size` and `version` the
#: answer speaks of, `whole` when the server sent the whole file instead of a range
_Reply = namedtuple("_Reply", ("offset", "data", "size", "version", "whole"))

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.I)


def _content_range(value):
    """(first, last, total) from a Content-Range header; first/last None for `*/total`, total
    None for `a-b/*`; None when the header is absent or malformed."""
    if value is None:
        return None
    m = _CONTENT_RANGE.match(value)
    if m is None:
        return None
    a, b, total = m.groups()
    return (None if a is None else int(a), None if b is None else int(b), None if total == "*" else int(total))


class _Extents:
    """Byte extents of one file held in memory: non-overlapping (start, bytes) pieces, LRU
    evicted down to a byte cap. Fetches are made of whole blocks, so pieces are block-aligned
    except where they meet the tail fetched at discovery."""

    def __init__(self, cap: int):
        self.cap = cap
        self.nbytes = 0
        self._starts = []
        self._data = {}
        self._lru = OrderedDict()

    def lookup(self, a: int, b: int, touch: bool = True):
        """(pieces, gaps) for [a, b): pieces are (offset, memoryview) cut from held extents,
        gaps the (start, end) spans not held; both in order."""
        pieces, gaps = [], []
        pos = a
        i = max(bisect.bisect_right(self._starts, a) - 1, 0)
        starts = self._starts
        while pos < b and i < len(starts):
            s = starts[i]
            d = self._data[s]
            e = s + len(d)
            i += 1
            if e <= pos:
                continue
            if s >= b:
                break
            if s > pos:
                gaps.append((pos, s))
                pos = s
            end = min(e, b)
            pieces.append((pos, memoryview(d)[pos - s:end - s]))
            if touch:
                self._lru.move_to_end(s)
            pos = end
        if pos < b:
            gaps.append((pos, b))
        return pieces, gaps

    def insert(self, start: int, data) -> None:
        """Hold data at start (only the parts not held yet); evict down to the cap."""
        n = len(data)
        if n == 0 or n > self.cap:
            return
        for s, e in self.lookup(start, start + n, touch=False)[1]:
            piece = data if (s, e) == (start, start + n) else bytes(memoryview(data)[s - start:e - start])
            bisect.insort(self._starts, s)
            self._data[s] = piece
            self._lru[s] = None
            self.nbytes += e - s
        while self.nbytes > self.cap and self._lru:
            s, _ = self._lru.popitem(last=False)
            self.nbytes -= len(self._data.pop(s))
            del self._starts[bisect.bisect_left(self._starts, s)]

    def clear(self) -> None:
        self.__init__(self.cap)


def _assemble(offset: int, n: int, pieces) -> memoryview:
    """The n bytes at offset from (start, buffer) pieces that cover them (sorted by start)."""
    out = []
    pos, end = offset, offset + n
    for s, d in pieces:
        e = s + len(d)
        if e <= pos or s >= end:
            continue
        if s > pos:
            break
        out.append(memoryview(d)[pos - s:min(e, end) - s])
        pos = min(e, end)
        if pos >= end:
            break
    if pos < end:  # cannot happen: every gap was fetched
        raise AssertionError(f"bytes {pos}..{end} missing after the fetch")
    if len(out) == 1:
        return out[0].toreadonly()
    return memoryview(b"".join(out))


class RemoteSource(ByteSource):
    """A remote file read by ranges through fsspec (http(s)://, s3://, gs://, hf://, any fsspec
    URL). `buf` and `path` are None; `name` is the URL without credentials.

    Args:
        url: the file's URL. Credentials in it (user:password@, secret query values) are used
            for the requests and never shown.
        storage_options: fsspec options for the filesystem (e.g. `client_kwargs`, `key`,
            `secret`, `token`, `endpoint_url`). Credentials otherwise come from the usual
            fsspec / boto / huggingface_hub places.
        block_size: the unit of fetching and caching.
        head_bytes, tail_bytes: what the first round trip fetches at each end.
        cache_bytes: the block cache's cap (LRU).
        coalesce_gap: missing spans closer than this are fetched in one request.
        timeout: seconds to connect and between two reads of an answer (the attribute of
            that name may be changed later for http(s) and hf://; s3 keeps the first value).
        retries: how often a failed request (timeout, dropped connection, short body, 5xx,
            429) is sent again, after 0.25 s, 0.5 s, 1 s ... (`backoff` doubles).
        max_concurrency: requests in flight at once.
        version, size: what the file must be (a SourceSpec's); anything else is a
            SourceChangedError.

    Raises:
        FileNotFoundError, PermissionError: 404/410, 401/403 (naming the URL).
        RangeNotSupportedError: the server sends the whole file for a ranged request.
        SourceChangedError, RemoteReadError, TimeoutError: see mfparse.io.base.
    """

    def __init__(self, url: str, storage_options=None, *, block_size: int = BLOCK_SIZE,
                 head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES, cache_bytes: int = CACHE_BYTES,
                 coalesce_gap: int = COALESCE_GAP, timeout: float = TIMEOUT, retries: int = RETRIES,
                 backoff: float = BACKOFF, max_concurrency: int = MAX_CONCURRENCY, version: str | None = None,
                 size: int | None = None):
        super().__init__()
        if not is_url(url):
            raise ValueError(f"not a URL: {url!r}")
        if block_size < 1 or head_bytes < 1 or tail_bytes < 0 or max_concurrency < 1 or retries < 0:
            raise ValueError("block_size, head_bytes and max_concurrency must be >= 1, tail_bytes and retries >= 0")
        self.url = url
        self.name = redact_url(url)
        self.storage_options = dict(storage_options or {})
        self.block_size = int(block_size)
        self.head_bytes = int(head_bytes)
        self.tail_bytes = int(tail_bytes)
        self.coalesce_gap = int(coalesce_gap)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_concurrency = int(max_concurrency)
        self._secrets = _secret_strings(url, self.storage_options)
        self._cache = _Extents(int(cache_bytes))
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()
        self._steps = 0
        self._pool = None
        self.location = self.name  # what spec() carries; hf:// pins its revision here
        scheme = url.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            self._backend = _HTTP(self, url)
        elif scheme in ("s3", "s3a"):
            self._backend = _S3(self, url)
        elif scheme == "hf" and _hf_repo_file(url) is not None:
            self._backend = _HTTP(self, *_hf_to_http(self, url))
        else:
            self._backend = _Generic(self, url)
        self.version = version
        self.size = -1
        self._discover(version, size)

    # -- helpers for the backends ---------------------------------------------------------
    def _count(self, requests: int = 0, nbytes: int = 0, steps: int = 0) -> None:
        """Count requests sent and body bytes received; `steps`: this request waited for that
        many earlier answers of its own (a redirect, a HEAD after a 416), which adds round
        trips to its wave (the most of any request in the wave)."""
        with self._count_lock:
            self.stats["requests"] += requests
            self.stats["bytes"] += nbytes
            if steps > self._steps:
                self._steps = steps

    def _redact(self, text) -> str:
        text = str(text)
        if self.url != self.name:
            text = text.replace(self.url, self.name)
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _changed(self, what: str) -> SourceChangedError:
        return SourceChangedError(f"{self.name}: the file changed while it was read ({what}); "
                                  f"open it again to read the new version", self.name)

    # -- discovery ------------------------------------------------------------------------
    def _discover(self, version, size) -> None:
        replies = self._backend.discover(self.head_bytes, self.tail_bytes, version)
        first = replies[0]
        seen = first.version
        for r in replies[1:]:
            # (an answer without a version, e.g. a 416, is compared by size only)
            if r.size != first.size or (r.version is not None and seen is not None and r.version != seen):
                raise self._changed(f"size {first.size} / version {first.version} at the head, "
                                    f"{r.size} / {r.version} at the tail")
            seen = seen if seen is not None else r.version
        if size is not None and first.size != size:
            raise self._changed(f"{first.size} bytes, {size} expected")
        if version is not None and seen != version:
            raise self._changed(f"version {seen}, {version} expected")
        self.size = first.size
        self.version = seen
        for r in replies:
            if r.data is not None:
                self._cache.insert(r.offset, r.data)
        if self._backend.pinned_location is not None:
            self.location = self._backend.pinned_location

    def _check(self, reply: _Reply) -> None:
        """Refuse an answer from another version of the file than the one seen first."""
        if reply.size != self.size:
            raise self._changed(f"{reply.size} bytes now, {self.size} before")
        if reply.version is not None and self.version is not None and reply.version != self.version:
            raise self._changed(f"version {reply.version} now, {self.version} before")

    # -- the wave runner ------------------------------------------------------------------
    def _wave(self, jobs) -> list:
        """Run jobs (callables the backend understands) concurrently; retry the ones that
        failed for a transient reason, all together, after a backoff; raise the first hard
        error. Counts one round trip per max_concurrency requests of a wave."""
        results = [None] * len(jobs)
        pending = list(range(len(jobs)))
        attempt = 0
        while True:
            self._steps = 0
            outcomes = self._backend.run([jobs[i] for i in pending])
            with self._count_lock:
                self.stats["round_trips"] += math.ceil(len(pending) / self.max_concurrency) + self._steps
            retry = []
            for i, out in zip(pending, outcomes):
                if isinstance(out, _Retry):
                    retry.append((i, out))
                elif isinstance(out, BaseException):
                    raise out
                else:
                    results[i] = out
            if not retry:
                return results
            if attempt >= self.retries:
                raise self._final(retry[0][1], attempt + 1)
            time.sleep(self.backoff * (2 ** attempt))
            attempt += 1
            pending = [i for i, _ in retry]

    def _final(self, r: _Retry, tries: int) -> Exception:
        detail = self._redact(r.detail)
        tried = "1 try" if tries == 1 else f"{tries} tries"
        if r.kind == "timeout":
            return TimeoutError(errno.ETIMEDOUT, f"{self.name}: no answer within {self.timeout:g} s "
                                f"({tried}): {detail}")
        return RemoteReadError(f"{self.name}: {detail} ({tried})", self.name, r.status)

    # -- the ByteSource contract ----------------------------------------------------------
    def read_ranges(self, ranges, block: int | None = None) -> list:
        ranges = [(int(o), int(n)) for o, n in ranges]
        for o, n in ranges:
            check_range(self, o, n)
        with self._lock:
            held = []
            need = []
            bs = self.block_size if block is None else max(int(block), 1)
            for o, n in ranges:
                pieces, gaps = self._cache.lookup(o, o + n) if n else ([], [])
                held.append(pieces)
                for s, e in gaps:
                    need.append(((s // bs) * bs, min(-(-e // bs) * bs, self.size)))
            fetch = self._plan(need)
            got = []
            if fetch:
                replies = self._wave([("get", s, e) for s, e in fetch])
                for (s, e), r in zip(fetch, replies):
                    self._check(r)
                    got.append((s, r.data))
                for s, d in got:
                    self._cache.insert(s, d)
            starts = [s for s, _ in got]
            out = []
            for (o, n), pieces in zip(ranges, held):
                if n == 0:
                    out.append(memoryview(b""))
                    continue
                i = max(bisect.bisect_right(starts, o) - 1, 0)
                while i < len(got) and got[i][0] < o + n:
                    pieces.append(got[i])
                    i += 1
                pieces.sort(key=lambda p: p[0])
                out.append(_assemble(o, n, pieces))
            return out

    def _plan(self, need) -> list:
        """The requests for the missing spans: held bytes cut out, neighbours closer than
        coalesce_gap merged."""
        spans = []
        for s, e in need:
            spans += self._cache.lookup(s, e, touch=False)[1]
        spans.sort()
        out = []
        for s, e in spans:
            if out and s - out[-1][1] <= self.coalesce_gap:
                if e > out[-1][1]:
                    out[-1][1] = e
            else:
                out.append([s, e])
        return [(s, e) for s, e in out]

    def prefetch(self, ranges, block: int | None = None) -> None:
        self.read_ranges(ranges, block)

    def held(self) -> list:
        with self._lock:
            c = self._cache
            return [(st, c._data[st]) for st in c._starts]

    def spec(self) -> SourceSpec:
        return SourceSpec(self.location, self.size, self.version, public_options(self.storage_options))

    def siblings(self) -> "RemoteFileSet":
        """The files under this file's URL prefix (its folder)."""
        parts = urlsplit(self.url)
        folder = parts.path.rpartition("/")[0]
        url = urlunsplit((parts.scheme, parts.netloc, folder, "", ""))
        opts = {"block_size": self.block_size, "timeout": self.timeout, "retries": self.retries,
                "backoff": self.backoff, "max_concurrency": self.max_concurrency}
        return RemoteFileSet(url, self.storage_options, **opts)

    def close(self) -> None:
        self._cache.clear()
        smap = getattr(self, "_sparse_map", None)
        if smap is not None:
            self._sparse_map = None
            smap.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __repr__(self) -> str:
        return f"RemoteSource({self.name!r}, size={self.size}, version={self.version!r})"


# -- HTTP(S) (and hf:// translated to the Hub's resolve URLs) ---------------------------------

class _AsyncBackend:
    """Runs a wave of jobs as coroutines on fsspec's I/O loop."""

    pinned_location = None

    def run(self, jobs) -> list:
        from fsspec.asyn import sync

        async def one(sem, job):
            async with sem:
                try:
                    return await self.do(job)
                except BaseException as e:  # handed to the wave runner, which raises it
                    return e

        async def wave():
            sem = asyncio.Semaphore(self.src.max_concurrency)
            return await asyncio.gather(*(one(sem, j) for j in jobs))

        return sync(self.loop, wave)

    async def do(self, job):
        if job[0] == "get":
            return await self.get(job[1], job[2], self.src.version)
        return await self.get(job[2], job[3], job[4])  # ("raw", "get", start, end, pin): discovery

    def discover(self, head: int, tail: int, version) -> list:
        jobs = [("get", 0, head, version)]
        if tail:
            jobs.append(("get", -tail, None, version))
        return self.src._wave([("raw",) + j for j in jobs])


class _HTTP(_AsyncBackend):
    def __init__(self, src: RemoteSource, url: str, headers=None, hf=None):
        import fsspec

        self.src = src
        self.url = url
        self.hf = hf  # (parsed uri, endpoint) for hf://, else None
        opts = dict(src.storage_options) if hf is None else {}
        self.fs = fsspec.filesystem("http", **opts)
        self.loop = self.fs.loop
        self.kwargs = {k: v for k, v in self.fs.kwargs.items() if k not in ("headers", "timeout")}
        self.headers = dict(self.fs.kwargs.get("headers") or {})
        self.headers.update(headers or {})

    @property
    def client_timeout(self):
        import aiohttp

        t = self.src.timeout
        return aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)

    async def get(self, start: int, end, pin) -> _Reply:
        import aiohttp

        src = self.src
        headers = dict(self.headers)
        headers["Accept-Encoding"] = "identity"
        headers["Range"] = f"bytes={start}" if start < 0 else f"bytes={start}-{end - 1}"
        if pin is not None and self.hf is None:
            if pin.startswith('"'):
                headers["If-Match"] = pin
            elif pin.startswith("last-modified:"):
                headers["If-Unmodified-Since"] = pin[len("last-modified:"):]
        session = await self.fs.set_session()
        src._count(requests=1)
        try:
            async with session.get(self.fs.encode_url(self.url), headers=headers, timeout=self.client_timeout,
                                   **self.kwargs) as r:
                if r.history:  # each redirect was a request and an answer waited for
                    src._count(requests=len(r.history), steps=len(r.history))
                return await self._answer(r, start, end)
        except (SourceError, FileNotFoundError, PermissionError, _Retry):
            raise
        except asyncio.TimeoutError as e:
            raise _Retry("timeout", f"{type(e).__name__} {e}") from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as e:
            raise _Retry("connection", f"connection failed or lost ({type(e).__name__}: {src._redact(e)})") from None
        except aiohttp.ClientError as e:
            raise RemoteReadError(f"{src.name}: {type(e).__name__}: {src._redact(e)}", src.name) from None

    def _version(self, r) -> str | None:
        etag = r.headers.get("ETag")
        if etag:
            return etag
        lm = r.headers.get("Last-Modified")
        return f"last-modified:{lm}" if lm else None

    async def _answer(self, r, start: int, end) -> _Reply:
        src = self.src
        status = r.status
        if self.hf is not None:
            self._pin_hf(r)
        if status in (404, 410):
            raise FileNotFoundError(errno.ENOENT, f"not found (HTTP {status})", src.name)
        if status in (401, 403):
            raise PermissionError(errno.EACCES, f"access denied (HTTP {status})", src.name)
        if status == 412:
            raise src._changed(f"HTTP 412: the server refused the request pinned to version {src.version}")
        if status in (408, 425, 429) or status >= 500:
            raise _Retry("status", f"HTTP {status}", status)
        enc = r.headers.get("Content-Encoding", "identity").strip().lower()
        if enc not in ("identity", ""):
            raise RemoteReadError(f"{src.name}: the server sent a {enc}-encoded body for a ranged request", src.name)
        version = self._version(r)
        want = -start if start < 0 else end - start
        if status == 416:
            cr = _content_range(r.headers.get("Content-Range"))
            total = cr[2] if cr is not None else None
            if total is None:
                total = await self._head_size()
            if total == 0 and src.size < 0:  # discovery of an empty file: no range is satisfiable
                return _Reply(0, b"", 0, version, False)
            if src.size >= 0 and total != src.size:
                raise src._changed(f"HTTP 416, {total} bytes now, {src.size} before")
            raise RemoteReadError(f"{src.name}: the server refused bytes {self._asked(start, end)} (HTTP 416)",
                                  src.name, 416)
        if status == 206:
            cr = _content_range(r.headers.get("Content-Range"))
            if cr is None or cr[0] is None or cr[2] is None:
                raise RemoteReadError(f"{src.name}: a 206 answer without a usable Content-Range "
                                      f"({r.headers.get('Content-Range')!r})", src.name, 206)
            first, last, total = cr
            if start < 0:
                ok = last == total - 1 and first == max(total - want, 0)
            else:
                ok = first == start and last == min(end, total) - 1
            if not ok:
                raise RemoteReadError(f"{src.name}: asked for bytes {self._asked(start, end)}, "
                                      f"got {first}-{last}/{total}", src.name, 206)
            n = last - first + 1
            clen = r.content_length
            if clen is not None and clen != n:
                raise RemoteReadError(f"{src.name}: Content-Length {clen} for a {n}-byte range", src.name, 206)
            return _Reply(first, await self._body(r, n), total, version, False)
        if status == 200:
            # the whole file: acceptable only when it is no more than what was asked for (a small
            # file's head or tail, or a read of the whole file); the body is never read past that
            whole_read = start == 0 and src.size >= 0 and end == src.size
            if not (start <= 0):
                self._refuse(r)
            clen = r.content_length
            if clen is not None:
                if clen > want and not whole_read:
                    self._refuse(r)
                return _Reply(0, await self._body(r, clen), clen, version, True)
            data = await self._body(r, want + 1, exact=False)
            if len(data) > want:
                self._refuse(r)
            return _Reply(0, data, len(data), version, True)
        raise RemoteReadError(f"{src.name}: unexpected HTTP {status} to a ranged request", src.name, status)

    @staticmethod
    def _asked(start: int, end) -> str:
        return f"-{-start} (the last {-start})" if start < 0 else f"{start}-{end - 1}"

    def _refuse(self, r):
        r.close()
        raise RangeNotSupportedError(
            f"{self.src.name}: the server ignores Range requests (HTTP 200 with the whole body); "
            f"read it as a stream (mfparse.io.remote.open_stream) or download it", self.src.name)

    async def _body(self, r, n: int, exact: bool = True) -> bytes:
        """At most n bytes of the body (exactly n unless exact is False); never more."""
        chunks = []
        got = 0
        while got < n:
            c = await r.content.read(min(n - got, 1 << 20))
            if not c:
                break
            chunks.append(c)
            got += len(c)
            self.src._count(nbytes=len(c))
        if exact and got < n:
            raise _Retry("short", f"the body ended after {got} of {n} bytes")
        if got >= n and not r.content.at_eof():
            r.close()  # not keeping a connection with unread bytes
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _head_size(self):
        session = await self.fs.set_session()
        headers = dict(self.headers)
        headers["Accept-Encoding"] = "identity"
        self.src._count(requests=1, steps=1)  # it waited for the 416
        async with session.head(self.fs.encode_url(self.url), headers=headers, timeout=self.client_timeout,
                                allow_redirects=True, **self.kwargs) as r:
            return r.content_length if r.status < 300 else None

    # hf://: the first answer names the commit; later requests go to that commit
    def _pin_hf(self, r) -> None:
        if self.pinned_location is not None:
            return
        commit = None
        for resp in (*r.history, r):
            commit = resp.headers.get("X-Repo-Commit") or commit
        if commit and re.fullmatch(r"[0-9a-f]{40}", commit):
            uri, endpoint = self.hf
            self.url = _hf_resolve_url(uri, commit, endpoint)
            self.pinned_location = _hf_location(uri, commit)


_HfFile = namedtuple("_HfFile", ("type", "id", "revision", "path_in_repo"))
_HF_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def _hf_repo_file(url: str):
    """The parts of hf://[models/|datasets/|spaces/]org/name[@revision]/path (revision may be
    percent-encoded, or refs/pr/N, refs/convert/X unencoded); None for a repository without a
    path and for buckets (those go through HfFileSystem)."""
    parts = url.split("://", 1)[1].strip("/").split("/")
    kind = "model"
    if parts[0] == "buckets":
        return None
    if parts[0] in _HF_TYPES:
        kind = _HF_TYPES[parts.pop(0)]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{redact_url(url)}: an hf:// URL names org/name[@revision]/path")
    name, _, revision = parts[1].partition("@")
    rest = parts[2:]
    if revision == "refs" and len(rest) >= 2 and rest[0] in ("pr", "convert"):
        revision, rest = f"refs/{rest[0]}/{rest[1]}", rest[2:]
    if not rest:
        return None
    return _HfFile(kind, f"{parts[0]}/{name}", unquote(revision) or None, "/".join(rest))


_HF_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def _hf_resolve_url(f: _HfFile, revision: str, endpoint: str) -> str:
    """The Hub's download URL: {endpoint}/[datasets/|spaces/]org/name/resolve/{revision}/{path}."""
    return (f"{endpoint.rstrip('/')}/{_HF_PREFIX[f.type]}{f.id}/resolve/{quote(revision, safe='')}/"
            f"{quote(f.path_in_repo)}")


def _hf_location(f: _HfFile, revision: str | None) -> str:
    """hf://[datasets/|spaces/]org/name[@revision]/path."""
    rev = "" if revision is None else "@" + (revision if re.fullmatch(r"refs/(pr|convert)/[^/]+", revision)
                                             else quote(revision, safe=""))
    return f"hf://{_HF_PREFIX[f.type]}{f.id}{rev}/{f.path_in_repo}"


def _hf_to_http(src: RemoteSource, url: str):
    """(resolve URL, auth headers, hf state) for an hf:// file: the Hub's resolve endpoint
    answers Range requests (redirecting large files to its CDN) and names the commit in
    X-Repo-Commit, which pins every later request to that commit."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers

    uri = _hf_repo_file(url)
    opts = src.storage_options
    endpoint = (opts.get("endpoint") or constants.ENDPOINT).rstrip("/")
    token = opts.get("token")
    headers = build_hf_headers(token=token)  # the token given, else HF_TOKEN / the saved login
    auth = [v for k, v in headers.items() if k.lower() == "authorization"]
    secret = {token} if isinstance(token, str) else set()
    secret |= {piece for v in auth for piece in (v, v.split()[-1])}
    src._secrets = sorted({*src._secrets, *(x for x in secret if len(x) >= 3)}, key=len, reverse=True)
    revision = uri.revision or constants.DEFAULT_REVISION
    src.location = _hf_location(uri, uri.revision)
    return _hf_resolve_url(uri, revision, endpoint), headers, (uri, endpoint)


# -- S3 (s3fs's aiobotocore client) -----------------------------------------------------------

class _S3(_AsyncBackend):
    def __init__(self, src: RemoteSource, url: str):
        import s3fs

        self.src = src
        opts = dict(src.storage_options)
        cfg = dict(opts.get("config_kwargs") or {})
        # one attempt per call: the retries are mfparse's, so that stats count every request
        cfg["retries"] = {"mode": "standard", "total_max_attempts": 1}
        cfg.setdefault("max_pool_connections", src.max_concurrency)  # botocore's default is 10
        cfg.setdefault("connect_timeout", src.timeout)
        cfg.setdefault("read_timeout", src.timeout)
        opts["config_kwargs"] = cfg
        self.fs = s3fs.S3FileSystem(**opts)
        self.loop = self.fs.loop
        self.bucket, self.key, self.version_id = self.fs.split_path(url)
        if not self.key:
            raise IsADirectoryError(errno.EISDIR, "a bucket, not a file", src.name)

    async def get(self, start: int, end, pin) -> _Reply:
        from botocore.exceptions import BotoCoreError, ClientError

        src = self.src
        kw = {"Bucket": self.bucket, "Key": self.key,
              "Range": f"bytes={start}" if start < 0 else f"bytes={start}-{end - 1}"}
        if pin is not None and pin.startswith("version-id:"):
            kw["VersionId"] = pin[len("version-id:"):]
        elif pin is not None:
            kw["IfMatch"] = pin
        if self.version_id and "VersionId" not in kw:
            kw["VersionId"] = self.version_id
        s3 = await self.fs.set_session()
        src._count(requests=1)
        failure = None
        try:
            resp = await s3.get_object(**kw)
        except ClientError as e:
            failure = e
        except (asyncio.TimeoutError, BotoCoreError, OSError) as e:
            kind = "timeout" if "Timeout" in type(e).__name__ or isinstance(e, asyncio.TimeoutError) else "connection"
            raise _Retry(kind, f"{type(e).__name__}: {src._redact(e)}") from None
        if failure is not None:
            return await self._client_error(failure, start, end, pin)
        body = resp["Body"]
        try:
            vid = resp.get("VersionId")
            version = f"version-id:{vid}" if vid and vid != "null" else resp.get("ETag")
            want = -start if start < 0 else end - start
            cr = _content_range(resp.get("ContentRange"))
            clen = resp.get("ContentLength")
            if cr is not None and cr[0] is not None and cr[2] is not None:
                first, last, total = cr
                ok = (last == total - 1 and first == max(total - want, 0)) if start < 0 else \
                    (first == start and last == min(end, total) - 1)
                if not ok:
                    raise RemoteReadError(f"{src.name}: asked for bytes {_HTTP._asked(start, end)}, got "
                                          f"{first}-{last}/{total}", src.name, 206)
                return _Reply(first, await self._body(body, last - first + 1), total, version, False)
            # no Content-Range: the whole object (an S3-compatible store that ignores Range)
            whole_read = start == 0 and src.size >= 0 and end == src.size
            if clen is None or start > 0 or (clen > want and not whole_read):
                raise RangeNotSupportedError(
                    f"{src.name}: the store ignores Range requests (the whole object came back); read it "
                    f"as a stream (mfparse.io.remote.open_stream) or download it", src.name)
            return _Reply(0, await self._body(body, clen), clen, version, True)
        finally:
            body.close()

    async def _body(self, body, n: int) -> bytes:
        chunks = []
        got = 0
        try:
            while got < n:
                c = await body.read(min(n - got, 1 << 20))
                if not c:
                    break
                chunks.append(c)
                got += len(c)
                self.src._count(nbytes=len(c))
        except Exception as e:  # dropped connection, timeout, incomplete read
            kind = "timeout" if isinstance(e, asyncio.TimeoutError) else "connection"
            raise _Retry(kind, f"connection lost after {got} of {n} bytes ({type(e).__name__})") from None
        if got < n:
            raise _Retry("short", f"the body ended after {got} of {n} bytes")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _client_error(self, e, start, end, pin):
        src = self.src
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "412") or status == 412:
            raise src._changed(f"S3 PreconditionFailed: the object is no longer version {pin}")
        if code in ("NoSuchVersion",) or (pin and pin.startswith("version-id:") and status == 404
                                            and code not in ("NoSuchKey", "NoSuchBucket")):
            raise src._changed(f"S3 {code}: version {pin} is gone")
        if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
            raise FileNotFoundError(errno.ENOENT, f"not found (S3 {code or status})", src.name)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status in (401, 403):
            raise PermissionError(errno.EACCES, f"access denied (S3 {code or status})", src.name)
        if code == "InvalidRange" or status == 416:
            size, version = await self._head_size()
            if size == 0 and src.size < 0:
                return _Reply(0, b"", 0, version, False)
            if src.size >= 0 and size != src.size:
                raise src._changed(f"S3 InvalidRange, {size} bytes now, {src.size} before")
            raise RemoteReadError(f"{src.name}: the store refused bytes {_HTTP._asked(start, end)} (S3 InvalidRange)",
                                  src.name, 416)
        if status is not None and (status >= 500 or status in (408, 429)) or code in ("SlowDown", "RequestTimeout"):
            raise _Retry("status", f"S3 {code or status}", status)
        message = src._redact(err.get("Message", ""))
        raise RemoteReadError(f"{src.name}: S3 {code or status}: {message}", src.name, status)

    async def _head_size(self):
        s3 = await self.fs.set_session()
        self.src._count(requests=1, steps=1)  # it waited for the InvalidRange
        kw = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            kw["VersionId"] = self.version_id
        try:
            head = await s3.head_object(**kw)
        except Exception as e:  # botocore's ClientError, a dropped connection
            failure = f"{type(e).__name__}: {self.src._redact(e)}"
        else:
            failure = None
        if failure is not None:
            raise RemoteReadError(f"{self.src.name}: the size of an object that refuses ranges is unknown "
                                  f"(HEAD: {failure})", self.src.name)
        vid = head.get("VersionId")
        return head.get("ContentLength"), (f"version-id:{vid}" if vid and vid != "null" else head.get("ETag"))


# -- any other fsspec filesystem (gs://, memory://, hf:// buckets, ...) -------------------------

_VERSION_KEYS = (("VersionId", "version-id"), ("version_id", "version-id"), ("generation", "generation"),
                 ("ETag", "etag"), ("etag", "etag"), ("blob_id", "blob"), ("sha256", "sha256"),
                 ("LastModified", "mtime"), ("last_modified", "mtime"), ("mtime", "mtime"),
                 ("updated", "mtime"), ("modified", "mtime"), ("created", "mtime"))


def _info_version(info: dict) -> str | None:
    for key, label in _VERSION_KEYS:
        v = info.get(key)
        if v is not None and v != "":
            return f"{label}:{v}"
    return None


class _Generic:
    """fsspec's cat_file(path, start, end) in concurrent calls. The size is pinned (a short
    answer is an error); the version is compared once, from info(), at discovery: backends
    without conditional reads cannot pin each request (see docs/architecture.md)."""

    pinned_location = None

    def __init__(self, src: RemoteSource, url: str):
        from fsspec.core import url_to_fs

        self.src = src
        self.fs, self.path = url_to_fs(url, **src.storage_options)
        self.is_async = bool(getattr(self.fs, "async_impl", False))
        self.loop = getattr(self.fs, "loop", None) if self.is_async else None

    def run(self, jobs) -> list:
        if self.is_async:
            from fsspec.asyn import sync

            async def one(sem, job):
                async with sem:
                    try:
                        if job[0] == "info":
                            return self._info(await self.fs._info(self.path))
                        return self._reply(job, await self.fs._cat_file(self.path, start=job[1], end=job[2]))
                    except BaseException as e:
                        return self._map(e)

            async def wave():
                sem = asyncio.Semaphore(self.src.max_concurrency)
                return await asyncio.gather(*(one(sem, j) for j in jobs))

            return sync(self.loop, wave)

        def one_sync(job):
            try:
                if job[0] == "info":
                    return self._info(self.fs.info(self.path))
                return self._reply(job, self.fs.cat_file(self.path, start=job[1], end=job[2]))
            except BaseException as e:
                return self._map(e)

        if len(jobs) == 1:
            return [one_sync(jobs[0])]
        if self.src._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.src._pool = ThreadPoolExecutor(max_workers=self.src.max_concurrency, thread_name_prefix="mfparse-io")
        return list(self.src._pool.map(one_sync, jobs))

    def _info(self, info: dict):
        self.src._count(requests=1)
        if info.get("type", "file") == "directory":
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", self.src.name)
        return info

    def _reply(self, job, data):
        src = self.src
        src._count(requests=1, nbytes=len(data))
        if job[0] == "head":  # discovery: checked once info() has told the size
            return data
        return self._checked(job[1], job[2], data, src.size, src.version)

    def _checked(self, start: int, end: int, data, size: int, version) -> _Reply:
        src = self.src
        want = min(end, size) - start
        if len(data) != want:
            if len(data) > want:
                raise RemoteReadError(f"{src.name}: asked for {want} bytes at {start}, got {len(data)}", src.name)
            raise _Retry("short", f"asked for {want} bytes at {start}, got {len(data)}")
        return _Reply(start, data, size, version, False)

    def _map(self, e):
        src = self.src
        if isinstance(e, (SourceError, _Retry, IsADirectoryError)):
            return e
        if isinstance(e, FileNotFoundError):
            return FileNotFoundError(errno.ENOENT, "not found", src.name)
        if isinstance(e, PermissionError):
            return PermissionError(errno.EACCES, "access denied", src.name)
        if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
            return _Retry("timeout", f"{type(e).__name__}: {src._redact(e)}")
        if isinstance(e, (ConnectionError, OSError)):
            return _Retry("connection", f"{type(e).__name__}: {src._redact(e)}")
        if isinstance(e, Exception):
            return RemoteReadError(f"{src.name}: {type(e).__name__}: {src._redact(e)}", src.name)
        return e

    def discover(self, head: int, tail: int, version) -> list:
        src = self.src
        info, data = src._wave([("info",), ("head", 0, head)])
        size = int(info["size"])
        version = _info_version(info)
        try:
            replies = [self._checked(0, head, data, size, version)]
        except _Retry:
            raise src._changed(f"{len(data)} bytes at the head of a {size}-byte file") from None
        t0 = max(size - tail, min(head, size))
        if t0 < size:
            src.size, src.version = size, version  # the tail is checked against what info() said
            try:
                replies += src._wave([("get", t0, size)])
            finally:
                src.size = -1
        return replies


# -- streams over a remote file ---------------------------------------------------------------

class _RemoteStreamFile:
    """A forward-only binary file object over one GET (the whole body, never all in memory)."""

    def __init__(self, url: str, storage_options, timeout: float):
        import aiohttp
        import fsspec
        from fsspec.asyn import sync

        self.name = redact_url(url)
        self._secrets = _secret_strings(url, storage_options)
        self._fs = fsspec.filesystem("http", **dict(storage_options or {}))
        self._sync = sync
        kwargs = {k: v for k, v in self._fs.kwargs.items() if k not in ("timeout", "headers")}
        headers = dict(self._fs.kwargs.get("headers") or {})
        headers["Accept-Encoding"] = "identity"  # the file's bytes, and its length in Content-Length
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

        async def start():
            session = await self._fs.set_session()
            r = await session.get(self._fs.encode_url(url), headers=headers, timeout=timeout, **kwargs)
            if r.status in (404, 410):
                r.close()
                raise FileNotFoundError(errno.ENOENT, f"not found (HTTP {r.status})", self.name)
            if r.status in (401, 403):
                r.close()
                raise PermissionError(errno.EACCES, f"access denied (HTTP {r.status})", self.name)
            if r.status != 200:
                r.close()
                raise RemoteReadError(f"{self.name}: HTTP {r.status}", self.name, r.status)
            return r

        self._r = self._call(start)
        self.size = self._r.content_length

    def _call(self, fn, *args):
        import aiohttp

        try:
            return self._sync(self._fs.loop, fn, *args)
        except (SourceError, FileNotFoundError, PermissionError):
            raise
        except asyncio.TimeoutError:
            raise TimeoutError(errno.ETIMEDOUT, f"{self.name}: no data within the timeout") from None
        except (aiohttp.ClientError, ConnectionError) as e:
            text = str(e)
            for s in self._secrets:
                text = text.replace(s, "***")
            raise RemoteReadError(f"{self.name}: {type(e).__name__}: {text}", self.name) from None

    def read(self, n: int = -1) -> bytes:
        async def rd():
            return await self._r.content.read(n)

        return self._call(rd)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._r.close()


def open_stream(url: str, storage_options=None, *, max_bytes: int | None = None, timeout: float = TIMEOUT):
    """A forward-only StreamSource over a remote file: one GET read front to back, for servers
    that ignore Range (RangeNotSupportedError) or whole-file scans. http(s) only here; other
    schemes are read through fsspec's file object without its readahead cache."""
    from mfparse.io.stream import STREAM_BUFFER, StreamSource

    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        f = _RemoteStreamFile(url, storage_options, timeout)
    else:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url, **dict(storage_options or {}))
        f = fs.open(path, "rb", cache_type="none", block_size=1 << 20)
    return StreamSource(f, max_bytes=max_bytes or STREAM_BUFFER, name=redact_url(url),
                        size=getattr(f, "size", None))


# -- FileSet over a remote prefix -------------------------------------------------------------

class RemoteFileSet(FileSet):
    """The files under a remote prefix (an http(s) folder, an s3/gs prefix, an hf:// repo).
    `open(relpath)` is the containment check (no absolute paths, no `..` out of the prefix)
    and returns a RemoteSource; `list()` uses the filesystem's find; `exists` asks the
    filesystem (HEAD for http), never downloading a file."""

    def __init__(self, url_prefix: str, storage_options=None, **source_options):
        if not is_url(url_prefix):
            raise ValueError(f"not a URL: {url_prefix!r}")
        self.url = url_prefix.rstrip("/")
        self.root = redact_url(self.url)
        self.storage_options = dict(storage_options or {})
        self.source_options = source_options
        self._fs = None
        self._hf = _hf_repo(self.url)   # (repo type, repo id, revision, folder) of an hf:// repo
        self._hf_files = None            # {relpath: size} from the Hub's tree, once listed

    def _target(self, relpath: str) -> str:
        rel = clean_relpath(relpath)
        if rel == ".":
            raise IsADirectoryError(errno.EISDIR, "the folder itself, not a file", self.root)
        scheme = self.url.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            parts = urlsplit(self.url)
            path = parts.path.rstrip("/") + "/" + quote(rel, safe="/")
            return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        return f"{self.url}/{rel}"

    def location(self, relpath: str) -> str:
        return redact_url(self._target(relpath))

    def open(self, relpath: str) -> RemoteSource:
        return RemoteSource(self._target(relpath), self.storage_options, **self.source_options)

    def _filesystem(self):
        if self._fs is None:
            from fsspec.core import url_to_fs

            self._fs = url_to_fs(self.url, **self.storage_options)
        return self._fs

    def _is_http(self) -> bool:
        return self.url.split("://", 1)[0].lower() in ("http", "https")

    def _failed(self, e: BaseException, where: str) -> Exception:
        """The filesystem's exception as a clean one that names the location, not the secrets."""
        if isinstance(e, (SourceError, OutsideFolderError)):
            return e
        if isinstance(e, FileNotFoundError):
            return FileNotFoundError(errno.ENOENT, "not found", where)
        if isinstance(e, PermissionError):
            return PermissionError(errno.EACCES, "access denied", where)
        text = str(e)
        for secret in _secret_strings(self.url, self.storage_options):
            text = text.replace(secret, "***")
        if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
            return TimeoutError(errno.ETIMEDOUT, f"{where}: no answer ({type(e).__name__})")
        return RemoteReadError(f"{where}: {type(e).__name__}: {text}", where)

    def exists(self, relpath: str) -> bool:
        """True when relpath names a file of the set (for http: when its URL answers a HEAD
        with 2xx, which a folder's index page does too)."""
        try:
            target = self._target(relpath)
        except (ValueError, IsADirectoryError):
            return False
        if self._hf is not None:
            return clean_relpath(relpath) in self._hf_tree()
        try:
            if self._is_http():
                return self._http_exists(target)
            fs, _ = self._filesystem()
            return bool(fs.isfile(fs._strip_protocol(target)))
        except FileNotFoundError:
            return False
        except Exception as e:
            raise self._failed(e, redact_url(target)) from None

    def size(self, relpath: str) -> int | None:
        """The file's size from the server (HEAD for http; the filesystem's info otherwise)."""
        target = self._target(relpath)
        if self._hf is not None:
            return self._hf_tree().get(clean_relpath(relpath))
        try:
            if self._is_http():
                return self._http_head(target)[1]
            fs, _ = self._filesystem()
            info = fs.info(fs._strip_protocol(target))
            return None if info.get("type") == "directory" else int(info["size"])
        except FileNotFoundError:
            return None
        except Exception as e:
            raise self._failed(e, redact_url(target)) from None

    def _http_exists(self, url: str) -> bool:
        return self._http_head(url)[0]

    def _http_head(self, url: str) -> tuple:
        """(exists, Content-Length or None) from a HEAD."""
        import aiohttp
        from fsspec.asyn import sync

        fs, _ = self._filesystem()
        t = self.source_options.get("timeout", TIMEOUT)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)

        async def head():
            session = await fs.set_session()
            kw = {k: v for k, v in fs.kwargs.items() if k not in ("headers", "timeout")}
            headers = dict(fs.kwargs.get("headers") or {})
            headers["Accept-Encoding"] = "identity"
            async with session.head(fs.encode_url(url), headers=headers, allow_redirects=True, timeout=timeout,
                                    **kw) as r:
                if r.status in (401, 403):
                    raise PermissionError(errno.EACCES, f"access denied (HTTP {r.status})", redact_url(url))
                ok = r.status < 300
                return ok, (r.content_length if ok else None)

        return sync(fs.loop, head)

    def list(self) -> list:
        """Every file under the prefix, as sorted relative paths (for http: the links of the
        folder's index pages that stay under the prefix)."""
        if self._hf is not None:
            return sorted(self._hf_tree())
        fs, root = self._filesystem()
        http = self._is_http()
        prefix = self.url + "/" if http else root.rstrip("/") + "/"
        try:
            found = fs.find(prefix if http else root)
        except Exception as e:
            raise self._failed(e, self.root) from None
        out = []
        for p in found:
            if not p.startswith(prefix):
                continue  # links out of the prefix (an HTML index may hold any URL)
            rel = unquote(p[len(prefix):]) if http else p[len(prefix):]
            try:
                rel = clean_relpath(rel)
            except ValueError:
                continue
            if rel != ".":
                out.append(rel)
        return sorted(set(out))

    # -- hf:// repositories: the Hub's tree listing (one paginated request), files by resolve URL
    def _hf_tree(self) -> dict:
        if self._hf_files is None:
            from huggingface_hub import HfApi

            kind, repo_id, revision, folder = self._hf
            opts = self.storage_options
            api = HfApi(endpoint=opts.get("endpoint"), token=opts.get("token"))
            files = {}
            try:
                for item in api.list_repo_tree(repo_id, folder or None, recursive=True, revision=revision,
                                               repo_type=kind):
                    if getattr(item, "size", None) is None or not hasattr(item, "blob_id"):
                        continue  # a folder
                    rel = item.path[len(folder) + 1:] if folder else item.path
                    files[rel] = int(item.size)
            except Exception as e:
                if type(e).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError"):
                    raise FileNotFoundError(errno.ENOENT, "not found on the Hub", self.root) from None
                if type(e).__name__ == "GatedRepoError" or "401" in str(e) or "403" in str(e):
                    raise PermissionError(errno.EACCES, "access denied", self.root) from None
                raise self._failed(e, self.root) from None
            self._hf_files = files
        return self._hf_files


def _hf_repo(url: str):
    """(repo type, repo id, revision or None, folder in the repo) of an hf:// URL that names a
    repository or a folder of one; None for anything else."""
    if url.split("://", 1)[0].lower() != "hf":
        return None
    parts = url.split("://", 1)[1].strip("/").split("/")
    if not parts or parts[0] == "buckets":
        return None
    kind = "model"
    if parts[0] in _HF_TYPES:
        kind = _HF_TYPES[parts.pop(0)]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    name, _, revision = parts[1].partition("@")
    rest = parts[2:]
    if revision == "refs" and len(rest) >= 2 and rest[0] in ("pr", "convert"):
        revision, rest = f"refs/{rest[0]}/{rest[1]}", rest[2:]
    return kind, f"{parts[0]}/{name}", unquote(revision) or None, "/".join(rest)


def is_remote_folder(url: str) -> bool:
    """True for a URL that names a folder by its form: a path ending in "/", or an hf://
    repository without a file in it."""
    if url.split("://", 1)[0].lower() == "hf":
        return _hf_repo_file(url) is None
    return urlsplit(url).path.endswith("/") or urlsplit(url).path in ("", "/")
