"""mfparse.torch.load_file / mfparse.numpy.load_file for services (issue 17 item 4): the meta
device (dtypes and shapes, nothing read), dtype= casting of floating-point tensors only,
unknown names as KeyError with close matches, select= / prefix= / strip_prefix= on a training
checkpoint written by torch.save, loading into a model built on the meta device
(load_state_dict(assign=True)), zero-copy CPU tensors checked by address against the process's
map of the file, models of several files."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

import mfparse
import mfparse.numpy
import mfparse.torch
from convert_ref import REAL_SOURCES, make_source, state_dict, tensor_record
from helpers import HostTransfer
from models import CNN, SimpleNet, training_checkpoint


def file_mapping(addr: int):
    """(path, file offset) of the file mapping of this process that holds address `addr`
    (/proc/self/maps), or None when no file mapping holds it (a copy)."""
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi:
                path = parts[5].strip() if len(parts) > 5 else ""
                return (path, int(parts[2], 16) + addr - lo) if path.startswith("/") else None
    return None


needs_proc_maps = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """The tutorial's training checkpoint (CNN, Adam, StepLR, epoch, losses), saved by torch."""
    d = tmp_path_factory.mktemp("ckpt")
    ck = training_checkpoint(CNN())
    torch.save(ck, d / "checkpoint.pth")
    return d / "checkpoint.pth", ck


# ---- select / prefix / strip_prefix -----------------------------------------------------------

def test_select_loads_a_training_checkpoint_into_its_model(ckpt):
    path, ck = ckpt
    sd = mfparse.torch.load_file(path, select="model_state_dict")
    ref = ck["model_state_dict"]
    assert list(sd) == list(ref)  # file order = the state dict's order, names relative to the sub-tree
    for k, v in ref.items():
        assert tensor_record(sd[k]) == tensor_record(v), k
    model = CNN()
    assert str(model.load_state_dict(sd)) == "<All keys matched successfully>"
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref_model = CNN()
    ref_model.load_state_dict(ref)
    model.eval(), ref_model.eval()
    assert torch.equal(model(x), ref_model(x))
    # without select, the names are the checkpoint's and load_state_dict refuses them
    with pytest.raises(RuntimeError, match="Missing key"):
        CNN().load_state_dict(mfparse.torch.load_file(path))
    # a deeper sub-tree, a trailing dot, and the numpy loader
    opt = mfparse.torch.load_file(path, select="optimizer_state_dict.state.")
    flat = {f"{i}.{k}": v for i, st in ck["optimizer_state_dict"]["state"].items() for k, v in st.items()}
    assert list(opt) == list(flat) and all(torch.equal(opt[k], v) for k, v in flat.items())
    arrays = mfparse.numpy.load_file(path, select="model_state_dict")
    assert list(arrays) == list(ref)
    np.testing.assert_array_equal(arrays["fc.weight"], ref["fc.weight"].numpy())


def test_prefix_and_strip_prefix(ckpt, tmp_path):
    path, ck = ckpt
    ref = ck["model_state_dict"]
    got = mfparse.torch.load_file(path, prefix="model_state_dict.bn")
    assert list(got) == ["model_state_dict." + k for k in ref if k.startswith("bn")]
    got = mfparse.torch.load_file(path, prefix="model_state_dict.bn1.", strip_prefix=True)
    assert list(got) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    got = mfparse.torch.load_file(path, select="model_state_dict", prefix="fc.")
    assert list(got) == ["fc.weight", "fc.bias"]
    # a DataParallel checkpoint: "module." removed where present, other names kept
    ddp = {"module." + k: v for k, v in SimpleNet().state_dict().items()}
    ddp["extra"] = torch.ones(2)
    torch.save(ddp, tmp_path / "ddp.pt")
    got = mfparse.torch.load_file(tmp_path / "ddp.pt", strip_prefix="module.")
    assert list(got) == [k[len("module."):] for k in ddp if k != "extra"] + ["extra"]
    model = SimpleNet()
    del got["extra"]
    model.load_state_dict(got)
    assert all(torch.equal(model.state_dict()[k], ddp["module." + k]) for k in got)
    np_got = mfparse.numpy.load_file(tmp_path / "ddp.pt", prefix="module.", strip_prefix=True)
    assert list(np_got) == [k[len("module."):] for k in ddp if k != "extra"]


