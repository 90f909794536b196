"""Models of several files (issue 15): Hugging Face folders written by transformers (safetensors
shards and the .bin shards + index of transformers 4.x), indexes, any shard, llama.cpp GGUF
splits, diffusers pipelines; validation of broken layouts; load, convert, quantize, diff and
inspect over them. transformers and diffusers tests are skipped where they are not installed;
the layouts built by hand below follow the same writers' rules."""

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as st_save
from safetensors.torch import load_file as st_load

import mfparse
from mfparse import CorruptFileError
from mfparse.locate import locate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "mfparse", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


# ---- layouts written by transformers --------------------------------------------------------------

def _gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def save_bin_shards(model, folder, max_shard_size):
    """A .bin sharded checkpoint as transformers 4.x save_pretrained(safe_serialization=False)
    wrote it: huggingface_hub's split of the state dict (tied weights kept, sharing storage),
    torch.save of each shard, the index with indent=2, sort_keys and a final newline."""
    from huggingface_hub import split_torch_state_dict_into_shards

    os.makedirs(folder, exist_ok=True)
    sd = model.state_dict()
    split = split_torch_state_dict_into_shards(sd, filename_pattern="pytorch_model{suffix}.bin",
                                               max_shard_size=max_shard_size)
    for fname, names in split.filename_to_tensors.items():
        torch.save({n: sd[n].contiguous() for n in names}, os.path.join(folder, fname))
    if split.is_sharded:
        index = {"metadata": {"total_parameters": model.num_parameters(), **split.metadata},
                 "weight_map": split.tensor_to_filename}
        with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    model.config.save_pretrained(folder)
    return sd


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """GPT-2 (tied lm_head) saved by transformers as safetensors shards and as 4.x .bin shards."""
    d = tmp_path_factory.mktemp("hf")
    model = _gpt2()
    model.save_pretrained(d / "st", max_shard_size="20KB")
    sd = save_bin_shards(model, d / "bin", "20KB")
    model.save_pretrained(d / "st1")  # one file: model.safetensors, no index
    save_bin_shards(model, d / "bin1", "5GB")
    with open(d / "bin" / "tokenizer_config.json", "w") as f:
        f.write('{"model_max_length": 64}')
    return {"dir": d, "sd": {k: v.clone() for k, v in sd.items()}, "model": model}


def _shards(folder, ext):
    return sorted(f for f in os.listdir(folder) if f.endswith(ext) and "-of-" in f)


def test_safetensors_folder_index_and_any_shard(hf):
    folder = hf["dir"] / "st"
    shards = _shards(folder, ".safetensors")
    assert len(shards) > 3
    expected = []
    for s in shards:  # transformers' order: shard names sorted, then each file's own order
        with mfparse.open(folder / s, whole=False) as one:
            expected += [(t.name, s, t.dtype, t.shape, t.offset) for t in one.tensors()]
    for target in (folder, folder / "model.safetensors.index.json", folder / shards[2]):
        with mfparse.open(target) as m:
            assert m.format == "safetensors" and m.files == shards and m.warnings == []
            assert [(t.name, t.file, t.dtype, t.shape, t.offset) for t in m.tensors()] == expected
            assert m.metadata["config.model_type"] == "gpt2"
            assert m.metadata["config.architectures"] == ["GPT2LMHeadModel"]
            assert m.metadata["index.total_size"] == sum(t.nbytes for t in m.tensors())
            assert m.metadata["format"] == "pt"
            ref = {}
            for s in shards:
                ref.update(st_load(str(folder / s)))
            assert set(m.keys()) == set(ref)
            for name, t in ref.items():
                np.testing.assert_array_equal(m[name], t.numpy())
            tree = m.tree()
            assert set(tree) - {"__metadata__"} == set(ref)
            assert tree["transformer.wte.weight"].file == m.info("transformer.wte.weight").file


def test_bin_shards_as_transformers_4_wrote_them(hf):
    folder = hf["dir"] / "bin"
    shards = _shards(folder, ".bin")
    sd = hf["sd"]
    with mfparse.open(folder) as m:
        assert m.format == "torch-zip" and m.files == shards and m.warnings == []
        assert set(m.keys()) == set(sd)
        for name, t in sd.items():
            np.testing.assert_array_equal(m[name], t.numpy())
        wte, head = m.info("transformer.wte.weight"), m.info("lm_head.weight")
        assert wte.file == head.file and wte.storage == head.storage and wte.storage.startswith(wte.file + ":")
        storages = {(t.file, t.storage) for t in m.tensors()}
        assert len(storages) == len(sd) - 1  # only the tied pair shares
        assert m.metadata["index.total_size"] == sum(t.nbytes for t in m.tensors()) - wte.nbytes
        assert m.metadata["config.model_type"] == "gpt2"


