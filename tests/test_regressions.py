"""Replay every minimized crasher in tests/regression_inputs/<target>/ through the API the
target exercises: each must open cleanly or fail with an MFParseError, never crash."""

from __future__ import annotations

import os

import pytest

import mfparse
from mfparse import _native
from mfparse.formats.zip import ZipArchive
from mfparse.source import Source

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regression_inputs")


def _cases():
    if not os.path.isdir(HERE):
        return []
    out = []
    for target in sorted(os.listdir(HERE)):
        d = os.path.join(HERE, target)
        if os.path.isdir(d):
            out += [(target, os.path.join(d, f)) for f in sorted(os.listdir(d))]
    return out


def _pickle(data: bytes):
    p = _native.PickleParse(len(data))
    pos = 0
    while pos < len(data):
        root, used = p.load(data, 0, pos, False)
        if root is None or used == 0:
            break
        pos += used
        try:
            p.torch_walk(root, 0)
        except mfparse.MFParseError:
            pass
    p.events()


def _open(fmt):
    def run(data: bytes):
        with mfparse.open(data, format=fmt) as m:
            for t in m.tensors():
                if t.offset is not None:
                    m.read(t)
            m.tree()
    return run


def _tflite_unchecked(data: bytes):
    """As the fuzz target: without requiring the "TFL3" identifier."""
    from mfparse.formats import tflite

    r = tflite.open_unchecked(Source(data))
    for t in r.tensors():
        if t.offset is not None:
            r.read(t)
    r.graph.to_dict()


REPLAY = {
    "fuzz_zip": lambda data: ZipArchive(Source(data)).names(),
    "fuzz_pickle": _pickle,
    "fuzz_torch_legacy": _open("torch-legacy"),
    "fuzz_torch_zip": _open("torch-zip"),
    "fuzz_safetensors": _open("safetensors"),
    "fuzz_tflite": _tflite_unchecked,
    "fuzz_gguf": _open("gguf"),
    "fuzz_npy": _open("npy"),
    "fuzz_hdf5": _open("hdf5"),

    "fuzz_onnx": _open("onnx"),
    "fuzz_tf_graph": _open("tf-graphdef"),
    "fuzz_tf_bundle": _open("tf-checkpoint"),
}


@pytest.mark.parametrize("target,path", _cases() or [pytest.param(None, None, marks=pytest.mark.skip("none yet"))])
def test_replay(target, path):
    with open(path, "rb") as f:
        data = f.read()
    replay = REPLAY.get(target, _open(None))
    try:
        replay(data)
    except mfparse.MFParseError:
        pass
