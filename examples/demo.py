"""`make demo`: build the tutorial's CNN, train it a few steps on random data, save a state_dict
and a full training checkpoint (model, Adam, StepLR, epoch, best_acc), then inspect both with
mfparse, which reads them without torch and without unpickling.

Usage: python examples/demo.py OUT_DIR
"""

from __future__ import annotations

import os
import subprocess
import sys


def build_and_save(out: str) -> tuple[str, str]:
    import torch
    import torch.nn as nn
    import torch.optim as optim

    from mfparse.bench.examples import CNN  # the tutorial's CNN (section 2.2)

    torch.manual_seed(0)
    model = CNN()
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 10, (16,))
    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        print(f"step {step}: loss {loss.item():.4f}")
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item() * 100

    os.makedirs(out, exist_ok=True)
    weights = os.path.join(out, "cnn_state_dict.pth")
    checkpoint = os.path.join(out, "checkpoint.pth")
    torch.save(model.state_dict(), weights)
    torch.save(
        {
            "epoch": 5,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "scheduler_state_dict": scheduler.state_dict(),
            "train_loss": loss.item(),
            "best_acc": acc,
        },
        checkpoint,
    )
    return weights, checkpoint


def main(argv: list[str]) -> int:
    out = argv[1] if len(argv) > 1 else "demo_out"
    weights, checkpoint = build_and_save(out)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for args in (["inspect", weights, "--stats"], ["inspect", checkpoint, "--tree"]):
        print(f"\n$ mfparse {' '.join(args)}", flush=True)
        rc = subprocess.call([sys.executable, "-m", "mfparse", *args], env=env)
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