def test_single_file_stays_one_file(hf):
    p = hf["dir"] / "st1" / "model.safetensors"
    with mfparse.open(p) as m:
        assert type(m) is mfparse.ModelFile and m.files == ["model.safetensors"] and m.parts() == [("", None, m)]
        assert all(t.file is None for t in m.tensors())
    with mfparse.open(hf["dir"] / "st1") as m:  # the folder: the same tensors, with their file
        assert m.files == ["model.safetensors"] and {t.file for t in m.tensors()} == {"model.safetensors"}
        assert m.metadata["config.model_type"] == "gpt2"
    with mfparse.open(hf["dir"] / "bin1") as m:
        assert m.files == ["pytorch_model.bin"] and m.format == "torch-zip"


def test_load_file_across_shards(hf):
    import mfparse.numpy
    import mfparse.torch  # noqa: F401  (mfparse is a module global: these bind only submodules)

    sd = hf["sd"]
    for folder in (hf["dir"] / "bin", hf["dir"] / "bin" / "pytorch_model.bin.index.json"):
        got = mfparse.torch.load_file(folder)
        with mfparse.open(folder) as m:
            assert list(got) == m.keys()
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
        # zero-copy views of each file's private map: the tied pair is one buffer, writable,
        # and writing never reaches the file
        assert got["lm_head.weight"].data_ptr() == got["transformer.wte.weight"].data_ptr()
        got["lm_head.weight"][0, 0] = 123.0
        assert got["transformer.wte.weight"][0, 0] == 123.0
    assert torch.equal(mfparse.torch.load_file(hf["dir"] / "bin")["lm_head.weight"], sd["lm_head.weight"])
    part = mfparse.torch.load_file(hf["dir"] / "st", names=["transformer.h.1.ln_1.weight"])
    assert list(part) == ["transformer.h.1.ln_1.weight"]
    arrays = mfparse.numpy.load_file(hf["dir"] / "st")
    assert set(arrays) == set(sd) - {"lm_head.weight"}
    for k, a in arrays.items():
        np.testing.assert_array_equal(a, sd[k].numpy())


# ---- convert ----------------------------------------------------------------------------------------

@pytest.fixture
def no_unpickling(monkeypatch):
    """Converting must never unpickle: every way in is made to fail."""
    def boom(*a, **k):
        raise AssertionError("unpickling during convert")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)


def test_convert_bin_shards_to_safetensors_folder(hf, tmp_path, no_unpickling, monkeypatch):
    transformers = pytest.importorskip("transformers")
    from mfparse.convert import convert

    out = tmp_path / "out"
    r = convert(hf["dir"] / "bin", out, max_shard_size="20KB")
    monkeypatch.undo()
    # named and laid out as transformers writes the same model with the same max_shard_size
    ref = hf["dir"] / "st"
    assert sorted(os.listdir(out)) == sorted(f for f in os.listdir(ref) if f != "generation_config.json") + [
        "tokenizer_config.json"]
    got_index = json.loads((out / "model.safetensors.index.json").read_text())
    ref_index = json.loads((ref / "model.safetensors.index.json").read_text())
    assert got_index == ref_index
    assert (out / "model.safetensors.index.json").read_text().endswith("}\n")
    assert "lm_head.weight" not in got_index["weight_map"]
    assert any("lm_head.weight = transformer.wte.weight" in n for n in r.notes)
    for f in _shards(out, ".safetensors"):
        with mfparse.open(out / f, whole=False) as m:
            assert m.metadata == {"format": "pt"}
    # transformers loads it to the source's weights
    model = transformers.GPT2LMHeadModel.from_pretrained(out)
    sd = model.state_dict()
    assert set(sd) == set(hf["sd"]) and all(torch.equal(sd[k], hf["sd"][k]) for k in sd)


