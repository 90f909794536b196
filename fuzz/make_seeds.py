"""Write seed corpora for the libFuzzer targets from the real writers (torch.save, safetensors,
pickle): small files, one folder per target. Usage: python fuzz/make_seeds.py OUT_DIR"""

from __future__ import annotations

import collections
import io
import os
import pickle
import sys
import warnings
import zipfile


def seeds():
    import torch
    from safetensors.torch import save as save_bytes

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    objs = {
        "state_dict": lin.state_dict(),
        "views": {"base": base, "t": base.t(), "row": base[1], "e": torch.ones(2, 1).expand(2, 3)},
        "dtypes": {"h": torch.ones(2, dtype=torch.float16), "b": torch.ones(2, dtype=torch.bfloat16),
                   "f8": torch.zeros(2, dtype=torch.float8_e4m3fn), "u16": torch.zeros(2, dtype=torch.uint16),
                   "bool": torch.ones(2, dtype=torch.bool), "c": torch.ones(2, dtype=torch.complex64)},
        "ckpt": {"epoch": 3, "model": lin.state_dict(), "opt": torch.optim.Adam(lin.parameters()).state_dict(),
                 "list": [torch.ones(1), (torch.zeros(1), 2.5)], "params": list(lin.parameters())},
        "quant": {"q": torch.quantize_per_tensor(torch.ones(4), 0.1, 2, torch.qint8)},
    }
    out = collections.defaultdict(dict)
    for name, obj in objs.items():
        for proto in (2, 4):
            buf = io.BytesIO()
            torch.save(obj, buf, pickle_protocol=proto)
            data = buf.getvalue()
            out["fuzz_torch_zip"][f"{name}_p{proto}"] = data
            out["fuzz_zip"][f"{name}_p{proto}"] = data
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                out["fuzz_pickle"][f"{name}_p{proto}"] = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
            buf = io.BytesIO()
            torch.save(obj, buf, pickle_protocol=proto, _use_new_zipfile_serialization=False)
            out["fuzz_torch_legacy"][f"{name}_p{proto}"] = buf.getvalue()
    for proto in range(6):
        out["fuzz_pickle"][f"plain_p{proto}"] = pickle.dumps(
            {"a": [1, 2.5, "x", b"y", None, True, 10**30], "s": {1, 2}, "t": (frozenset([3]), bytearray(b"z"))},
            protocol=proto)
    for name in ("state_dict", "dtypes"):
        tensors = {k: v for k, v in objs[name].items() if v.dtype != torch.complex64}
        out["fuzz_safetensors"][name] = save_bytes(tensors, metadata={"k": "v"})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", b"hello" * 10)
        z.writestr("dir/b.bin", bytes(range(256)))
    out["fuzz_zip"]["deflated"] = buf.getvalue()
    out.update(_flatgguf_seeds())
    out.update(_hdf5_seeds())
    out.update(_protobuf_seeds())
    # the scanner's fast path takes whole files: torch archives (zip and legacy), pickles, .npy/.npz
    for target in ("fuzz_torch_zip", "fuzz_torch_legacy", "fuzz_pickle"):
        out["fuzz_scan"].update({f"{target}_{k}": v for k, v in out[target].items()})
    out["fuzz_scan"].update({f"fuzz_npy_{k}": v for k, v in list(out.get("fuzz_npy", {}).items())[:4]})
    return out


def _protobuf_seeds():
    """ONNX (onnx.helper) and TensorFlow (the committed fixtures) seeds."""
    import glob

    out = collections.defaultdict(dict)
    tf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tf")
    for p in glob.glob(os.path.join(tf, "**", "*.index"), recursive=True):
        with open(p, "rb") as f:
            out["fuzz_tf_bundle"][os.path.relpath(p, tf).replace(os.sep, "_")] = f.read()
    for p in glob.glob(os.path.join(tf, "*.pb")) + glob.glob(os.path.join(tf, "*", "saved_model.pb")):
        with open(p, "rb") as f:
            out["fuzz_tf_graph"][os.path.relpath(p, tf).replace(os.sep, "_")] = f.read()
    try:
        import numpy as np
        from onnx import TensorProto as TP
        from onnx import helper, numpy_helper
    except ImportError:
        return out
    then_g = helper.make_graph([helper.make_node("Constant", [], ["c"], value_ints=[1, 2])], "t", [],
                               [helper.make_tensor_value_info("c", TP.INT64, [2])])
    g = helper.make_graph(
        [helper.make_node("If", ["b"], ["c"], then_branch=then_g, else_branch=then_g)], "g",
        [helper.make_tensor_value_info("b", TP.BOOL, ["N"]), helper.make_tensor_sequence_value_info("s", TP.INT8, [2])],
        [helper.make_tensor_value_info("c", TP.INT64, [2])],
        [numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W"),
         helper.make_tensor("h", TP.FLOAT16, [3], [1, 2, 3]), helper.make_tensor("s", TP.STRING, [2], [b"x", b"yz"]),
         helper.make_tensor("i4", TP.INT4, [3], [1, -2, 3])],
        sparse_initializer=[helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5], np.float32), "sp"),
                                                      numpy_helper.from_array(np.array([1], np.int64), "spi"), [4])])
    out["fuzz_onnx"]["model"] = helper.make_model(g).SerializeToString()
    out["fuzz_onnx"]["tensor"] = helper.make_tensor("t", TP.DOUBLE, [2], [1.5, -2]).SerializeToString()
    return out


