"""`mfparse scan` as a gate (issue 17): severities dangerous / suspicious / info, known-benign
imports (transformers' training arguments, argparse, datetime, pathlib, ...), --fail-on, --allow,
--policy FILE, and the files of an ordinary model repository (tokenizers, licences, READMEs,
images) as notes, never errors. Through the real CLI where users meet it; malicious pickles are
built as bytes and never loaded."""

from __future__ import annotations

import argparse
import datetime
import decimal
import fractions
import json
import os
import pathlib
import pickle
import subprocess
import sys
import uuid
import warnings
from collections import defaultdict

import pytest
import torch

import mfparse
from helpers import ROOT, field, vfield
from pickle_asm import P, call_pickle, torch_zip
from mfparse.scan import policy


def cli(*args, input=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "mfparse", *map(str, args)], capture_output=True, input=input,
                       env=env, cwd=cwd or "/", timeout=300)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


def severities(report):
    return {f.global_name: f.severity for f in report.findings}


# ---- a training_args.bin as transformers' Trainer writes it (built as bytes) ------------------

def _enum(p: P, module: str, cls: str, value: str) -> P:
    return p.call(module, cls, value)  # an enum member pickles as cls(value)


def _dataclass(p: P, module: str, cls: str, fields) -> P:
    """NEWOBJ cls() then BUILD {fields}: how pickle writes an instance with a __dict__."""
    p.glob(module, cls).empty_tuple().newobj().empty_dict().mark()
    for k, push in fields:
        p.unicode(k)
        push(p)
    return p.setitems().build()


def training_args_pickle(extra=()) -> bytes:
    p = P(2)
    _dataclass(p, "transformers.training_args", "TrainingArguments", [
        ("output_dir", lambda q: q.unicode("out")),
        ("learning_rate", lambda q: q.int(1)),
        ("lr_scheduler_type", lambda q: _enum(q, "transformers.trainer_utils", "SchedulerType", "linear")),
        ("optim", lambda q: _enum(q, "transformers.training_args", "OptimizerNames", "adamw_torch")),
        ("eval_strategy", lambda q: _enum(q, "transformers.trainer_utils", "IntervalStrategy", "no")),
        ("save_strategy", lambda q: _enum(q, "transformers.trainer_utils", "SaveStrategy", "steps")),
        ("hub_strategy", lambda q: _enum(q, "transformers.trainer_utils", "HubStrategy", "every_save")),
        ("accelerator_config", lambda q: _dataclass(q, "transformers.trainer_pt_utils", "AcceleratorConfig",
                                                    [("split_batches", lambda r: r.raw(b"\x89"))])),
        ("distributed_state", lambda q: _dataclass(q, "accelerate.state", "PartialState", [
            ("distributed_type", lambda r: _enum(r, "accelerate.utils.dataclasses", "DistributedType", "NO")),
            ("device", lambda r: r.call("torch", "device", "cpu"))])),
        *extra,
    ])
    return p.stop().data


def test_training_args_are_known_benign_imports():
    r = mfparse.scan(torch_zip(training_args_pickle(), prefix="training_args"))
    assert r.verdict == "safe", str(r)
    assert severities(r) == {
        "transformers.training_args.TrainingArguments": "info", "transformers.trainer_utils.SchedulerType": "info",
        "transformers.training_args.OptimizerNames": "info", "transformers.trainer_utils.IntervalStrategy": "info",
        "transformers.trainer_utils.SaveStrategy": "info", "transformers.trainer_utils.HubStrategy": "info",
        "transformers.trainer_pt_utils.AcceleratorConfig": "info", "accelerate.state.PartialState": "info",
        "accelerate.utils.dataclasses.DistributedType": "info"}
    assert all(f.why.startswith("known-benign") and f.kind == "import" for f in r.findings)
    assert "loading imports transformers: TrainingArguments, SchedulerType" in str(r)
    assert "loading imports accelerate: PartialState, DistributedType" in str(r)
    assert str(r).splitlines()[0] == "<bytes>: SAFE (9 known-benign imports)"