def test_convert_single_bin_and_cli_options(hf, tmp_path):
    from mfparse.convert import convert

    out = tmp_path / "one"
    r = convert(hf["dir"] / "bin1" / "pytorch_model.bin", out)  # a file in a folder with config.json
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"] and r.files[0] == "model.safetensors"
    ref = st_load(str(out / "model.safetensors"))
    assert set(ref) == set(hf["sd"]) - {"lm_head.weight"}
    res = run_cli("convert", hf["dir"] / "bin", tmp_path / "cli", "--max-shard-size", "30KB", "--weights-only",
                  "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    files = sorted(os.listdir(tmp_path / "cli"))
    assert "config.json" not in files and "model.safetensors.index.json" in files and sorted(d["files"]) == files
    for f in _shards(tmp_path / "cli", ".safetensors"):
        with mfparse.open(tmp_path / "cli" / f, whole=False) as m:
            assert sum(t.nbytes for t in m.tensors()) <= 30_000 or len(m) == 1
    res = run_cli("convert", hf["dir"] / "bin", tmp_path / "cli")
    assert res.returncode == 2 and "not empty" in res.stderr
    res = run_cli("convert", hf["dir"] / "bin", tmp_path / "cli", "--force", "--max-shard-size", "1TB")
    assert res.returncode == 0 and sorted(os.listdir(tmp_path / "cli")) == [
        "config.json", "model.safetensors", "tokenizer_config.json"]
    with mfparse.open(tmp_path / "cli") as m:
        for name in m.keys():
            np.testing.assert_array_equal(m[name], hf["sd"][name].numpy())


def test_convert_folder_is_atomic(hf, tmp_path, monkeypatch):
    from mfparse.convert import convert
    from mfparse.writers import safetensors as st

    calls = []
    real = st.write

    def failing(out, items, meta=None):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(out, items, meta)

    monkeypatch.setattr(st, "write", failing)
    with pytest.raises(OSError):
        convert(hf["dir"] / "bin", tmp_path / "out", max_shard_size="20KB")
    assert os.listdir(tmp_path) == []  # neither the folder nor a temporary one is left
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "old.txt").write_text("old")
    calls.clear()
    with pytest.raises(OSError):
        convert(hf["dir"] / "bin", tmp_path / "keep", max_shard_size="20KB", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["keep"] and os.listdir(tmp_path / "keep") == ["old.txt"]


def test_convert_folder_to_one_file_and_diff(hf, tmp_path):
    from mfparse.convert import convert
    from mfparse.diff import diff

    convert(hf["dir"] / "st", tmp_path / "all.safetensors")
    with mfparse.open(tmp_path / "all.safetensors") as m:
        assert set(m.keys()) == set(hf["sd"]) - {"lm_head.weight"}
    rep = diff(hf["dir"] / "st", tmp_path / "all.safetensors")
    assert rep.equal and not rep.only_a and not rep.only_b
    rep = diff(hf["dir"] / "st", hf["dir"] / "bin")
    assert rep.only_b == ["lm_head.weight"] and not rep.value_changes
    res = run_cli("diff", hf["dir"] / "st", hf["dir"] / "st" / "model.safetensors.index.json")
    assert res.returncode == 0 and "EQUAL" in res.stdout


def test_quantize_sharded_writes_sharded(hf, tmp_path):
    from mfparse.diff import diff
    from mfparse.quantize import quantize

    out = tmp_path / "q"
    rep = quantize(hf["dir"] / "st", out, "int8")
    src_shards = _shards(hf["dir"] / "st", ".safetensors")
    assert sorted(os.listdir(out)) == sorted(src_shards + ["model.safetensors.index.json"])
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["transformer.h.0.mlp.c_fc.weight.scale"] == index["weight_map"][
        "transformer.h.0.mlp.c_fc.weight"]
    with mfparse.open(out) as m:
        assert m.warnings == [] and m.info("transformer.h.0.mlp.c_fc.weight").dtype == "int8"
        assert m.metadata["index.total_size"] == sum(t.nbytes for t in m.tensors())
    w = mfparse.dequantize(out, "transformer.h.0.mlp.c_fc.weight")
    ref = hf["sd"]["transformer.h.0.mlp.c_fc.weight"].numpy()
    assert w.shape == ref.shape and np.abs(w - ref).max() <= np.abs(ref).max() / 127
    assert diff(hf["dir"] / "st", out, atol=0.01).equal
    assert rep.bytes_after < rep.bytes_before


def test_inspect_cli_folder(hf):
    res = run_cli("inspect", "--json", hf["dir"] / "bin")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)["files"][0]  # the record of the one input (a folder)
    shards = _shards(hf["dir"] / "bin", ".bin")
    assert [f["file"] for f in d["files"]] == shards and d["layout"] == "model"
    assert sum(f["tensors"] for f in d["files"]) == d["tensor_count"] == len(hf["sd"])
    assert {t["file"] for t in d["tensors"]} == set(shards)
    res = run_cli("inspect", hf["dir"] / "st" / _shards(hf["dir"] / "st", ".safetensors")[0])
    assert res.returncode == 0 and f"total ({len(_shards(hf['dir'] / 'st', '.safetensors'))} files)" in res.stdout
    res = run_cli("inspect", "--json", hf["dir"] / "st1" / "model.safetensors")
    assert json.loads(res.stdout)["files"][0]["files"][0]["file"] == "model.safetensors"


# ---- hand-made layouts: validation --------------------------------------------------------------

