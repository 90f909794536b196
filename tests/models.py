"""The tutorial's models (../shared/reference tutorial, sections 2.1, 2.2 and 4.3), for fixtures."""

import torch
import torch.nn as nn

# the tutorial's models live in the package (mfparse bench uses them too)
from mfparse.bench.examples import CNN, ComplexNet, SimpleNet  # noqa: F401


class Tied(nn.Module):
    """A head that shares its weight with the embedding (GPT-2's lm_head)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight


def training_checkpoint(model=None, steps=2):
    """The tutorial's full checkpoint: model, Adam, StepLR, epoch, losses, best_acc."""
    torch.manual_seed(0)
    model = model or CNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    x = torch.randn(4, 10) if isinstance(model, SimpleNet) else torch.randn(4, 3, 8, 8)
    y = torch.randint(0, 5, (4,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    return {
        "epoch": 50,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "scheduler_state_dict": sched.state_dict(),
        "train_loss": 0.123,
        "val_loss": 0.456,
        "best_acc": 95.67,
    }
