"""Constants of the C headers reach Python through the extension, never retyped: error codes,
HDF5 object kinds, zip anomaly bits and format magics, read here from the headers' text and
compared with what mfparse._native exports and the Python modules use."""

from __future__ import annotations

import os
import re

import pytest

import mfparse
from mfparse import _native, errors
from mfparse.formats import detect, hdf5, zip as fzip
from mfparse.io import open_source

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def header_enum(header: str, prefix: str) -> dict[str, int]:
    """NAME -> value of every `MF_<prefix>NAME = N,` or `= Nu << S,` in csrc/<header>."""
    with open(os.path.join(CSRC, header)) as f:
        text = f.read()
    found = {}
    for name, base, shift in re.findall(r"^\s*MF_" + prefix + r"(\w+)\s*=\s*(\d+)u?(?:\s*<<\s*(\d+))?\s*,", text,
                                        re.M):
        found[name] = int(base) << int(shift or 0)
    assert found, (header, prefix)
    return found


def test_error_codes_come_from_mf_core_h():
    codes = header_enum("mf_core.h", "ERR_")
    exported = {n[4:]: getattr(_native, n) for n in dir(_native) if n.startswith("ERR_")}
    assert exported == codes
    # errors.C_ERRORS names every code, and only those
    assert set(errors.C_ERRORS) == {"ERR_" + n for n in codes}


@pytest.mark.parametrize("name,cls", sorted(errors.C_ERRORS.items()))
def test_each_code_raises_its_class(name, cls):
    e = _native.exception_for(getattr(_native, name), 17, "what went wrong")
    assert type(e) is cls
    if cls is MemoryError:
        assert str(e) == "what went wrong"
    else:
        assert (e.offset, str(e)) == (17, "what went wrong (byte 17)")


def test_an_unknown_code_is_a_corrupt_file():
    assert type(_native.exception_for(99, 3, "x")) is mfparse.CorruptFileError


def test_hdf5_object_kinds():
    kinds = header_enum("mf_hdf5.h", "H5_")
    kinds = {k: v for k, v in kinds.items() if k in ("GROUP", "DATASET", "DATATYPE", "SOFT", "EXTERNAL", "ALIAS",
                                                     "OTHER")}
    assert len(kinds) == 7
    for name, value in kinds.items():
        assert getattr(_native, "H5_" + name) == getattr(hdf5, name) == value


def test_zip_anomaly_bits():
    bits = header_enum("mf_zip.h", "ZIP_ANOM_")
    assert {n: getattr(_native, "ZIP_ANOMALY_" + n) for n in bits} == bits
    # every bit the C reader sets has a description
    assert set(fzip.ANOMALIES) == set(bits.values())


def test_magics_match_the_python_detectors():
    """mf_magic.h is the one table; the Python copies must agree with it."""
    from mfparse.formats import gguf, npy, tflite
    from mfparse.scan import containers

    m = _native.MAGICS
    assert npy.MAGIC == m["npy"][1]
    assert gguf.MAGIC == m["gguf"][1]
    assert hdf5.SIGNATURE == m["hdf5"][1]
    assert tflite.MAGIC == m["tflite"][1] and m["tflite"][0] == 4
    for fmt, (at, magic) in m.items():
        if fmt == "zip-eocd":
            data = b"\0" * 64 + magic + b"\0" * 18
        else:
            data = b"\0" * at + magic + b"\0" * 120
        head = data[:64]
        kind = fmt.split("-")[0]
        sniffed = [k for k, test, _ in containers.SNIFFERS if k == kind and test(data[:16], data, None, True)]
        assert sniffed == [kind], fmt
        with open_source(data) as src:
            assert detect(src) == kind, (fmt, head)
