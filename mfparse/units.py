"""Sizes as people write them: 1024, "4GB", "512MiB", "1.5GiB"."""

from __future__ import annotations

#: KB/MB/GB/TB are powers of 10 (as in transformers and huggingface_hub), KiB/MiB/GiB/TiB powers of 2
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value, error=ValueError, what: str = "a size", example: str = "4GB, 512MiB") -> int:
    """Bytes of a size: an int, or a number and a unit (UNITS, any case). A size that cannot be
    read or is not positive raises `error` with a message naming `what` and showing `example`."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        import re

        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if m is None or m[2].upper() not in UNITS:
            raise error(f"cannot read the size {value!r} (use e.g. {example} or a number of bytes)")
        n = int(float(m[1]) * UNITS[m[2].upper()])
    if n <= 0:
        raise error(f"{what} must be positive, not {value!r}")
    return n