def test_selection_errors(ckpt, tmp_path):
    path, _ = ckpt
    with pytest.raises(KeyError) as e:
        mfparse.torch.load_file(path, select="model_state_dic")
    assert str(e.value) == (f"{path} has no sub-tree 'model_state_dic' (did you mean 'model_state_dict' or "
                            "'optimizer_state_dict'?); sub-trees: model_state_dict, optimizer_state_dict")
    assert e.value.missing == ["model_state_dic"]
    with pytest.raises(KeyError, match=r"^no tensor of .* under 'model_state_dict' starts with prefix 'zz'$"):
        mfparse.torch.load_file(path, select="model_state_dict", prefix="zz")
    with pytest.raises(ValueError, match=r"names a tensor of .*, not a sub-tree: "
                                         r"use names=\['model_state_dict.fc.bias'\]"):
        mfparse.torch.load_file(path, select="model_state_dict.fc.bias")
    with pytest.raises(ValueError, match="strip_prefix=True removes `prefix`, but no prefix was given"):
        mfparse.numpy.load_file(path, strip_prefix=True)
    torch.save({"module.w": torch.ones(1), "w": torch.zeros(1)}, tmp_path / "clash.pt")
    with pytest.raises(ValueError, match="'module.w' and 'w' would both be returned as 'w'"):
        mfparse.torch.load_file(tmp_path / "clash.pt", strip_prefix="module.")


def test_unknown_names_are_errors_with_close_matches(ckpt):
    path, ck = ckpt
    with pytest.raises(KeyError) as e:
        mfparse.torch.load_file(path, select="model_state_dict", names=["fc.weight", "fc.bais", "nope.zzz"])
    assert str(e.value) == (f"2 names not in {path} under 'model_state_dict': 'fc.bais' (did you mean 'fc.bias'?), "
                            "'nope.zzz'")
    assert e.value.missing == ["fc.bais", "nope.zzz"]
    with pytest.raises(KeyError, match="1 name not in"):
        mfparse.numpy.load_file(path, names=["conv1.weight"])  # the full name is model_state_dict.conv1.weight
    # a single name as a string, names in file order whatever the order asked
    got = mfparse.torch.load_file(path, select="model_state_dict", names=["fc.bias", "conv1.weight"])
    assert list(got) == ["conv1.weight", "fc.bias"]
    assert list(mfparse.torch.load_file(path, names="model_state_dict.fc.bias")) == [
        "model_state_dict.fc.bias"]
    assert torch.equal(got["fc.bias"], ck["model_state_dict"]["fc.bias"])


# ---- the meta device ----------------------------------------------------------------------------

