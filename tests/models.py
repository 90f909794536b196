"""The tutorial's models (../shared/reference tutorial, sections 2.1, 2.2 and 4.3), for fixtures."""

import torch
import torch.nn as nn


class SimpleNet(nn.Module):
    """Section 2.1: two Linear layers."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 5)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class CNN(nn.Module):
    """Section 2.2: conv1/bn1/conv2/bn2/fc on 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(128)
        self.fc = nn.Linear(128 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.view(x.size(0), -1))


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if out.shape == x.shape:
            out = out + x
        return torch.relu(out)


class ComplexNet(nn.Module):
    """Section 4.3: nested Sequential of residual blocks."""

    def __init__(self):
        super().__init__()
        self.conv_input = nn.Conv2d(3, 64, 7, padding=3)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))
        self.layer2 = nn.Sequential(ResidualBlock(64, 128), ResidualBlock(128, 128))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.conv_input(x)))
        return self.fc(self.avgpool(x).flatten(1))


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