def test_a_known_benign_object_built_with_a_gadget_is_still_dangerous():
    # argparse.Namespace whose field is os.system(...): the Namespace is benign, os.system is not
    p = P(2)
    _dataclass(p, "argparse", "Namespace", [("arch", lambda q: q.call("os", "system", "touch /tmp/pwned"))])
    r = mfparse.scan(p.stop().data)
    assert r.verdict == "unsafe"
    assert severities(r) == {"argparse.Namespace": "info", "os.system": "dangerous"}
    # the same inside training arguments, and a BUILD aimed at the class itself stays dangerous
    bad = training_args_pickle(extra=[("report_to", lambda q: q.call("subprocess", "check_output", "id"))])
    assert severities(mfparse.scan(bad))["subprocess.check_output"] == "dangerous"
    p = P(2).glob("argparse", "Namespace").empty_dict().mark().unicode("__init__").none().setitems().build()
    r = mfparse.scan(p.stop().data)
    assert [(f.severity, f.kind) for f in r.findings if f.severity != "info"] == [("dangerous", "build")]


def test_pathlib_paths_build_nothing_but_pathlib_still_reaches_files():
    for cls in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
        for module in ("pathlib", "pathlib._local"):  # Python 3.13 pickles paths from pathlib._local
            assert policy.judge_global(module, cls)[0] == "info"
    for name in ("Path.write_text", "PosixPath.write_bytes", "Path.open", "PosixPath.unlink"):
        assert policy.judge_global("pathlib", name)[0] == "dangerous", name
    r = mfparse.scan(P(2).call("pathlib", "PosixPath", "/etc/passwd").stop().data)
    assert r.verdict == "safe" and severities(r) == {"pathlib.PosixPath": "info"}
    r = mfparse.scan(P(2).glob("pathlib", "Path.write_text").args("x").reduce().stop().data)
    assert r.verdict == "unsafe" and severities(r) == {"pathlib.Path.write_text": "dangerous"}


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_stdlib_values_as_pickle_writes_them(proto):
    obj = {"when": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
           "day": datetime.date(2024, 5, 1), "at": datetime.time(1, 2), "took": datetime.timedelta(seconds=5),
           "path": pathlib.PurePosixPath("/data/run1"), "win": pathlib.PureWindowsPath("C:/data"),
           "here": pathlib.Path("ckpt"), "third": fractions.Fraction(1, 3), "lr": decimal.Decimal("0.001"),
           "id": uuid.UUID(int=7), "args": argparse.Namespace(lr=0.1, arch="resnet"),
           "counts": defaultdict(list, {"a": [1]})}
    r = mfparse.scan(pickle.dumps(obj, protocol=proto))  # written by pickle, never loaded
    assert r.verdict == "safe", str(r)
    assert r.findings and {f.severity for f in r.findings} == {"info"}
    assert {".".join(policy.py3_name(f.module, f.qualname)) for f in r.findings} >= {
        "datetime.datetime", "datetime.timezone", "pathlib.PurePosixPath", "fractions.Fraction", "decimal.Decimal",
        "uuid.UUID", "argparse.Namespace", "collections.defaultdict", "builtins.list"}


