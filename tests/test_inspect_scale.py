"""`mfparse inspect` on big models (issue 17 item 5), through the real command line: --filter
(globs on the whole name, `re:` regular expressions), --collapse of numbered layers (LLaMA- and
MoE-shaped state dicts written by safetensors and torch.save), --sort, totals per file and a
grand total over several inputs; the JSON output carries the same selection and matches the
shipped schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from helpers import ROOT
from test_loaders import llama_shards

DIM = 16
LAYERS = 12


def cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "mfparse", "inspect", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd="/", timeout=300)


def ok(*args) -> str:
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def doc(*args) -> dict:
    return json.loads(ok("--json", *args))


def table(text: str) -> list[list[str]]:
    """The rows of the tensor table, split on runs of two or more spaces."""
    import re

    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("name ")) + 2
    end = lines.index("", start)
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start:end]]


def llama_state_dict():
    """A LLaMA-shaped state dict (the names of transformers' LlamaForCausalLM), float16, with
    layer 4's k_proj of another shape and layer 6's o_proj pruned: gaps in the collapsed rows."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).half()  # noqa: E731
    sd = {"model.embed_tokens.weight": r(64, DIM)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = r(DIM, DIM)
        sd[p + "self_attn.k_proj.weight"] = r(DIM // 2 if i == 4 else DIM // 4, DIM)
        sd[p + "self_attn.v_proj.weight"] = r(DIM // 4, DIM)
        if i != 6:
            sd[p + "self_attn.o_proj.weight"] = r(DIM, DIM)
        sd[p + "mlp.gate_proj.weight"] = r(3 * DIM, DIM)
        sd[p + "mlp.up_proj.weight"] = r(3 * DIM, DIM)
        sd[p + "mlp.down_proj.weight"] = r(DIM, 3 * DIM)
        sd[p + "input_layernorm.weight"] = torch.ones(DIM, dtype=torch.float16)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(DIM, dtype=torch.float16)
    sd["model.norm.weight"] = torch.ones(DIM, dtype=torch.float16)
    sd["lm_head.weight"] = r(64, DIM)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    sd = llama_state_dict()
    torch.save(sd, d / "llama.pt")  # torch keeps the state dict's order
    save_file(sd, d / "llama.safetensors")
    moe = {}
    for i in range(3):
        moe[f"layers.{i}.gate.weight"] = torch.zeros(4, 8)
        for e in range(4):
            for w in ("w1", "w2"):
                moe[f"layers.{i}.experts.{e}.{w}.weight"] = torch.full((8, 8), float(i * 10 + e))
    torch.save(moe, d / "moe.pt")
    return d, sd, moe


def nbytes(t):
    return t.numel() * t.element_size()


# ---- --collapse ---------------------------------------------------------------------------------

def test_collapse_a_llama_state_dict(files):
    d, sd, _ = files
    rows = table(ok(d / "llama.pt", "--collapse"))
    L = "model.layers."
    assert rows == [
        ["model.embed_tokens.weight", "[64, 16]", "float16", "2.00 KiB"],
        [L + "{0..11}.self_attn.q_proj.weight", "12 x", "[16, 16]", "float16", "6.00 KiB"],
        [L + "{0..3,5..11}.self_attn.k_proj.weight", "11 x", "[4, 16]", "float16", "1.38 KiB"],
        [L + "{0..11}.self_attn.v_proj.weight", "12 x", "[4, 16]", "float16", "1.50 KiB"],
        [L + "{0..5,7..11}.self_attn.o_proj.weight", "11 x", "[16, 16]", "float16", "5.50 KiB"],
        [L + "{0..11}.mlp.gate_proj.weight", "12 x", "[48, 16]", "float16", "18.00 KiB"],
        [L + "{0..11}.mlp.up_proj.weight", "12 x", "[48, 16]", "float16", "18.00 KiB"],
        [L + "{0..11}.mlp.down_proj.weight", "12 x", "[16, 48]", "float16", "18.00 KiB"],
        [L + "{0..11}.input_layernorm.weight", "12 x", "[16]", "float16", "384 B"],
        [L + "{0..11}.post_attention_layernorm.weight", "12 x", "[16]", "float16", "384 B"],
        [L + "4.self_attn.k_proj.weight", "[8, 16]", "float16", "256 B"],
        ["model.norm.weight", "[16]", "float16", "32 B"],
        ["lm_head.weight", "[64, 16]", "float16", "2.00 KiB"],
    ]
    out = ok(d / "llama.pt", "--collapse")
    assert f"Tensors:    {len(sd):,}\n" in out and "Rows:       13 (--collapse" in out
    # JSON: the groups beside the full tensor list, with the numbers of each brace
    rec = doc(d / "llama.safetensors", "--collapse")["files"][0]
    assert len(rec["tensors"]) == len(sd)
    by = {g["name"]: g for g in rec["groups"]}
    k = by[L + "{0..3,5..11}.self_attn.k_proj.weight"]
    assert k["count"] == 11 and k["index_sets"] == [[0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]]
    assert k["nbytes"] == 11 * 4 * 16 * 2 and k["numel"] == 11 * 64 and k["shape"] == [4, 16]
    with_offsets = {t["name"]: t["offset"] for t in rec["tensors"]}
    assert k["offset"] == with_offsets[L + "0.self_attn.k_proj.weight"]
    assert sum(g["count"] for g in rec["groups"]) == len(sd)
    assert sum(g["nbytes"] for g in rec["groups"]) == sum(nbytes(t) for t in sd.values())


def test_collapse_nests_experts_in_layers(files):
    d, _, moe = files
    rows = table(ok(d / "moe.pt", "--collapse"))
    assert rows == [["layers.{0..2}.gate.weight", "3 x", "[4, 8]", "float32", "384 B"],
                    ["layers.{0..2}.experts.{0..3}.w1.weight", "12 x", "[8, 8]", "float32", "3.00 KiB"],
                    ["layers.{0..2}.experts.{0..3}.w2.weight", "12 x", "[8, 8]", "float32", "3.00 KiB"]]
    rec = doc(d / "moe.pt", "--collapse", "--stats")["files"][0]
    g = rec["groups"][1]
    assert g["index_sets"] == [[0, 1, 2], [0, 1, 2, 3]] and g["count"] == 12
    # the combined statistics are those of all the values together
    vals = np.concatenate([moe[f"layers.{i}.experts.{e}.w1.weight"].numpy().ravel() for i in range(3)
                           for e in range(4)]).astype(np.float64)
    st = g["stats"]
    assert (st["min"], st["max"]) == (0.0, 23.0)
    assert st["mean"] == pytest.approx(vals.mean(), rel=1e-12)
    assert st["std"] == pytest.approx(vals.std(ddof=1), rel=1e-12)
    assert st["zeros"] == pytest.approx((vals == 0).mean(), rel=1e-12)


def test_collapse_leaves_unnumbered_and_unequal_names_alone(tmp_path):
    sd = {"conv1.weight": torch.zeros(2), "conv2.weight": torch.zeros(2),  # "conv1" is not a number
          "h.01.w": torch.zeros(2), "h.1.w": torch.zeros(2),               # "01": not a layer number
          "b.0.w": torch.zeros(2), "b.1.w": torch.zeros(3), "b.2.w": torch.zeros(2, dtype=torch.float64)}
    torch.save(sd, tmp_path / "m.pt")
    rows = table(ok(tmp_path / "m.pt", "--collapse"))
    assert [r[0] for r in rows] == list(sd)
    assert all(r[1] == "[2]" or r[1] == "[3]" for r in rows)  # no count column entries
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "k.h5", "w") as f:  # "/" separates components too
        for i in range(3):
            f.create_dataset(f"blocks/{i}/dense/kernel", data=np.zeros((2, 2), np.float32))
            f.create_dataset(f"block_{i}/kernel", data=np.zeros((2, 2), np.float32))  # "block_0": not a number
    rows = table(ok(tmp_path / "k.h5", "--collapse"))
    assert sorted(r[0] for r in rows) == ["block_0/kernel", "block_1/kernel", "block_2/kernel",
                                          "blocks/{0..2}/dense/kernel"]


# ---- --filter -----------------------------------------------------------------------------------

def test_filter_globs_and_regexes(files):
    d, sd, _ = files
    rec = doc(d / "llama.pt", "--filter", "*.self_attn.q_proj.*")["files"][0]
    names = [k for k in sd if ".self_attn.q_proj." in k]
    assert [t["name"] for t in rec["tensors"]] == names
    assert rec["filter"] == {"patterns": ["*.self_attn.q_proj.*"], "matched": 12, "tensors": len(sd)}
    assert rec["tensor_count"] == 12 and rec["parameters"] == 12 * 256 and rec["data_bytes"] == 12 * 512
    assert rec["totals_by_dtype"] == {"float16": {"tensors": 12, "numel": 12 * 256, "nbytes": 12 * 512}}
    assert rec["files"] == [{"file": "llama.pt", "format": "torch-zip", "size": os.path.getsize(d / "llama.pt"),
                             "tensors": 12, "data_bytes": 12 * 512}]
    # a glob matches the whole name; re: searches; several patterns: any
    assert doc(d / "llama.pt", "--filter", "q_proj")["files"][0]["tensor_count"] == 0
    rec = doc(d / "llama.pt", "--filter", r"re:layers\.(0|11)\.mlp\.", "--filter", "lm_head.*")["files"][0]
    assert [t["name"] for t in rec["tensors"]] == [
        k for k in sd if k.startswith(("model.layers.0.mlp.", "model.layers.11.mlp.", "lm_head."))]
    out = ok(d / "llama.pt", "--filter", "*norm*")
    assert f"Tensors:    25 of {len(sd)} (--filter '*norm*')\n" in out
    assert {r[0] for r in table(out)} == {k for k in sd if "norm" in k}
    assert f"Totals by dtype:\n  {'float16':<16} {25:>8,} tensors" in out


def test_filter_errors_and_empty_results(files):
    d, _, _ = files
    r = cli(d / "llama.pt", "--filter", "re:layers.(")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("mfparse: --filter 're:layers.(': not a regular expression (missing ), ")
    out = ok(d / "llama.pt", "--filter", "nothing*")
    assert "Tensors:    0 of 110" in out and "Parameters: 0\n" in out


# ---- --sort -------------------------------------------------------------------------------------

def test_sort_keys(files):
    d, sd, _ = files
    flt = ("--filter", "re:layers\\.(2|10)\\.self_attn\\.[kq]|^model\\.norm\\.weight|embed")

    def order(key):
        return [r[0] for r in table(ok(d / "llama.pt", *flt, "--sort", key))]

    L = "model.layers."
    assert order("name") == ["model.embed_tokens.weight", L + "2.self_attn.k_proj.weight",
                             L + "2.self_attn.q_proj.weight", L + "10.self_attn.k_proj.weight",
                             L + "10.self_attn.q_proj.weight", "model.norm.weight"]  # natural: 2 before 10
    assert order("size") == ["model.embed_tokens.weight", L + "2.self_attn.q_proj.weight",
                             L + "10.self_attn.q_proj.weight", L + "2.self_attn.k_proj.weight",
                             L + "10.self_attn.k_proj.weight", "model.norm.weight"]
    assert order("shape") == ["model.norm.weight", L + "2.self_attn.k_proj.weight", L + "10.self_attn.k_proj.weight",
                              L + "2.self_attn.q_proj.weight", L + "10.self_attn.q_proj.weight",
                              "model.embed_tokens.weight"]
    # safetensors writes the largest dtypes/sizes first: offset order differs from the torch file's
    st = doc(d / "llama.safetensors", "--sort", "offset")["files"][0]["tensors"]
    offsets = [t["offset"] for t in st]
    assert offsets == sorted(offsets) and len(st) == len(sd)
    assert doc(d / "llama.safetensors", "--sort", "offset")["files"][0]["sort"] == "offset"
    # dtype: stable, file order within a dtype
    mixed = {"a": torch.zeros(1, dtype=torch.int64), "b": torch.zeros(1), "c": torch.zeros(1, dtype=torch.int64),
             "d": torch.zeros(1, dtype=torch.float16)}
    torch.save(mixed, d / "mixed.pt")
    assert [r[0] for r in table(ok(d / "mixed.pt", "--sort", "dtype"))] == ["d", "b", "a", "c"]
    # groups sort too
    rows = table(ok(d / "llama.pt", "--collapse", "--sort", "size", "--filter", "*layers*"))
    assert [r[0] for r in rows][:3] == [L + "{0..11}.mlp.gate_proj.weight", L + "{0..11}.mlp.up_proj.weight",
                                        L + "{0..11}.mlp.down_proj.weight"]
    r = cli(d / "llama.pt", "--sort", "bytes")
    assert r.returncode == 2 and "invalid choice: 'bytes'" in r.stderr


# ---- totals -------------------------------------------------------------------------------------

def test_grand_total_over_several_inputs(files, tmp_path):
    d, sd, moe = files
    (bad := tmp_path / "bad.bin").write_bytes(b"not a model")
    r = cli(d / "llama.pt", d / "moe.pt", bad)
    assert r.returncode == 2 and "bad.bin" in r.stderr
    total = r.stdout.split("=" * 78 + "\n")[-1]
    n = len(sd) + len(moe)
    params = sum(t.numel() for t in sd.values()) + sum(t.numel() for t in moe.values())
    size = os.path.getsize(d / "llama.pt") + os.path.getsize(d / "moe.pt")
    data = sum(nbytes(t) for t in sd.values()) + sum(nbytes(t) for t in moe.values())
    assert total.splitlines()[:5] == [
        "Total:      3 inputs, 2 listed, 1 not readable",
        f"Size:       {size / 1024:.2f} KiB ({size:,} bytes)",
        f"Tensors:    {n:,}",
        f"Parameters: {params:,}",
        f"Data:       {data / 1024:.2f} KiB",
    ]
    assert f"  {'float16':<16} {len(sd):>8,} tensors" in total and f"  {'float32':<16} {27:>8,} tensors" in total
    summary = doc(d / "llama.pt", d / "moe.pt", "--filter", "*.weight")["summary"]
    assert summary == {"files": 2, "listed": 2, "errors": 0, "tensor_count": n, "parameters": params,
                       "data_bytes": data, "elements": params, "size": size,
                       "totals_by_dtype": {"float16": {"tensors": len(sd), "numel": sum(t.numel() for t in sd.values()),
                                                       "nbytes": sum(nbytes(t) for t in sd.values())},
                                           "float32": {"tensors": 27, "numel": sum(t.numel() for t in moe.values()),
                                                       "nbytes": sum(nbytes(t) for t in moe.values())}},
                       "exit_status": 0}
    # one input: no grand total (its own header is the total)
    assert "Total:" not in ok(d / "llama.pt")


def test_folder_model_filtered_per_file_table(tmp_path):
    sd = llama_shards(tmp_path / "llama")
    rec = doc(tmp_path / "llama", "--filter", "*q_proj*", "--collapse")["files"][0]
    assert [(f["file"], f["tensors"]) for f in rec["files"]] == [("model-00001-of-00002.safetensors", 2),
                                                                  ("model-00002-of-00002.safetensors", 1)]
    assert rec["tensor_count"] == 3 and rec["data_bytes"] == 3 * 8 * 8 * 4
    (g,) = rec["groups"]
    assert g["name"] == "model.layers.{0..2}.self_attn.q_proj.weight" and g["files"] == 2 and "file" not in g
    out = ok(tmp_path / "llama", "--filter", "*q_proj*", "--collapse")
    assert table(out) == [["model.layers.{0..2}.self_attn.q_proj.weight", "3 x", "[8, 8]", "float32", "768 B",
                           "2 files"]]
    assert "total (2 files)" in out and len(sd) == 21


# ---- machine output -----------------------------------------------------------------------------

def test_json_with_every_option_matches_the_schema(files):
    js = pytest.importorskip("jsonschema")
    from mfparse import schemas

    d, _, _ = files
    v = js.Draft202012Validator(schemas.load("inspect"))
    for args in (("--collapse", "--stats", "--sort", "name"), ("--filter", "*mlp*", "--collapse"),
                 ("--filter", "re:^lm_head", "--sort", "offset")):
        full = doc(d / "llama.pt", d / "moe.pt", *args)
        v.validate(full)
        r = cli("--jsonl", d / "moe.pt", *args)
        line = js.Draft202012Validator(schemas.sub("inspect", "jsonl_line"))
        for x in r.stdout.splitlines():
            line.validate(json.loads(x))
    bad = doc(d / "llama.pt", "--collapse")
    bad["files"][0]["groups"][0]["count"] = 0
    assert not v.is_valid(bad)


def test_plain_paths_namespace_has_the_new_options():
    """`mfparse inspect PATH` parses without argparse (tests/test_startup.py checks the import);
    its namespace carries the options' defaults from the same declarations."""
    from mfparse.cli import _paths_only

    ns = _paths_only(["inspect", "a.pt", "b.pt"])
    assert (ns.files, ns.filter, ns.collapse, ns.sort) == (["a.pt", "b.pt"], None, False, None)
    assert _paths_only(["inspect", "a.pt", "--collapse"]) is None