def _hdf5_seeds():
    """HDF5: small h5py files (libver earliest and latest) and the committed Keras fixtures."""
    import glob

    import numpy as np

    out = collections.defaultdict(dict)
    try:
        import h5py
    except ImportError:
        return out
    for libver in ("earliest", "latest"):
        buf = io.BytesIO()
        with h5py.File(buf, "w", libver=libver) as f:
            f["a"] = np.arange(6, dtype="f4").reshape(2, 3)
            f["g/s"] = np.array(["x", "yz"], dtype=h5py.string_dtype())
            f.create_dataset("g/c", data=np.arange(20, dtype="i2"), chunks=(6,), compression="gzip", shuffle=True)
            f.create_dataset("g/u", data=np.arange(8, dtype="i4"), maxshape=(None,), chunks=(3,))
            f.create_dataset("g/u2", data=np.ones((3, 3)), maxshape=(None, None), chunks=(2, 2))
            f.create_dataset("g/fa", data=np.arange(9), chunks=(4,), fletcher32=True)
            for i in range(10):
                f["g"].attrs[f"k{i}"] = i
            f.attrs["cfg"] = "{}"
            f.attrs["names"] = np.array(["a", "bb"], dtype=h5py.string_dtype())
            f["g/soft"] = h5py.SoftLink("/a")
            for i in range(10):
                f[f"many/d{i}"] = np.int8(i)
        out["fuzz_hdf5"][f"small_{libver}"] = buf.getvalue()
    here = os.path.dirname(os.path.abspath(__file__))
    for p in glob.glob(os.path.join(here, "..", "tests", "fixtures", "keras", "*.h5")):
        with open(p, "rb") as f:
            out["fuzz_hdf5"][os.path.basename(p)] = f.read()
    return out


def _flatgguf_seeds():
    """TFLite (the committed fixtures), GGUF (gguf-py's writer) and .npy (numpy) seeds."""
    import glob
    import tempfile

    import numpy as np

    out = collections.defaultdict(dict)
    here = os.path.dirname(os.path.abspath(__file__))
    for p in glob.glob(os.path.join(here, "..", "tests", "fixtures", "tflite", "*.tflite")):
        with open(p, "rb") as f:
            out["fuzz_tflite"][os.path.basename(p)] = f.read()
    for name, arr in {"f4": np.arange(6, dtype="<f4").reshape(2, 3), "be": np.arange(3, dtype=">i8"),
                      "fortran": np.asfortranarray(np.ones((2, 3))), "rec": np.zeros(2, dtype=[("a", "<i2")])}.items():
        buf = io.BytesIO()
        np.save(buf, arr)
        out["fuzz_npy"][name] = buf.getvalue()
    try:
        import gguf
        import gguf.quants as gq
    except ImportError:
        return out
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.gguf")
        w = gguf.GGUFWriter(path, "llama")
        w.add_array("tok", ["a", "bb"])
        w.add_array("nested", [[1, 2], [3]])
        w.add_float64("x", 1.0)
        x = np.linspace(-1, 1, 512, dtype=np.float32).reshape(2, 256)
        for q in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q5_0):
            b = gq.quantize(x, q)
            w.add_tensor(q.name, b, raw_shape=b.shape, raw_dtype=q)
        w.add_tensor("f16", np.ones((2, 4), np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(path, "rb") as f:
            out["fuzz_gguf"]["small"] = f.read()
    return out


def main(argv):
    root = argv[1] if len(argv) > 1 else "fuzz/build/corpus"
    for target, files in seeds().items():
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, f"seed_{name}"), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