def test_real_training_args_bin(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    for cls in (TrainingArguments, Seq2SeqTrainingArguments):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = cls(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
            path = tmp_path / f"{cls.__name__}.bin"
            torch.save(args, path)  # what Trainer._save does
        r = mfparse.scan(path)
        assert r.verdict == "safe", str(r)
        assert {f.severity for f in r.findings} == {"info"}, str(r)
        assert f"{cls.__module__}.{cls.__name__}" in severities(r)
        res = cli("scan", path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "loading imports transformers" in res.stdout


def test_real_trl_configs(tmp_path):
    trl = pytest.importorskip("trl")
    for name in ("SFTConfig", "DPOConfig", "GRPOConfig", "RewardConfig", "KTOConfig", "RLOOConfig"):
        cls = getattr(trl, name, None)
        if cls is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices of the library's own defaults
            args = cls(output_dir=str(tmp_path / name), report_to=[], use_cpu=True, bf16=False)
            torch.save(args, tmp_path / f"{name}.bin")
        r = mfparse.scan(tmp_path / f"{name}.bin")
        assert r.verdict == "safe" and {f.severity for f in r.findings} == {"info"}, (name, str(r))


def test_known_benign_list_is_documented_and_disjoint():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        text = f.read()
    missing = [n for n in policy.KNOWN_BENIGN if f"`{n}`" not in text]
    assert not missing, missing
    assert not set(policy.KNOWN_BENIGN) & policy.ALLOWED  # torch's own list stays torch's
    for name in policy.KNOWN_BENIGN:
        module, _, qual = name.rpartition(".")
        assert policy.is_dotted_identifier(module) and qual.isidentifier()


# ---- --fail-on, --allow, --policy ----------------------------------------------------------

@pytest.fixture()
def gate(tmp_path):
    d = tmp_path / "gate"
    d.mkdir()
    (d / "net.pkl").write_bytes(P(2).call("mypackage.models", "Net", 3).stop().data)  # suspicious only
    (d / "evil.pkl").write_bytes(call_pickle("os", "system", "touch /tmp/never"))
    (d / "args.bin").write_bytes(torch_zip(training_args_pickle(), prefix="args"))
    return d


def test_fail_on(gate):
    net, evil, args = gate / "net.pkl", gate / "evil.pkl", gate / "args.bin"
    r = cli("scan", net)  # default: suspicious fails
    assert r.returncode == 1 and r.stdout.startswith(f"{net}: UNSAFE (1 finding)\n  suspicious mypackage.models.Net")
    r = cli("scan", "--fail-on", "dangerous", net)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.endswith("not failing: 1 unsafe file with only suspicious findings (--fail-on dangerous)\n")
    assert cli("scan", "--fail-on", "dangerous", net, evil).returncode == 1
    assert cli("scan", "--fail-on", "suspicious", args).returncode == 0  # info never fails
    doc = json.loads(cli("scan", "--json", "--fail-on", "dangerous", gate).stdout)
    assert doc["policy"]["fail_on"] == "dangerous"
    assert {k: doc["summary"][k] for k in ("files", "safe", "unsafe", "error", "failed", "exit_status")} == {
        "files": 3, "safe": 1, "unsafe": 2, "error": 0, "failed": 1, "exit_status": 1}
    assert doc["summary"]["findings"] == {"dangerous": 1, "suspicious": 1, "info": 9}
    assert cli("scan", "--fail-on", "info", net).returncode == 2  # not a level


def test_allow(gate):
    net, evil = gate / "net.pkl", gate / "evil.pkl"
    for name in ("mypackage.models.Net", "mypackage.*", "mypackage.models.*"):
        r = cli("scan", "--allow", name, net)
        assert r.returncode == 0, (name, r.stdout, r.stderr)
        assert r.stdout == (f"{net}: SAFE (1 allowed import)\n"
                            "  info       loading imports mypackage: Net (allowed by the policy)\n")
    assert cli("scan", "--allow", "mypackage.other.Net", net).returncode == 1
    r = cli("scan", "--allow", "os.system", evil)
    assert r.returncode == 2 and "refusing to allow os.system: it is dangerous" in r.stderr
    r = cli("scan", "--allow", "os.*", evil)  # a wildcard never lowers a dangerous finding
    assert r.returncode == 1 and "dangerous  os.system" in r.stdout
    r = cli("scan", "--allow", "not a name", net)
    assert r.returncode == 2 and "is not a dotted name" in r.stderr
    r = mfparse.scan(net, policy=policy.Policy(allow=["mypackage.models.Net"]))
    assert r.verdict == "safe" and r.findings[0].severity == "info"


def test_policy_file(gate, tmp_path):
    net, evil, args = gate / "net.pkl", gate / "evil.pkl", gate / "args.bin"
    pol = tmp_path / "policy.toml"
    pol.write_text('fail_on = "dangerous"\nallow = ["mypackage.models.Net"]\n\n[severity]\n'
                   '"transformers.*" = "suspicious"\n')
    r = cli("scan", "--policy", pol, net, args)
    # Net allowed; transformers' classes raised to suspicious, but fail_on is dangerous: exit 0
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{args}: UNSAFE (7 findings, 2 known-benign imports)" in r.stdout
    assert cli("scan", "--policy", pol, "--fail-on", "suspicious", args).returncode == 1  # the flag wins
    assert cli("scan", "--policy", pol, evil).returncode == 1
    pol.write_text('[severity]\n"mypackage.models.Net" = "dangerous"\n')
    r = cli("scan", "--json", "--policy", pol, net)
    f = json.loads(r.stdout)["files"][0]["findings"][0]
    assert r.returncode == 1 and f["severity"] == "dangerous" and f["why"].startswith("dangerous by the policy")
    pol.write_text("known_benign = false\n")
    r = cli("scan", "--policy", pol, args)
    assert r.returncode == 1 and "suspicious transformers.training_args.TrainingArguments" in r.stdout
    for text, message in (('[severity]\n"os.system" = "info"\n', "refusing to lower the severity of os.system"),
                          ('fail_on = "never"\n', "fail_on must be one of dangerous, suspicious"),
                          ('allow = "x.y"\n', "allow must be a list of names"),
                          ('alow = ["x.y"]\n', "unknown key(s) 'alow'"),
                          ("fail_on = \n", "not valid TOML")):
        pol.write_text(text)
        r = cli("scan", "--policy", pol, net)
        assert r.returncode == 2 and r.stdout == "" and message in r.stderr and str(pol) in r.stderr, (text, r.stderr)
    r = cli("scan", "--policy", tmp_path / "missing.toml", net)
    assert r.returncode == 2 and r.stderr == f"mfparse: {tmp_path}/missing.toml: no such file or directory\n"


def test_policy_needs_tomllib_or_tomli(monkeypatch, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text('fail_on = "dangerous"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10 has no tomllib
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(policy.PolicyError, match="needs Python 3.11\\+ or the tomli package"):
        policy.Policy.from_file(pol)


# ---- an ordinary model repository ------------------------------------------------------------

def sentencepiece_like(pieces=("<unk>", "<s>", "</s>", "\u2581the", "\u2581a")) -> bytes:
    """A ModelProto as sentencepiece writes it: repeated pieces {1: piece, 2: score (float), 3: type},
    a trainer_spec (2) and a normalizer_spec (3)."""
    import struct

    out = b""
    for i, s in enumerate(pieces):
        out += field(1, field(1, s.encode()) + bytes([0x15]) + struct.pack("<f", -float(i)) + vfield(3, 1))
    return out + field(2, field(1, b"train.txt") + vfield(3, 8000)) + field(3, field(1, b"nmt_nfkc"))


@pytest.fixture()
def hf_repo(tmp_path):
    d = tmp_path / "bert-like"
    d.mkdir()
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n##s\n")
    (d / "merges.txt").write_text("#version: 0.2\n\u0120 t\nh e\n")
    (d / "LICENSE").write_text("MIT License\n")  # 12 bytes
    (d / "README.md").write_text("---\nlicense: mit\n---\n# A model\n")
    (d / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}))
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (d / "broken.json").write_text('{"unterminated": ')
    (d / "tokenizer.model").write_bytes(sentencepiece_like())
    (d / "modeling_custom.py").write_text("import torch\n\nclass Custom(torch.nn.Module):\n    pass\n")
    (d / "__init__.py").write_bytes(b"")
    (d / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17))
    (d / "training_args.bin").write_bytes(torch_zip(training_args_pickle(), prefix="training_args"))
    torch.save({"w": torch.zeros(2, 2)}, d / "pytorch_model.bin")
    return d


def test_an_ordinary_repository_passes_the_gate(hf_repo):
    r = cli("scan", hf_repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.endswith("14 files: 14 safe, 0 unsafe, 0 error\n") and r.stderr == ""
    doc = json.loads(cli("scan", "--json", hf_repo).stdout)
    notes = {os.path.basename(f["path"]): f["notes"] for f in doc["files"]}
    text = "text file: not a pickle and not a model format; nothing in it would be unpickled"
    for name in ("vocab.txt", "merges.txt", "LICENSE", "README.md", ".gitattributes"):
        assert notes[name] == [text], name
    assert notes["tokenizer.json"] == notes["config.json"] == [
        "JSON file: not a pickle and not a model format; nothing in it would be unpickled"]
    assert notes["broken.json"][0].startswith("JSON file that does not parse (JSONDecodeError)")
    assert notes["tokenizer.model"][0].startswith("protobuf message (a sentencepiece tokenizer model")
    assert notes["modeling_custom.py"][0].startswith("Python source file")
    assert notes["__init__.py"] == ["empty file: nothing in it would be unpickled"]
    assert notes["logo.png"][0].startswith("PNG image: not a model format")
    assert all(f["errors"] == [] for f in doc["files"])


def test_real_sentencepiece_model(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 50)
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "sp"),
                                   vocab_size=30, minloglevel=2)
    r = mfparse.scan(tmp_path / "sp.model")
    assert r.verdict == "safe" and r.notes[0].startswith("protobuf message"), str(r)


def test_model_files_stay_errors(tmp_path):
    # what a loader would read as a model must still be judged: damaged ones are errors
    torch.save({"w": torch.zeros(4)}, tmp_path / "ok.pt")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(4)}, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[:-3])
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=0)[:-4])  # text, cut
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)  # unknown binary
    (tmp_path / "junk.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0f")  # .model, not a protobuf
    from mfparse.scan import scan_paths

    out = {os.path.basename(r.path): r for r in scan_paths([tmp_path])}
    assert out["ok.pt"].verdict == "safe"
    for name in ("m.safetensors", "empty.bin", "weights.pkl", "blob.bin", "junk.model"):
        assert out[name].verdict == "error" and out[name].errors, (name, str(out[name]))
    assert out["empty.bin"].errors == ["empty file: nothing to judge"]
    assert cli("scan", "-", input=b"").returncode == 2  # an empty pipe is never a pass