def make_sharded(folder, shards, index=True, total_size=None, config=None):
    """A safetensors shard set: shards = [{name: array}], named model-0000i-of-0000n, with the
    index transformers writes (or `index` as a dict to write instead)."""
    os.makedirs(folder, exist_ok=True)
    n = len(shards)
    wm = {}
    for i, tensors in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{n:05d}.safetensors"
        st_save(tensors, os.path.join(folder, fname), metadata={"format": "pt"})
        wm.update({k: fname for k in tensors})
    if index is True:
        size = sum(a.nbytes for t in shards for a in t.values()) if total_size is None else total_size
        index = {"metadata": {"total_size": size}, "weight_map": wm}
    if index:
        text = index if isinstance(index, str) else json.dumps(index, indent=2, sort_keys=True)
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            f.write(text)
    if config is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)
    return wm


def A(*shape, v=1.0):
    return np.full(shape, v, np.float32)


SHARDS = [{"a.w": A(2, 3), "a.b": A(3)}, {"b.w": A(4, 3, v=2.0)}, {"c.w": A(5, v=3.0)}]


def _index(folder):
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _rewrite(folder, index):
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_valid_handmade_layout_and_config(tmp_path):
    make_sharded(tmp_path, SHARDS, config={"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                           "torch_dtype": "bfloat16", "auto_map": {"AutoModel": "modeling_x.M"},
                                           "secret_list": [{"x": 1}]})
    (tmp_path / "modeling_x.py").write_text("raise SystemExit\n")
    with mfparse.open(tmp_path) as m:
        assert m.keys() == ["a.b", "a.w", "b.w", "c.w"] and m.warnings == []
        assert m.metadata["config.torch_dtype"] == "bfloat16"
        assert m.metadata["config.auto_map"] == {"AutoModel": "modeling_x.M"}
        assert not any("secret" in k for k in m.metadata)
        assert m.layout.auto_map == {"AutoModel": "modeling_x.M"}
        assert m.layout.python_files == ["modeling_x.py"]
        assert "config.json" in m.layout.files and "model.safetensors.index.json" in m.layout.files
        np.testing.assert_array_equal(m["b.w"], A(4, 3, v=2.0))
    lay = locate(tmp_path / "model-00002-of-00003.safetensors")
    assert lay.kind == "shards" and lay.components[0].index == "model.safetensors.index.json"


def test_missing_shard(tmp_path):
    make_sharded(tmp_path, SHARDS)
    os.remove(tmp_path / "model-00002-of-00003.safetensors")
    with pytest.raises(CorruptFileError, match="model-00002-of-00003.safetensors is missing") as e:
        mfparse.open(tmp_path)
    assert e.value.path.endswith("model.safetensors.index.json")
    # the same set without its index: the split set is incomplete
    os.remove(tmp_path / "model.safetensors.index.json")
    with pytest.raises(CorruptFileError, match="model-00002-of-00003.safetensors of the 3-file set is missing"):
        mfparse.open(tmp_path / "model-00001-of-00003.safetensors")


def test_split_set_without_index(tmp_path):
    make_sharded(tmp_path, SHARDS, index=False)
    for target in (tmp_path, tmp_path / "model-00003-of-00003.safetensors"):
        with mfparse.open(target) as m:
            assert m.keys() == ["a.b", "a.w", "b.w", "c.w"] and m.layout.components[0].kind == "split"


def test_weight_map_entry_not_in_its_shard(tmp_path):
    make_sharded(tmp_path, SHARDS)
    index = _index(tmp_path)
    index["weight_map"]["b.w"] = "model-00003-of-00003.safetensors"
    _rewrite(tmp_path, index)
    with pytest.raises(CorruptFileError, match=r"maps 'b.w' to model-00003-of-00003.safetensors, which does not "
                                               r"hold it"):
        mfparse.open(tmp_path)  # (the index names no tensor in shard 2 any more: it is not opened)
    index["weight_map"]["b.w"] = "model-00001-of-00003.safetensors"
    index["weight_map"]["c.w"] = "model-00002-of-00003.safetensors"
    _rewrite(tmp_path, index)
    with pytest.raises(CorruptFileError, match=r"maps 'b.w' to model-00001-of-00003.safetensors, which does not "
                                               r"hold it \(it is in model-00002-of-00003.safetensors\)"):
        mfparse.open(tmp_path)
    index["weight_map"]["b.w"] = "model-00002-of-00003.safetensors"
    index["weight_map"]["c.w"] = "model-00003-of-00003.safetensors"
    index["weight_map"]["ghost"] = "model-00001-of-00003.safetensors"
    _rewrite(tmp_path, index)
    with pytest.raises(CorruptFileError, match="'ghost'"):
        mfparse.open(tmp_path)


