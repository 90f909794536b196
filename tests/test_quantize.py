"""Weight-only quantization: the C kernels against the plain numpy implementation of the same
scheme (bit for bit, both the AVX2 and the portable C kernels, any thread count), the error
bounds the issue asks for, pruning thresholds, and the file-level command."""

from __future__ import annotations

import errno
import json
import math
import os

import ml_dtypes
import numpy as np
import pytest

import mfparse
from mfparse import _native
from mfparse import quantize as Q
from mfparse.writers import base
from mfparse.writers.base import WriteError

INPUTS = (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)


@pytest.fixture(params=["auto", "c"])
def isa(request):
    """Run a test with the CPU's best kernels and again with the portable C kernels."""
    name = _native.quant_isa(request.param)
    yield name
    _native.quant_isa("auto")


def gaussian(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---- kernels = reference, bit for bit -----------------------------------------------------------

@pytest.mark.parametrize("dtype", INPUTS, ids=lambda d: np.dtype(d).name)
def test_int8_matches_numpy(seed, isa, dtype):
    rng = np.random.default_rng(seed)
    for shape in [(1, 1), (3, 7), (17, 129), (64, 256), (5, 2, 3, 3)]:
        w = gaussian(rng, shape, dtype) * rng.uniform(0.01, 10)
        for threads in (1, 3):
            qt = Q.quantize_array(w, "int8", threads=threads)
            q, s = Q.reference_int8(w)
            assert np.array_equal(qt.q, q), (shape, threads)
            assert np.array_equal(qt.scale.reshape(-1), s), (shape, threads)
            assert qt.scale.shape == (shape[0],) + (1,) * (len(shape) - 1)


@pytest.mark.parametrize("dtype", INPUTS, ids=lambda d: np.dtype(d).name)
def test_int4_matches_numpy(seed, isa, dtype):
    rng = np.random.default_rng(seed)
    for shape, group in [((1, 1), 128), ((3, 7), 4), ((17, 129), 128), ((8, 300), 64), ((4, 255), 32), ((2, 3, 5), 7)]:
        w = gaussian(rng, shape, dtype) + rng.uniform(-1, 1)   # off-centre: zero points matter
        qt = Q.quantize_array(w, "int4", group, threads=2)
        p, s, z = Q.reference_int4(w, group)
        assert np.array_equal(qt.q, p), (shape, group)
        assert np.array_equal(qt.scale, s), (shape, group)
        assert np.array_equal(qt.zero_point, z), (shape, group)


@pytest.mark.parametrize("dtype", INPUTS, ids=lambda d: np.dtype(d).name)
def test_fp8_matches_numpy(seed, isa, dtype):
    rng = np.random.default_rng(seed)
    for shape in [(1, 1), (33, 65), (4096 * 3 + 5,)]:
        w = gaussian(rng, shape, dtype) * rng.uniform(1e-3, 1e3)
        qt = Q.quantize_array(w, "fp8", threads=2)
        q, s = Q.reference_fp8(w)
        assert qt.scale == s
        assert np.array_equal(qt.q.view(np.uint8), q.view(np.uint8)), shape


def test_e4m3_conversion_every_half_value(isa):
    """Every finite float16 below 448 converts as ml_dtypes converts it (round to nearest
    even, subnormals included), in the scalar function and in the kernel."""
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    h = h[np.isfinite(h) & (np.abs(h) < 448)]
    ref = h.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    q = np.empty(h.size, np.uint8)
    _native.quant_fp8(h.view(np.uint8), mfparse.dtypes.code("float32"), 1.0, q)
    assert np.array_equal(q, ref)
    sample = h[:: 97]
    assert [_native.f32_to_e4m3(float(v)) for v in sample] == ref[:: 97].tolist()
    for b in range(256):
        v = _native.e4m3_to_f32(b)
        r = float(np.uint8(b).view(ml_dtypes.float8_e4m3fn))
        assert (math.isnan(v) and math.isnan(r)) or v == r


def test_f16_widening_every_value():
    h = np.arange(1 << 16, dtype=np.uint16)
    ref = h.view(np.float16).astype(np.float32)
    got = np.array([_native.f16_to_f32(int(x)) for x in h[::37]], np.float32)
    assert np.array_equal(got.view(np.uint32)[np.isfinite(ref[::37])],
                          ref[::37].view(np.uint32)[np.isfinite(ref[::37])])


def test_dequantize_matches_numpy(seed, isa):
    rng = np.random.default_rng(seed)
    w = gaussian(rng, (33, 130), np.float32)
    qt = Q.quantize_array(w, "int4", 16)
    assert np.array_equal(Q.dequantize_arrays("int4", qt.q, qt.scale, qt.zero_point, w.shape, 16),
                          Q.reference_dequant_int4(qt.q, qt.scale, qt.zero_point, 130, 16))
    qt = Q.quantize_array(w, "int8")
    assert np.array_equal(Q.dequantize_arrays("int8", qt.q, qt.scale, None, w.shape),
                          qt.q.astype(np.float32) * qt.scale)
    qt = Q.quantize_array(w, "fp8")
    assert np.array_equal(Q.dequantize_arrays("fp8", qt.q, qt.scale, None, w.shape),
                          qt.q.astype(np.float32) * qt.scale)


# ---- the error bounds ---------------------------------------------------------------------------

#: float32 rounding in x * (1/scale) moves a value by at most ~127 * 2^-23 steps
ROUNDING = 2.0 ** -16


def test_int8_requirements(seed):
    """Gaussian weights: SQNR >= 38 dB, every element within scale/2, file <= 0.55x fp16."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((512, 1024)).astype(np.float16)
    qt = Q.quantize_array(w, "int8")
    x = w.astype(np.float64)
    deq = qt.q.astype(np.float64) * qt.scale.astype(np.float64)
    err = np.abs(x - deq)
    assert (err <= qt.scale.astype(np.float64) * (0.5 + ROUNDING)).all()
    sqnr = 10 * math.log10((x ** 2).sum() / ((x - deq) ** 2).sum())
    assert sqnr >= 38.0
    assert abs(Q._sqnr(qt.stats) - sqnr) < 0.01
    assert abs(qt.stats["max_err"] - err.max()) < 1e-6


def test_int4_within_half_a_step(seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((64, 1000)) * 3 + 1).astype(np.float32)
    g = 128
    qt = Q.quantize_array(w, "int4", g)
    deq = Q.dequantize_arrays("int4", qt.q, qt.scale, qt.zero_point, w.shape, g).astype(np.float64)
    step = np.repeat(qt.scale, g, axis=1)[:, :1000].astype(np.float64)
    assert (np.abs(w - deq) <= step * (0.5 + ROUNDING) + 1e-12).all()
    codes = np.stack([qt.q & 15, qt.q >> 4], axis=-1).reshape(64, -1)[:, :1000]
    assert codes.min() == 0 and codes.max() == 15


def test_fp8_relative_error(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((100, 100)).astype(np.float32)
    qt = Q.quantize_array(w, "fp8")
    s = float(qt.scale)
    deq = qt.q.astype(np.float32).astype(np.float64) * s
    # half an e4m3 step: 2^-4 relative for normals, 2^-10 absolute (in scaled units) below 2^-6
    bound = np.maximum(np.abs(w) * 2.0 ** -4, s * 2.0 ** -10) * (1 + 1e-6)
    assert (np.abs(w - deq) <= bound).all()
    assert np.abs(qt.q.astype(np.float32)).max() == 448.0


def test_zero_rows_and_constant_groups():
    w = np.zeros((4, 256), np.float32)
    w[1] = 2.0
    for scheme in ("int8", "int4", "fp8"):
        qt = Q.quantize_array(w, scheme, 64)
        deq = Q.dequantize_arrays(scheme, qt.q, qt.scale, qt.zero_point, w.shape, 64)
        assert np.array_equal(deq[0], w[0]) and np.allclose(deq[1], 2.0, rtol=1e-6), scheme


def test_threads_do_not_change_results(seed):
    w = np.random.default_rng(seed).standard_normal((300, 1000)).astype(np.float16)
    for scheme in ("int8", "int4", "fp8"):
        a, b = Q.quantize_array(w, scheme, threads=1), Q.quantize_array(w, scheme, threads=7)
        assert np.array_equal(a.q.view(np.uint8), b.q.view(np.uint8)), scheme
        assert np.array_equal(a.scale, b.scale), scheme


def test_nonfinite_counted():
    w = np.ones((4, 16), np.float32)
    w[2, 3] = np.nan
    w[1, 1] = np.inf
    for scheme in ("int8", "int4", "fp8"):
        assert Q.quantize_array(w, scheme, 8).stats["nonfinite"] == 2, scheme


def test_kernel_argument_checks():
    code = mfparse.dtypes.code("float32")
    src = np.zeros(12, np.float32).view(np.uint8)
    with pytest.raises(ValueError, match="q: 5 bytes/elements given, 12 expected"):
        _native.quant_int8(src, code, 3, 4, np.empty(5, np.int8), np.empty(3, np.float32))
    with pytest.raises(ValueError, match="needs a float16, bfloat16, float32 or float64"):
        _native.quant_int8(src, mfparse.dtypes.code("int32"), 3, 1, np.empty(3, np.int8), np.empty(3, np.float32))
    with pytest.raises(ValueError, match="group size"):
        _native.quant_int4(src, code, 3, 4, 0, np.empty(6, np.uint8), np.empty(3, np.float32), np.empty(3, np.uint8))
    with pytest.raises(ValueError, match="source"):
        _native.quant_int8(src, code, 1 << 40, 1 << 40, np.empty(0, np.int8), np.empty(0, np.float32))


# ---- pruning ------------------------------------------------------------------------------------

def test_magnitude_threshold_is_exact():
    a = np.arange(-500, 500, dtype=np.float32) / 7
    for frac in (0.1, 0.25, 0.5, 0.9):
        key, le, n, total = Q.magnitude_threshold([a], frac)
        p = Q.prune_array(a, key, le)
        zeros = int((p == 0).sum())
        assert zeros == n and total == a.size
        assert abs(zeros - frac * a.size) <= 1          # |x| pairs tie: within one element
        kept = np.abs(a[p != 0])
        cut = np.abs(a[p == 0])
        assert cut.max() <= kept.min()


def test_pruning_ties_are_all_or_nothing():
    a = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0], np.float32)
    key, le, n, _ = Q.magnitude_threshold([a], 0.375)    # 3 of 8: the four 1.0 tie
    assert n in (1, 5)
    p = Q.prune_array(a, key, le)
    assert len(set(np.abs(a[(p == 0) & (a != 0)]).tolist())) <= 1


def test_global_pruning_across_tensors(seed):
    rng = np.random.default_rng(seed)
    small = rng.standard_normal((10, 100)).astype(np.float32) * 0.01
    big = rng.standard_normal((10, 100)).astype(np.float32)
    key, le, n, total = Q.magnitude_threshold([small, big], 0.5)
    ps, pb = Q.prune_array(small, key, le), Q.prune_array(big, key, le)
    assert (ps == 0).mean() > 0.95 and (pb == 0).mean() < 0.05
    qt = Q.quantize_array(small, "int8", prune=(key, le))
    assert qt.stats["zeros"] == int((ps == 0).sum())


# ---- the command --------------------------------------------------------------------------------

def model_file(tmp_path, dtype="float16"):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    sd = {"layers.0.weight": torch.randn(256, 512, generator=g).to(dt),
          "layers.0.bias": torch.randn(256, generator=g).to(dt),
          "layers.1.weight": torch.randn(64, 256, generator=g).to(dt),
          "embed.weight": torch.randn(100, 64, generator=g).to(dt),
          "conv.weight": torch.randn(8, 4, 3, 3, generator=g).to(dt),
          "steps": torch.tensor(10)}
    p = tmp_path / "m.pt"
    torch.save({"model": sd, "epoch": 2}, p)
    return p, {f"model.{k}": v for k, v in sd.items()}


@pytest.mark.parametrize("scheme", ["int8", "int4", "fp8"])
def test_quantize_file(tmp_path, scheme):
    from safetensors import safe_open

    src, sd = model_file(tmp_path)
    rep = Q.quantize(src, tmp_path / "q.safetensors", scheme, group_size=64, exclude=["*embed*"], progress=False)
    with safe_open(os.fspath(tmp_path / "q.safetensors"), "np") as f:
        meta = f.metadata()
        keys = set(f.keys())
        assert meta[Q.SCHEME_KEY] == scheme and meta["epoch"] == "2"
        info = json.loads(meta[Q.META_KEY])
        assert set(info["tensors"]) == {"model.layers.0.weight", "model.layers.1.weight", "model.conv.weight"}
        assert "model.layers.0.weight.scale" in keys
        assert ("model.layers.0.weight.zero_point" in keys) == (scheme == "int4")
        # unchanged tensors are copied byte for byte
        assert f.get_tensor("model.layers.0.bias").tobytes() == sd["model.layers.0.bias"].numpy().tobytes()
        assert f.get_tensor("model.embed.weight").tobytes() == sd["model.embed.weight"].numpy().tobytes()
        assert f.get_tensor("model.steps").tobytes() == sd["model.steps"].numpy().tobytes()
    for name in info["tensors"]:
        w = sd[name].float().numpy()
        deq = mfparse.dequantize(tmp_path / "q.safetensors", name)
        assert deq.dtype == np.float32 and deq.shape == w.shape
        ref = Q.quantize_array(sd[name].numpy(), scheme, 64)
        assert np.array_equal(deq, Q.dequantize_arrays(scheme, ref.q, ref.scale, ref.zero_point, w.shape, 64))
    assert np.array_equal(mfparse.dequantize(tmp_path / "q.safetensors", "model.layers.0.bias"),
                          sd["model.layers.0.bias"].float().numpy())
    byname = {t.name: t for t in rep.tensors}
    assert byname["model.embed.weight"].action == "copied" and byname["model.embed.weight"].note == "excluded"
    assert byname["model.layers.0.bias"].note == "1-D"
    assert byname["model.layers.0.weight"].action == scheme and byname["model.layers.0.weight"].sqnr_db > 15
    assert rep.bytes_after == os.path.getsize(tmp_path / "q.safetensors")
    if scheme == "int8":
        assert rep.bytes_after <= 0.55 * rep.bytes_before
    json.dumps(rep.to_dict())
    assert scheme in rep.table()


def test_int8_file_size_of_a_fp16_model(tmp_path):
    """The issue's size goal: int8 file at most 0.55x the fp16 file."""
    src, _ = model_file(tmp_path)
    from mfparse.convert import convert

    convert(src, tmp_path / "m.safetensors", progress=False)
    rep = Q.quantize(tmp_path / "m.safetensors", tmp_path / "q.safetensors", "int8", progress=False)
    assert os.path.getsize(tmp_path / "q.safetensors") <= 0.55 * os.path.getsize(tmp_path / "m.safetensors")
    assert min(t.sqnr_db for t in rep.tensors if t.action == "int8") >= 38


def test_quantize_with_pruning(tmp_path):
    src, sd = model_file(tmp_path, "float32")
    rep = Q.quantize(src, tmp_path / "p.safetensors", "int8", prune=0.5, progress=False)
    assert rep.prune["mode"] == "global" and abs(rep.prune["reached"] - 0.5) < 0.01
    w = mfparse.dequantize(tmp_path / "p.safetensors", "model.layers.0.weight")
    assert abs((w == 0).mean() - rep.tensors[0].zeros) < 1e-9
    rep = Q.quantize(src, tmp_path / "l.safetensors", "int4", prune=0.3, prune_mode="layer", progress=False)
    for t in rep.tensors:
        if t.action == "int4":
            assert abs(t.zeros - 0.3) < 0.01, t.name
    rep = Q.quantize(src, tmp_path / "n.safetensors", "none", prune=0.25, progress=False)
    w = mfparse.dequantize(tmp_path / "n.safetensors", "model.layers.0.weight")
    assert abs((w == 0).mean() - 0.25) < 0.02


def test_quantize_refusals(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    sd = {"w": torch.ones(4, 4), "w.scale": torch.ones(1)}
    torch.save(sd, tmp_path / "c.pt")
    with pytest.raises(WriteError, match="already has a tensor of that name"):
        Q.quantize(tmp_path / "c.pt", tmp_path / "o.safetensors", "int8")
    bad = torch.ones(4, 4)
    bad[1, 1] = float("nan")
    torch.save({"bad": bad, "ok": torch.ones(4, 4)}, tmp_path / "n.pt")
    with pytest.raises(WriteError, match="'bad' holds 1 NaN or infinite"):
        Q.quantize(tmp_path / "n.pt", tmp_path / "o.safetensors", "int8", progress=False)
    assert not (tmp_path / "o.safetensors").exists()
    Q.quantize(tmp_path / "n.pt", tmp_path / "o.safetensors", "int8", exclude=["bad"], progress=False)
    with pytest.raises(WriteError, match="unknown scheme"):
        Q.quantize(tmp_path / "n.pt", tmp_path / "x.safetensors", "int3")
    with pytest.raises(WriteError, match="input of this conversion"):
        Q.quantize(tmp_path / "n.pt", tmp_path / "n.pt", "int8", overwrite=True)

    def broken(self, offset, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(base.Output, "write_at", broken)
    with pytest.raises(OSError):
        Q.quantize(tmp_path / "n.pt", tmp_path / "y.safetensors", "int8", exclude=["bad"], progress=False)
    assert not (tmp_path / "y.safetensors").exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


def test_cli_quantize(tmp_path, capsys):
    from mfparse.cli import main

    src, _ = model_file(tmp_path)
    dst = tmp_path / "q.safetensors"
    assert main(["quantize", os.fspath(src), "-o", os.fspath(dst), "--scheme", "int4", "--group-size", "32",
                 "--report", os.fspath(tmp_path / "r.json"), "--include", "*layers*"]) == 0
    out = capsys.readouterr().out
    assert "SQNR dB" in out and "int4" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["scheme"] == "int4" and rep["group_size"] == 32
    assert {t["name"] for t in rep["tensors"] if t["action"] == "int4"} == {"model.layers.0.weight",
                                                                             "model.layers.1.weight"}
    assert main(["quantize", os.fspath(src), "-o", os.fspath(dst), "--json", "--force", "--prune", "0.2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["prune"]["target"] == 0.2
    assert main(["quantize", os.fspath(src), "-o", os.fspath(dst)]) == 2
    assert "exists" in capsys.readouterr().err


def test_inspect_stats_reports_zero_fraction(tmp_path, capsys):
    from mfparse.cli import main

    src, _ = model_file(tmp_path, "float32")
    Q.quantize(src, tmp_path / "n.safetensors", "none", prune=0.5, progress=False)
    assert main(["inspect", "--stats", "--json", os.fspath(tmp_path / "n.safetensors")]) == 0
    rep = json.loads(capsys.readouterr().out)["files"][0]
    zeros = {t["name"]: t["stats"]["zeros"] for t in rep["tensors"]}
    assert abs(zeros["model.layers.0.weight"] - 0.5) < 0.05
