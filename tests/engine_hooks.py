"""Test-only scanners for `mfparse.scan_many(..., scanner="engine_hooks:NAME")`: a file whose name
says so crashes, hangs, eats memory, kills its worker or goes slowly. mfparse never imports this
module by itself; the Dask workers and the scan children find it on PYTHONPATH (the tests put
tests/ there). Each ends by calling mfparse's own scan_item, so every other file gets the real
report."""

from __future__ import annotations

import os
import signal
import time

from mfparse.engines.child import scan_item


def slow(location, size, name, **kw):
    """Every file takes MFPARSE_TEST_SCAN_DELAY seconds longer (default 0.02): batches stay in
    flight long enough for a test to kill a worker under them."""
    time.sleep(float(os.environ.get("MFPARSE_TEST_SCAN_DELAY", "0.02")))
    return scan_item(location, size, name, **kw)


def misbehave(location, size, name, **kw):
    """crash*: exit(70); segv*: SIGSEGV; hang*: sleep an hour; hog*: allocate 2 GiB; killer*:
    SIGKILL the process that scans (the Dask worker itself with isolate=False). Others: scanned."""
    base = os.path.basename(location)
    if base.startswith("crash"):
        os._exit(70)
    if base.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(60)
    if base.startswith("hang"):
        time.sleep(3600)
    if base.startswith("hog"):
        hog = bytearray(2 << 30)  # MemoryError under the child's RLIMIT_DATA
        del hog
    if base.startswith("killer"):
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
    return scan_item(location, size, name, **kw)


def logged(location, size, name, **kw):
    """Append the name of every file scanned to $MFPARSE_TEST_SCAN_LOG (one a line), then scan it."""
    with open(os.environ["MFPARSE_TEST_SCAN_LOG"], "a", encoding="utf-8") as f:
        f.write(name + "\n")
    return scan_item(location, size, name, **kw)