@pytest.mark.parametrize("source", REAL_SOURCES + ("gguf", "gguf-q4"))
def test_meta_device_gives_what_a_cpu_load_gives_without_reading(tmp_path, source, monkeypatch):
    if source == "gguf-q4":
        gguf = pytest.importorskip("gguf")
        from gguf import quants

        src = str(tmp_path / "q.gguf")
        w = gguf.GGUFWriter(src, "llama")
        a = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
        w.add_tensor("q", quants.quantize(a, gguf.GGMLQuantizationType.Q4_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        w.add_tensor("f", a)
        w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    else:
        src = make_source(source, tmp_path)
    cpu = mfparse.torch.load_file(src)
    if source == "gguf-q4":  # the stored blocks, as the reader gives them: 4 rows of 2 blocks of 18 bytes
        assert (cpu["q"].dtype, tuple(cpu["q"].shape)) == (torch.uint8, (4, 36))
    reads = []
    real_read = mfparse.model.ModelFile.read

    def counting_read(self, info, **kw):
        reads.append(info.name)
        return real_read(self, info, **kw)

    monkeypatch.setattr(mfparse.model.ModelFile, "read", counting_read)
    meta = mfparse.torch.load_file(src, device="meta")
    assert list(meta) == list(cpu)
    for k, t in meta.items():
        assert t.device.type == "meta", k
        assert (t.dtype, t.shape) == (cpu[k].dtype, cpu[k].shape), k
    # nothing read, except the byte view of a dtype torch has no name for (its shape)
    assert reads == (["q"] if source == "gguf-q4" else [])
    half = mfparse.torch.load_file(src, device="meta", dtype="float16")
    for k, t in half.items():
        floating = cpu[k].dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        assert t.dtype == (torch.float16 if floating else cpu[k].dtype), k


def test_meta_device_recipe_with_assign(ckpt):
    """The README's recipe: build the model on the meta device, load with assign=True; the
    parameters become the loaded tensors (zero-copy views of the file) and the model runs."""
    path, ck = ckpt
    with torch.device("meta"):
        model = CNN()
    assert model.fc.weight.device.type == "meta"
    sd = mfparse.torch.load_file(path, select="model_state_dict")
    assert str(model.load_state_dict(sd, assign=True)) == "<All keys matched successfully>"
    assert all(p.device.type == "cpu" for p in model.parameters()) and all(
        b.device.type == "cpu" for b in model.buffers())
    assert model.fc.weight.data_ptr() == sd["fc.weight"].data_ptr()  # assigned, not copied
    assert model.fc.weight.requires_grad  # assign keeps the module's requires_grad
    ref = CNN()
    ref.load_state_dict(ck["model_state_dict"])
    model.eval(), ref.eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(model(x), ref(x))
    # the same with a cast on load: a bfloat16 model without a float32 copy in between
    with torch.device("meta"):
        model16 = CNN()
    model16.load_state_dict(mfparse.torch.load_file(path, select="model_state_dict", dtype=torch.bfloat16),
                            assign=True)
    assert model16.fc.weight.dtype == torch.bfloat16 and model16.bn1.num_batches_tracked.dtype == torch.int64
    assert torch.equal(model16.fc.weight, ck["model_state_dict"]["fc.weight"].to(torch.bfloat16))


# ---- dtype ----------------------------------------------------------------------------------------

def test_dtype_casts_floating_tensors_only(tmp_path):
    sd = {k: v.contiguous() for k, v in state_dict().items() if k not in ("tied", "row")}
    from safetensors.torch import save_file

    save_file(sd, tmp_path / "m.safetensors")
    for spelling in (torch.bfloat16, "bfloat16", "torch.bfloat16", "bf16"):
        got = mfparse.torch.load_file(tmp_path / "m.safetensors", dtype=spelling)
        assert set(got) == set(sd)  # (safetensors orders the file by dtype and size)
        for k, v in sd.items():
            if v.dtype in (torch.float16, torch.float32, torch.float64):
                assert got[k].dtype == torch.bfloat16 and torch.equal(got[k], v.to(torch.bfloat16)), k
            else:  # bf16 already, ints, bool, float8, complex: as stored
                assert tensor_record(got[k]) == tensor_record(v), k
    arrays = mfparse.numpy.load_file(tmp_path / "m.safetensors", dtype="float16")
    for k, v in sd.items():
        if v.dtype in (torch.bfloat16, torch.float32, torch.float64):
            assert arrays[k].dtype == np.float16, k
            np.testing.assert_array_equal(arrays[k], v.to(torch.float16).numpy())
        elif v.dtype == torch.float16:
            np.testing.assert_array_equal(arrays[k], v.numpy())
    assert arrays["i64"].dtype == np.int64 and arrays["flag"].dtype == np.bool_
    for bad in ("int8", torch.int32, torch.float8_e4m3fn, "nonsense"):
        with pytest.raises(ValueError, match="is not a torch dtype|casts floating-point tensors only"):
            mfparse.torch.load_file(tmp_path / "m.safetensors", dtype=bad)
    with pytest.raises(ValueError, match="casts floating-point arrays only"):
        mfparse.numpy.load_file(tmp_path / "m.safetensors", dtype=np.int16)


@needs_proc_maps
def test_cpu_loads_are_views_of_the_file_map(tmp_path):
    """A loaded CPU tensor lies in a mapping of the model file, at the tensor's file offset
    (the TensorInfo contract), whatever the selection; a cast tensor is a copy, one already of
    the asked dtype stays a view."""
    from safetensors.torch import save_file

    path = os.path.realpath(tmp_path / "m.safetensors")
    save_file({"a.w": torch.randn(64, 32), "a.h": torch.randn(16).half(), "b.w": torch.arange(10)}, path)
    with mfparse.open(path) as m:
        offsets = {t.name: t.offset for t in m.tensors()}
    for kw, name, full in ((dict(), "a.w", "a.w"), (dict(select="a"), "w", "a.w"),
                           (dict(prefix="b.", strip_prefix=True), "w", "b.w"),
                           (dict(dtype=torch.float16, select="a"), "h", "a.h")):
        t = mfparse.torch.load_file(path, **kw)[name]
        assert file_mapping(t.data_ptr()) == (path, offsets[full]), kw
        a = mfparse.numpy.load_file(path, **kw)[name]
        assert file_mapping(a.__array_interface__["data"][0]) == (path, offsets[full]), kw
    cast = mfparse.torch.load_file(path, dtype=torch.float16)["a.w"]
    assert file_mapping(cast.data_ptr()) is None  # a copy, in anonymous memory


# ---- models of several files ------------------------------------------------------------------

def llama_shards(folder, layers=3, dim=8):
    """A LLaMA-shaped state dict saved as two safetensors shards plus the index, as
    transformers' save_pretrained writes them (weight_map, sorted keys, metadata.total_size)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {"model.embed_tokens.weight": torch.randn(32, dim, generator=g)}
    for i in range(layers):
        for p in ("q", "k", "v", "o"):
            sd[f"model.layers.{i}.self_attn.{p}_proj.weight"] = torch.randn(dim, dim, generator=g)
        sd[f"model.layers.{i}.mlp.gate_proj.weight"] = torch.randn(2 * dim, dim, generator=g)
        sd[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(dim)
    sd["model.norm.weight"] = torch.ones(dim)
    sd["lm_head.weight"] = torch.randn(32, dim, generator=g)
    os.makedirs(folder, exist_ok=True)
    names = list(sd)
    split = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
             "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for fname, keys in split.items():
        save_file({k: sd[k] for k in keys}, os.path.join(folder, fname), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())},
             "weight_map": {k: f for f, keys in split.items() for k in keys}}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return sd


def test_models_of_several_files(tmp_path):
    sd = llama_shards(tmp_path / "llama")
    folder = tmp_path / "llama"
    got = mfparse.torch.load_file(folder, select="model.layers.1")
    assert set(got) == {k[len("model.layers.1."):] for k in sd if k.startswith("model.layers.1.")}
    assert all(torch.equal(got[k], sd["model.layers.1." + k]) for k in got)
    meta = mfparse.torch.load_file(folder, device="meta", dtype="bfloat16")
    with mfparse.open(folder) as m:
        assert list(meta) == m.keys() and set(meta) == set(sd)
    assert all(
        t.device.type == "meta" and t.dtype == torch.bfloat16 and t.shape == sd[k].shape for k, t in meta.items())
    half = mfparse.numpy.load_file(folder / "model.safetensors.index.json", prefix="lm_head", dtype="float16")
    assert list(half) == ["lm_head.weight"]
    np.testing.assert_array_equal(half["lm_head.weight"], sd["lm_head.weight"].half().numpy())
    with pytest.raises(KeyError, match=re.escape("'model.layers.3.mlp.gate_proj.weight' (did you mean "
                                                 "'model.layers.2.mlp.gate_proj.weight'")):
        mfparse.torch.load_file(folder, names=["model.layers.3.mlp.gate_proj.weight"])
    if os.path.exists("/proc/self/maps"):
        t = mfparse.torch.load_file(folder, names=["lm_head.weight"])["lm_head.weight"]
        with mfparse.open(folder) as m:
            info = m.info("lm_head.weight")
        assert file_mapping(t.data_ptr()) == (os.path.realpath(folder / info.file), info.offset)


# ---- the device path --------------------------------------------------------------------------

@pytest.mark.parametrize("staging", [1, 7, 64, 1 << 20])
def test_staged_device_path_casts_chunk_by_chunk(tmp_path, staging):
    from mfparse.torch import _load_staged
    from mfparse.writers.items import load_arrays

    torch.save(state_dict(), tmp_path / "s.pt")
    ref = torch.load(tmp_path / "s.pt", weights_only=True)
    with mfparse.open(tmp_path / "s.pt") as m:
        pairs = [(it, a) for it, a, _ in load_arrays(m)]
    got = _load_staged(pairs, torch.device("cpu"), staging, HostTransfer(), dtype=torch.bfloat16)
    assert list(got) == list(ref)
    for k, v in ref.items():
        if v.dtype in (torch.float16, torch.float32, torch.float64):
            assert got[k].dtype == torch.bfloat16 and torch.equal(got[k], v.to(torch.bfloat16)), k
        else:
            assert tensor_record(got[k]) == tensor_record(v), k


def test_cuda_without_cuda_is_a_clear_error(ckpt):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match=r"device 'cuda:0': this torch has no usable CUDA device"):
        mfparse.torch.load_file(ckpt[0], device="cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_load_with_cast_and_select(ckpt):  # pragma: no cover - runs on GPU machines only
    path, ck = ckpt
    got = mfparse.torch.load_file(path, device="cuda", dtype=torch.float16, select="model_state_dict",
                                  staging_bytes=4096)
    for k, v in ck["model_state_dict"].items():
        want = v.half() if v.is_floating_point() else v
        assert got[k].device.type == "cuda" and torch.equal(got[k].cpu(), want), k