def test_name_in_two_shards(tmp_path):
    make_sharded(tmp_path, [{"x": A(2)}, {"x": A(2), "y": A(1)}], index={"metadata": {}, "weight_map": {
        "x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}})
    with pytest.raises(CorruptFileError, match="'x' is in two files: model-00001-of-00002.safetensors and "
                                               "model-00002-of-00002.safetensors"):
        mfparse.open(tmp_path)
    os.remove(tmp_path / "model.safetensors.index.json")
    with pytest.raises(CorruptFileError, match="two files"):
        mfparse.open(tmp_path)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors",
                                   "C:/x.safetensors"])
def test_index_naming_a_file_outside(tmp_path, shard):
    d = tmp_path / "model"
    make_sharded(d, SHARDS)
    st_save({"z": A(1)}, str(tmp_path / "outside.safetensors"))
    index = _index(d)
    index["weight_map"]["c.w"] = shard
    _rewrite(d, index)
    with pytest.raises(CorruptFileError, match="outside the folder|absolute") as e:
        mfparse.open(d)
    assert e.value.path.endswith("model.safetensors.index.json")


def test_symlinked_shard_out_of_the_folder(tmp_path):
    d = tmp_path / "model"
    make_sharded(d, SHARDS)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(d / "model-00003-of-00003.safetensors", outside)
    os.symlink(outside, d / "model-00003-of-00003.safetensors")
    with pytest.raises(CorruptFileError, match="outside the folder"):
        mfparse.open(d)


def test_hf_cache_snapshot_links_into_blobs(tmp_path):
    repo = tmp_path / "models--org--tiny"
    src = tmp_path / "src"
    make_sharded(src, SHARDS, config={"model_type": "llama"})
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(os.listdir(src))):
        shutil.move(src / f, repo / "blobs" / f"{i:040x}")
        os.symlink(f"../../blobs/{i:040x}", snap / f)
    with mfparse.open(snap) as m:
        assert m.keys() == ["a.b", "a.w", "b.w", "c.w"] and m.metadata["config.model_type"] == "llama"
        np.testing.assert_array_equal(m["c.w"], A(5, v=3.0))
    os.symlink(tmp_path / "src", snap / "evil")  # a link anywhere else is still refused
    index = _index(snap)
    index["weight_map"]["c.w"] = "evil/x.safetensors"
    os.remove(snap / "model.safetensors.index.json")
    (snap / "model.safetensors.index.json").write_text(json.dumps(index))
    st_save({"c.w": A(5)}, str(tmp_path / "src" / "x.safetensors"))
    with pytest.raises(CorruptFileError, match="outside"):
        mfparse.open(snap)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"metadata": {}}', "no weight_map"),
    ('[1, 2]', "no weight_map"),
    ('{"weight_map": {"a.w": "model-00001-of-00003.safetensors", "a.w": "model-00002-of-00003.safetensors"}}',
     "names 'a.w' twice"),
    ('{"weight_map": {"a.w": 7}}', "not a file name"),
    ('{"weight_map": {}}', "empty"),
])
def test_broken_index_files(tmp_path, text, match):
    make_sharded(tmp_path, SHARDS, index=text)
    with pytest.raises(CorruptFileError, match=match) as e:
        mfparse.open(tmp_path)
    assert e.value.path.endswith("model.safetensors.index.json")


def test_tensors_missing_from_the_index_are_reported(tmp_path):
    make_sharded(tmp_path, SHARDS)
    index = _index(tmp_path)
    del index["weight_map"]["a.b"]
    index["metadata"]["total_size"] -= 12
    _rewrite(tmp_path, index)
    with mfparse.open(tmp_path) as m:
        assert "a.b" in m.keys() and m.info("a.b").file == "model-00001-of-00003.safetensors"
        assert len(m.warnings) == 1 and "missing from the index: a.b (model-00001-of-00003.safetensors)" in \
            m.warnings[0]
    with pytest.raises(CorruptFileError, match="missing from the index"):
        mfparse.open(tmp_path, strict=True)


def test_total_size(tmp_path):
    make_sharded(tmp_path, SHARDS, total_size=999)
    with mfparse.open(tmp_path) as m:
        assert m.warnings and "total_size 999 does not match the 104 bytes of the 4 tensors" in m.warnings[0]
    with pytest.raises(CorruptFileError, match="total_size"):
        mfparse.open(tmp_path, strict=True)
    index = _index(tmp_path)
    index["metadata"]["total_size"] = 104.0  # old transformers wrote floats
    _rewrite(tmp_path, index)
    with mfparse.open(tmp_path) as m:
        assert m.warnings == []
    index["metadata"]["total_size"] = "big"
    _rewrite(tmp_path, index)
    with mfparse.open(tmp_path) as m:
        assert "not a number" in m.warnings[0]


