"""What `scan_many` scans: local files and folders, globs, `@list.txt` files and fsspec URLs or
prefixes, expanded lazily into one Item per file (generators all the way: a source of a million
files is never a list in memory, except where a filesystem itself answers a listing in one
piece, see `_remote`).

An Item is what crosses to a worker: (location, size, name), plain strings and an int, where
`location` is what the worker opens (a path or the URL itself, credentials included) and
`name` what the report shows (the path as walked, or the URL without credentials). An Unlisted
is an input that could not be expanded (a folder that cannot be listed, a glob that matches
nothing, a list file that cannot be read, a remote listing that failed): it becomes an error
record, never a silent skip.
"""

from __future__ import annotations

import os
from collections import namedtuple

from mfparse.io.base import GLOB_CHARS, is_glob, is_url

#: one file to scan: `location` (a path, or a URL with whatever credentials it carries), `size`
#: in bytes (None when unknown: the worker finds out), `name` (the report's path)
Item = namedtuple("Item", ("location", "size", "name"))
#: an input that could not be expanded: `name` as the report shows it, `message` what is wrong
Unlisted = namedtuple("Unlisted", ("name", "message"))

#: @list files may name other @list files, this deep at most
MAX_LIST_DEPTH = 8


def iter_sources(sources, storage_options=None):
    """Items and Unlisteds for the given sources, in the order given, lazily:

    - a local file: itself; a local folder: every file under it, walked as `mfparse scan`
      walks folders (mfparse.scan.iter_files: sorted, links to files followed, a folder that
      cannot be listed reported);
    - a pattern with `*`, `?` or `[...]` that is not an existing path: glob.iglob (`**` spans
      folders); each match expanded as above; no match is an Unlisted;
    - `@FILE`: the sources listed in FILE, one a line (blank lines and lines starting with `#`
      are skipped, surrounding whitespace is dropped; a list may name other lists); a path
      that really starts with @ is written `./@name`;
    - a URL (`s3://bucket/models/`, `https://host/file.pt`, `hf://org/model`, any fsspec URL):
      the file, or every file under the prefix (fsspec's walk, folder by folder), or the
      matches of a pattern (fsspec's glob); `file://` URLs are local paths.
    """
    for s in sources:
        yield from _expand(os.fspath(s), storage_options, 0)


def _expand(s: str, storage_options, depth: int):
    if s.startswith("@") and len(s) > 1:
        yield from _from_list(s[1:], storage_options, depth)
    elif is_url(s) and s[:7].lower() != "file://":
        yield from _remote(s, storage_options)
    else:
        if is_url(s):
            from mfparse.io import open_fileset

            s = open_fileset(s).root  # file:// URL -> its local path
        if is_glob(s):
            yield from _glob(s)
        else:
            yield from _local(s)


def _local(path: str):
    from mfparse.scan import STDIN, iter_files, os_error_text

    if path == STDIN:
        yield Unlisted(path, "standard input (-) is not a source here: scan it with `mfparse scan -`")
        return
    for f in iter_files([path]):
        if isinstance(f, str):
            yield Item(f, _size(f), f)
        else:  # a folder os.walk could not list
            yield Unlisted(f.path, f"cannot list this folder: {os_error_text(f.error)}")


def _size(path: str):
    try:
        return os.stat(path).st_size
    except OSError:
        return None  # the worker reports why it cannot be read


def _glob(pattern: str):
    import glob

    found = False
    for p in glob.iglob(pattern, recursive=True):
        found = True
        yield from _local(p)
    if not found:
        yield Unlisted(pattern, "no file matches this pattern")


def _from_list(path: str, storage_options, depth: int):
    if depth >= MAX_LIST_DEPTH:
        yield Unlisted("@" + path, f"lists nested more than {MAX_LIST_DEPTH} deep")
        return
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        from mfparse.scan import os_error_text

        yield Unlisted("@" + path, f"cannot read this list: {os_error_text(e)}")
        return
    with f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield from _expand(line, storage_options, depth + 1)


def _remote(url: str, storage_options):
    """The files of a URL: one file, a prefix (walked folder by folder: fsspec's walk is a
    generator, but a filesystem that lists a flat prefix in one call, as s3fs does, answers a
    folder's listing whole), or a pattern (fsspec's glob, one answer)."""
    from mfparse.io.remote import redact_url

    shown = redact_url(url)
    try:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url, **dict(storage_options or {}))
        http = url.split("://", 1)[0].lower() in ("http", "https")
        if not http and GLOB_CHARS.intersection(path):
            found = False
            for p, info in sorted(fs.glob(path, detail=True).items()):
                if info.get("type") != "directory":
                    found = True
                    yield _remote_item(fs, p, info, url)
            if not found:
                yield Unlisted(shown, "no file matches this pattern")
            return
        if http and not url.endswith("/"):
            yield Item(url, None, shown)  # an HTTP URL is a file unless it ends with / (an index page)
            return
        info = None if http else fs.info(path)
        if info is not None and info.get("type") != "directory":
            yield Item(url, info.get("size"), shown)
            return
        found = False
        failed: list = []
        for root, dirs, files in fs.walk(path, detail=True, on_error=failed.append):
            while failed:  # a sub-folder that could not be listed
                yield Unlisted(_shown(fs, failed.pop(0), url), "cannot list this folder")
            order = sorted(dirs)  # walk descends into what is left in `dirs`, in its order
            kept = {d: dirs[d] for d in order}
            dirs.clear()
            dirs.update(kept)
            for name in sorted(files):
                found = True
                yield _remote_item(fs, files[name].get("name") or _join(root, name), files[name], url)
        for e in failed:
            yield Unlisted(_shown(fs, e, url), "cannot list this folder")
        if not found and not failed:
            yield Unlisted(shown, "no file under this prefix")
    except Exception as e:  # a listing that failed: an error record, never a silent skip
        yield Unlisted(shown, f"cannot list: {_clean_error(e, url, storage_options)}")


def _join(root: str, name: str) -> str:
    return name if "://" in name else root.rstrip("/") + "/" + name


def _shown(fs, e: BaseException, url: str) -> str:
    from mfparse.io.remote import redact_url

    where = getattr(e, "filename", None)
    if isinstance(where, str) and where:
        return redact_url(where if "://" in where else fs.unstrip_protocol(where))
    return redact_url(url)


def _remote_item(fs, path: str, info: dict, url: str) -> Item:
    from mfparse.io.remote import redact_url

    full = path if "://" in path else fs.unstrip_protocol(path)
    if url.split("://", 1)[0].lower() == "hf" and not full.startswith("hf://"):
        full = "hf://" + path  # older huggingface_hub spells no protocol
    return Item(full, info.get("size"), redact_url(full))


def _clean_error(e: BaseException, url: str, storage_options) -> str:
    """What went wrong, without credentials from the URL or the storage options."""
    from mfparse.io.remote import redact_url

    if isinstance(e, FileNotFoundError):
        return "not found"
    if isinstance(e, PermissionError):
        return "access denied"
    text = f"{type(e).__name__}: {e}"
    text = text.replace(url, redact_url(url))
    for v in (storage_options or {}).values():
        if isinstance(v, str) and len(v) >= 4:
            text = text.replace(v, "***")
    return text
