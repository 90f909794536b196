"""The pre-commit hook (.pre-commit-hooks.yaml): its entry is the real command, its file pattern
picks model files and leaves source files alone, and the command fails a commit on an unsafe
file and passes on a safe one, with several files at once as pre-commit passes them."""

import os
import re
import subprocess
import sys

import pytest

from pickle_asm import call_pickle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKS = os.path.join(ROOT, ".pre-commit-hooks.yaml")

pytestmark = pytest.mark.skipif(not os.path.exists(HOOKS), reason="the hook file ships in the repository, not the wheel")


def hook_field(name: str) -> str:
    with open(HOOKS) as f:
        for line in f:
            m = re.match(rf"[\s-]+{name}: (.*)$", line)
            if m:
                return m.group(1).strip()
    raise AssertionError(f"{name} not in {HOOKS}")


def test_hook_is_the_scan_command():
    assert hook_field("id") == "mfparse-scan"
    assert hook_field("entry") == "mfparse scan"
    assert hook_field("language") == "python"


@pytest.mark.parametrize("name,picked", [
    ("model.pth", True), ("pytorch_model.bin", True), ("weights.SAFETENSORS", True), ("a/b/data.pkl", True),
    ("m.onnx", True), ("m.gguf", True), ("m.keras", True), ("m.npz", True), ("x.tar.gz", True),
    ("train.py", False), ("README.md", False), ("config.json", False), ("binary", False),
])
def test_file_pattern(name, picked):
    assert bool(re.search(hook_field("files"), name)) is picked


def test_command_fails_the_commit_on_an_unsafe_file(tmp_path):
    import torch

    safe = tmp_path / "ok.pth"
    torch.save({"w": torch.zeros(2)}, safe)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(call_pickle("os", "system", "true"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "mfparse", "scan"]
    assert subprocess.run(cmd + [str(safe)], env=env, capture_output=True).returncode == 0
    r = subprocess.run(cmd + [str(safe), str(bad)], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "os.system" in r.stdout
