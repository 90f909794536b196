"""TensorInfo records built by the readers' fast paths (in place, in the extension) are the
same objects as records built by TensorInfo(...): equal, hashing alike (a record whose extras is
a mapping is unhashable, as a tuple holding a dict is; on CPython 3.14, where tuples cache their
hash, a record built without resetting the cache would hash as 0 instead), with every namedtuple
method, on every Python the project supports."""


import numpy as np
import pytest

import mfparse
from mfparse import TensorInfo
from mfparse.records import EMPTY


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("records")
    import h5py
    import onnx
    from onnx import helper, numpy_helper
    from safetensors.numpy import save_file

    out = {}
    arrays = {f"layer{i}.w": np.full((i + 1, 3), i, np.float32) for i in range(5)}
    out["torch-zip"] = d / "m.pth"
    try:
        import torch
    except ImportError:  # on a Python without the torch wheel (.ci/test-pythons): mfparse's own writer
        import mfparse.numpy

        mfparse.numpy.save_file(arrays, str(out["torch-zip"]))
    else:
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, out["torch-zip"])
    out["safetensors"] = d / "m.safetensors"
    save_file(arrays, str(out["safetensors"]))
    out["onnx"] = d / "m.onnx"
    graph = helper.make_graph([], "g", [], [], [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    onnx.save(helper.make_model(graph), str(out["onnx"]))
    out["hdf5"] = d / "m.h5"
    with h5py.File(out["hdf5"], "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    out["gguf"] = d / "m.gguf"
    import gguf

    w = gguf.GGUFWriter(str(out["gguf"]), "llama")
    for k, v in arrays.items():
        w.add_tensor(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out["npz"] = d / "m.npz"
    np.savez(out["npz"], **arrays)
    return out


def hash_or_error(x):
    try:
        return hash(x)
    except TypeError as e:
        return str(e)


@pytest.mark.parametrize("fmt", ["torch-zip", "safetensors", "onnx", "hdf5", "gguf", "npz"])
def test_fast_path_records_equal_and_hash_like_constructed_ones(files, fmt):
    with mfparse.open(files[fmt]) as m:
        assert m.format == fmt
        infos = list(m.tensors())
    assert len(infos) == 5
    for t in infos:
        twin = TensorInfo(*t)
        assert type(t) is TensorInfo and len(t) == len(TensorInfo._fields) == 9
        assert t == twin and twin == t
        assert hash_or_error(t) == hash_or_error(twin) == hash_or_error(tuple(t))
        assert hash_or_error(t).startswith("unhashable type")
        assert hash(t[:7]) == hash(twin[:7])
        assert t._replace(name="x").name == "x" and t._asdict()["dtype"] == t.dtype
        assert t.file is None
    assert infos == [TensorInfo(*t) for t in infos]


def test_records_without_mappings_hash():
    t = TensorInfo("w", "float32", (2, 3), 24, 128, extras=None)
    assert hash(t) == hash(tuple(t)) and {t: 1}[TensorInfo(*t)] == 1


def test_defaults_and_json():
    t = TensorInfo("w", "float32", (2, 3), 24, 128)
    assert (t.storage, t.stride, t.extras, t.file) == (None, None, EMPTY, None)
    assert t.numel == 6 and t.ndim == 2
    assert t.to_dict() == {"name": "w", "dtype": "float32", "shape": [2, 3], "nbytes": 24, "offset": 128,
                           "storage": None}
    assert t._replace(file="model-00001-of-00002.safetensors").to_dict()["file"] == \
        "model-00001-of-00002.safetensors"
