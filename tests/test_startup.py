"""One-file commands pay only for what they use: `import mfparse`, listing a file, `inspect`
and `scan` import no numpy (nor torch, onnx, h5py, ...), and a subcommand loads only its own
code. Each check runs in a fresh interpreter and reads its sys.modules."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mfparse

# the folder that holds the mfparse package under test (the tree or an installed copy)
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(mfparse.__file__)))
HEAVY = ("numpy", "torch", "onnx", "onnxruntime", "h5py", "ml_dtypes", "fsspec", "dask", "distributed", "tensorrt")
TOOLS = ("mfparse.bench", "mfparse.convert", "mfparse.quantize", "mfparse.writers", "mfparse.diff",
         "mfparse.runtime_quant")


def loaded_after(code: str) -> set:
    """The modules of HEAVY and TOOLS loaded once `code` has run in a fresh interpreter."""
    probe = (code + "\nimport sys, json\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m in {HEAVY + TOOLS!r})))")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd="/",
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def cli(*argv: str) -> str:
    """Code that runs the mfparse command line in-process (its exit is caught)."""
    return ("import sys, runpy\n"
            f"sys.argv = ['mfparse', *{list(argv)!r}]\n"
            "try:\n    runpy.run_module('mfparse', run_name='__main__')\nexcept SystemExit:\n    pass\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("startup")
    out = {}
    out["pth"] = str(d / "small.pth")
    torch.save({"a": torch.zeros(3, 4), "b": torch.ones(5), "epoch": 3}, out["pth"])
    out["safetensors"] = str(d / "m.safetensors")
    save_file({"w": np.ones((2, 3), np.float32)}, out["safetensors"])
    out["npy"] = str(d / "a.npy")
    np.save(out["npy"], np.arange(6, dtype=np.int16))
    out["npz"] = str(d / "a.npz")
    np.savez(out["npz"], x=np.arange(6, dtype=np.int16), y=np.ones(2))
    import h5py

    out["hdf5"] = str(d / "m.h5")
    with h5py.File(out["hdf5"], "w") as f:
        f.create_dataset("g/w", data=np.ones((2, 3), np.float32))
        f.create_dataset("c", data=np.arange(100, dtype=np.int32), chunks=(10,), compression="gzip")
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])], [w])
    out["onnx"] = str(d / "m.onnx")
    onnx.save(helper.make_model(graph), out["onnx"])
    import gguf

    out["gguf"] = str(d / "m.gguf")
    wr = gguf.GGUFWriter(out["gguf"], "llama")
    wr.add_tensor("t", np.ones((4, 8), np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    out["tflite"] = os.path.join(os.path.dirname(__file__), "fixtures", "tflite", "int8.tflite")
    return out


def test_import_mfparse_is_light():
    assert loaded_after("import mfparse") == set()


def test_scan_many_imports_no_dask_until_the_dask_engine_runs():
    assert loaded_after("import mfparse\nmfparse.scan_many\nimport mfparse.engines.dask") == set()


def test_scan_of_a_file_takes_the_fast_path(files):
    """`mfparse scan FILE` parses its arguments without argparse (the engine options included)
    and loads no engine."""
    probe = (cli("scan", files["pth"]) + "import sys, json\n"
             "print(json.dumps([m for m in ('argparse', 'mfparse.engines', 'dask', 'distributed') if m in sys.modules]))")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"{files['pth']}: SAFE"
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_check_can_fail():
    assert "numpy" in loaded_after("import mfparse, numpy")


@pytest.mark.parametrize("kind", ["pth", "safetensors", "npy", "npz", "hdf5", "onnx", "gguf", "tflite"])
def test_listing_imports_no_numpy(files, kind):
    code = (f"import mfparse\nwith mfparse.open({files[kind]!r}) as m:\n"
            "    infos = list(m.tensors()); m.metadata; m.tree(); [t.to_dict() for t in infos]\n")
    assert loaded_after(code) == set()


def test_reading_data_imports_numpy(files):
    code = f"import mfparse\nwith mfparse.open({files['pth']!r}) as m:\n    m['a']\n"
    assert "numpy" in loaded_after(code)


@pytest.mark.parametrize("argv", [
    ("inspect", "{pth}"),
    ("inspect", "--json", "{pth}"),
    ("inspect", "--tree", "{pth}"),
    ("inspect", "{safetensors}", "{npy}"),
    ("--version",),
    ("scan", "--help"),
])
def test_commands_import_only_their_own_code(files, argv):
    argv = [a.format(**files) for a in argv]
    assert loaded_after(cli(*argv)) == set()


def test_inspect_stats_needs_numpy(files):
    assert "numpy" in loaded_after(cli("inspect", "--stats", files["pth"]))