def test_shard_that_is_not_a_weights_file(tmp_path):
    make_sharded(tmp_path, SHARDS)
    (tmp_path / "model-00002-of-00003.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(mfparse.MFParseError) as e:
        mfparse.open(tmp_path)
    assert e.value.path.endswith("model-00002-of-00003.safetensors")


def test_folders_without_a_model(tmp_path):
    with pytest.raises(IsADirectoryError):
        mfparse.open(tmp_path)
    st_save({"x": A(1)}, str(tmp_path / "a.safetensors"))
    with mfparse.open(tmp_path) as m:  # exactly one weight file: that model
        assert m.files == ["a.safetensors"]
    st_save({"x": A(1)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(IsADirectoryError, match="2 models"):
        mfparse.open(tmp_path)
    flax = tmp_path / "flax"
    flax.mkdir()
    (flax / "flax_model.msgpack").write_bytes(b"\x80")
    with pytest.raises(mfparse.UnsupportedFormatError, match="msgpack"):
        mfparse.open(flax)
    both = tmp_path / "both"
    both.mkdir()
    st_save({"x": A(1)}, str(both / "model.safetensors"))
    (both / "flax_model.msgpack").write_bytes(b"\x80")
    with mfparse.open(both) as m:
        assert m.files == ["model.safetensors"] and any("msgpack" in n for n in m.layout.notes)


def test_transformers_loading_order_and_explicit_weights(tmp_path):
    st_save({"s": A(1)}, str(tmp_path / "model.safetensors"))
    torch.save({"b": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with mfparse.open(tmp_path) as m:
        assert m.keys() == ["s"]  # safetensors first, as transformers loads
    st_save({"e": A(1)}, str(tmp_path / "custom.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"transformers_weights": "custom.safetensors"}))
    with mfparse.open(tmp_path) as m:
        assert m.keys() == ["e"]
    (tmp_path / "config.json").write_text(json.dumps({"transformers_weights": "../x.safetensors"}))
    with pytest.raises(CorruptFileError, match="outside the folder"):
        mfparse.open(tmp_path)


# ---- GGUF splits ------------------------------------------------------------------------------------

def write_gguf_split(folder, n_tensors=5, per_split=2):
    import gguf

    os.makedirs(folder, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(folder, "tiny.gguf"), "llama", split_max_tensors=per_split)
    w.add_block_count(n_tensors)
    w.add_name("tiny")
    for i in range(n_tensors):
        w.add_tensor(f"blk.{i}.w", np.full((4, 8), i, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(os.listdir(folder))


def test_gguf_splits(tmp_path):
    import gguf

    files = write_gguf_split(tmp_path)
    assert files == [f"tiny-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for target in (tmp_path / files[1], tmp_path / files[0], tmp_path):
        with mfparse.open(target) as m:
            assert m.format == "gguf" and m.files == files and m.layout.components[0].kind == "gguf-split"
            assert m.keys() == [f"blk.{i}.w" for i in range(5)]
            assert m.metadata["general.name"] == "tiny" and m.metadata["split.count"] == 3
            for i in range(5):
                np.testing.assert_array_equal(m[f"blk.{i}.w"], np.full((4, 8), i, np.float32))
    ref = {}
    for f in files:
        r = gguf.GGUFReader(str(tmp_path / f))
        ref.update({t.name: (f, np.array(t.data)) for t in r.tensors})
    with mfparse.open(tmp_path) as m:
        assert {t.name: t.file for t in m.tensors()} == {k: v[0] for k, v in ref.items()}


def test_gguf_split_keys_checked(tmp_path):
    files = write_gguf_split(tmp_path / "a")
    # a split renamed into another place of the set
    d = tmp_path / "swapped"
    d.mkdir()
    shutil.copy(tmp_path / "a" / files[0], d / files[0])
    shutil.copy(tmp_path / "a" / files[2], d / files[1])
    shutil.copy(tmp_path / "a" / files[1], d / files[2])
    with pytest.raises(CorruptFileError, match="split.no is 2"):
        mfparse.open(d / files[0])
    # a set of 2 files made of 3 splits
    d = tmp_path / "short"
    d.mkdir()
    shutil.copy(tmp_path / "a" / files[0], d / "tiny-00001-of-00002.gguf")
    shutil.copy(tmp_path / "a" / files[1], d / "tiny-00002-of-00002.gguf")
    with pytest.raises(CorruptFileError, match="split.count is 3, but the set has 2 files"):
        mfparse.open(d)
    # a missing split
    os.remove(tmp_path / "a" / files[2])
    with pytest.raises(CorruptFileError, match="tiny-00003-of-00003.gguf of the 3-file set is missing"):
        mfparse.open(tmp_path / "a" / files[0])
    # GGUF files named like splits without split keys
    d = tmp_path / "plain"
    d.mkdir()
    import gguf

    for i in (1, 2):
        w = gguf.GGUFWriter(str(d / f"x-0000{i}-of-00002.gguf"), "llama")
        w.add_tensor(f"t{i}", np.zeros(2, np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    with pytest.raises(CorruptFileError, match="no split.no"):
        mfparse.open(d)


def test_gguf_split_tensor_count(tmp_path):
    import gguf

    files = write_gguf_split(tmp_path / "a", n_tensors=4, per_split=2)
    # rewrite split 2 with one tensor less: split.tensors.count (4) no longer adds up
    d = tmp_path / "a"
    os.remove(d / files[1])
    w = gguf.GGUFWriter(str(d / files[1]), "llama")
    w.add_uint16("split.no", 1)
    w.add_uint16("split.count", 2)
    w.add_int32("split.tensors.count", 4)
    w.add_tensor("blk.2.w", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CorruptFileError, match="split.tensors.count is 4, but the 2 splits hold 3 tensors"):
        mfparse.open(d)


# ---- diffusers ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd_pipeline(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, norm_num_groups=2, attention_head_dim=2)
    vae = diffusers.AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  latent_channels=4, norm_num_groups=2)
    te = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=16, num_attention_heads=2,
        num_hidden_layers=2, pad_token_id=1, vocab_size=100))
    pipe = diffusers.StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=te, tokenizer=None,
                                             scheduler=diffusers.DDIMScheduler(steps_offset=1, clip_sample=False),
                                             safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    d = tmp_path_factory.mktemp("sd") / "pipe"
    pipe.save_pretrained(d, max_shard_size="10KB")
    return d, {"unet": unet.state_dict(), "vae": vae.state_dict(), "text_encoder": te.state_dict()}


def test_diffusers_pipeline(sd_pipeline):
    d, ref = sd_pipeline
    with mfparse.open(d) as m:
        assert m.layout.kind == "diffusers" and [c.name for c in m.layout.components] == [
            "text_encoder", "unet", "vae"]  # model_index.json's order
        assert m.metadata["model_index._class_name"] == "StableDiffusionPipeline"
        assert m.metadata["unet.config._class_name"] == "UNet2DConditionModel"
        assert m.metadata["text_encoder.config.model_type"] == "clip_text_model"
        assert len([f for f in m.files if f.startswith("unet/")]) > 1  # each component sharded
        names = set(m.keys())
        for comp, sd in ref.items():
            assert {f"{comp}.{k}" for k in sd} <= names
            for k, v in sd.items():
                t = m.info(f"{comp}.{k}")
                assert t.file.startswith(comp + "/")
                np.testing.assert_array_equal(m[f"{comp}.{k}"], v.numpy())
        assert len(names) == sum(len(v) for v in ref.values())
        assert set(m.tree()) == {"text_encoder", "unet", "vae"}
    import mfparse.torch as mtorch

    loaded = mtorch.load_file(d)
    assert torch.equal(loaded["vae.encoder.conv_in.weight"], ref["vae"]["encoder.conv_in.weight"])
    with mfparse.open(d / "unet") as m:  # one component folder on its own
        assert set(m.keys()) == set(ref["unet"]) and m.metadata["config._class_name"] == "UNet2DConditionModel"


def test_diffusers_component_weights_choice(tmp_path):
    d = tmp_path / "pipe"
    (d / "unet").mkdir(parents=True)
    (d / "model_index.json").write_text(json.dumps({"_class_name": "P", "unet": ["diffusers", "UNet2DModel"],
                                                    "scheduler": ["diffusers", "DDIMScheduler"]}))
    st_save({"w": A(2, v=1.0)}, str(d / "unet" / "diffusion_pytorch_model.safetensors"))
    st_save({"w": A(2, v=2.0).astype(np.float16)}, str(d / "unet" / "diffusion_pytorch_model.fp16.safetensors"))
    torch.save({"w": torch.full((2,), 3.0)}, d / "unet" / "diffusion_pytorch_model.bin")
    with mfparse.open(d) as m:  # safetensors, non-variant
        assert m.files == ["unet/diffusion_pytorch_model.safetensors"] and m["unet.w"][0] == 1.0
    with mfparse.open(d, variant="fp16") as m:
        assert m.files == ["unet/diffusion_pytorch_model.fp16.safetensors"] and m.info("unet.w").dtype == "float16"
    os.remove(d / "unet" / "diffusion_pytorch_model.safetensors")
    with mfparse.open(d) as m:  # no safetensors: the .bin, as diffusers falls back
        assert m.files == ["unet/diffusion_pytorch_model.bin"] and m["unet.w"][0] == 3.0
    with pytest.raises(IsADirectoryError, match="without component weights"):
        mfparse.open(d, variant="bf16")


@pytest.mark.parametrize("text, match", [
    ("[" * 100000 + "]" * 100000, "not valid JSON"),                       # nesting deeper than the parser
    ('{"weight_map": {"a.w": ["x"]}}', "not a file name"),                 # unhashable value
    ('{"weight_map": {"a.w": "model.safetensors.index.json"}}', "index itself"),
    ('{"weight_map": {"a.w": "sub"}}', "is a folder"),
])
def test_hostile_index_files(tmp_path, text, match):
    make_sharded(tmp_path, SHARDS, index=text)
    (tmp_path / "sub").mkdir()
    with pytest.raises(CorruptFileError, match=match):
        mfparse.open(tmp_path)


def test_index_size_bound(tmp_path, monkeypatch):
    from mfparse import locate as loc

    make_sharded(tmp_path, SHARDS)
    monkeypatch.setattr(loc, "MAX_INDEX_BYTES", 100)
    with pytest.raises(CorruptFileError, match="more than the 100 read for it"):
        mfparse.open(tmp_path)


def test_tied_name_kept_like_transformers():
    from mfparse.writers.base import Item
    from mfparse.writers.folder import drop_tied, plan_shards, shard_names

    def it(name, alias, n=4):
        return Item(name, "float32", (1,), n, None, None, alias)

    items = [it("lm_head.weight", 1), it("transformer.wte.weight", 1), it("x", None),
             it("decoder.embed_tokens.weight", 2), it("shared.weight", 2), it("encoder.embed_tokens.weight", 2),
             it("cls.predictions.decoder.weight", 3), it("bert.embeddings.word_embeddings.weight", 3)]
    kept, dropped = drop_tied(items)
    assert [i.name for i in kept] == ["transformer.wte.weight", "x", "shared.weight",
                                      "bert.embeddings.word_embeddings.weight"]
    assert dict(dropped)["lm_head.weight"] == "transformer.wte.weight"
    # huggingface_hub's greedy rule: a tensor over the limit gets its own shard where it is met
    sizes = [3, 4, 10, 2, 5]
    shards = plan_shards([it(str(i), None, n) for i, n in enumerate(sizes)], 8)
    assert [[x.name for x in s] for s in shards] == [["2"], ["0", "1"], ["3", "4"]]
    assert shard_names("model", ".safetensors", 1) == ["model.safetensors"]
    assert shard_names("model", ".safetensors", 3)[1] == "model-00002-of-00003.safetensors"


def test_closed_model_refuses_reads(tmp_path):
    make_sharded(tmp_path, SHARDS)
    m = mfparse.open(tmp_path)
    m.close()
    with pytest.raises(ValueError, match="closed"):
        m["a.w"]


def test_inspect_json_of_a_folder_matches_the_schema(hf):
    js = pytest.importorskip("jsonschema")
    from mfparse import schemas

    res = run_cli("inspect", "--json", hf["dir"] / "st")
    assert res.returncode == 0, res.stderr
    js.Draft202012Validator(schemas.load("inspect"), format_checker=js.FormatChecker()).validate(json.loads(res.stdout))


def test_scan_reports_remote_code(tmp_path):
    """A model folder whose config.json has an auto_map carries code that from_pretrained(...,
    trust_remote_code=True) runs: a suspicious finding naming the modules; the .py files are
    notes of their own; the weights stay safe."""
    d = tmp_path / "remote_code"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "foo", "architectures": ["FooModel"],
        "auto_map": {"AutoConfig": "configuration_foo.FooConfig", "AutoModel": "modeling_foo.FooModel",
                     "AutoTokenizer": ["tokenization_foo.FooTokenizer", None]}}))
    (d / "modeling_foo.py").write_text("import os\nclass FooModel: pass\n")
    st_save({"w": np.zeros(2, np.float32)}, str(d / "model.safetensors"))
    from mfparse.scan import scan_paths

    reports = {os.path.basename(r.path): r for r in scan_paths([str(d)])}
    cfg = reports["config.json"]
    assert cfg.verdict == "unsafe"
    (f,) = cfg.findings
    assert f.kind == "code" and f.severity == "suspicious" and f.module == "transformers.auto_map"
    assert "configuration_foo.py, modeling_foo.py, tokenization_foo.py" in f.why and "trust_remote_code" in f.why
    assert reports["model.safetensors"].verdict == "safe"
    assert reports["modeling_foo.py"].verdict == "safe" and "Python source" in reports["modeling_foo.py"].notes[0]
