"""Example models for `mfparse bench`, its tests and benchmarks/gpu_check.sh.

The tutorial's models, as users write them, plus a ResNet-50-sized network built from plain
torch.nn (torchvision is not installable beside the pinned CPU torch; the layer names follow
torchvision's, so its state_dict loads through `--weights`).

Each factory returns an nn.Module in eval mode whose `example_input_shape` attribute tells
`mfparse bench` the input shape to use when `--input-shape` is not given:

    mfparse bench mfparse.bench.examples:cnn --batch 1,8
    mfparse bench mfparse.bench.examples:resnet50 --weights resnet50.safetensors

Importing this module imports torch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SimpleNet", "SimpleConvNet", "CNN", "ComplexNet", "ResNet50", "TinyLM",
           "simplenet", "simple_conv", "cnn", "complexnet", "resnet50", "tiny_lm"]


class SimpleNet(nn.Module):
    """The tutorial's SimpleNet (section 2.1): 10 -> 20 -> 5, ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 5)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = self.fc2(x)
        return x


class SimpleConvNet(nn.Module):
    """The tutorial's convolutional SimpleNet (section 5.1, the ONNX export example)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(64, 10, 1)

    def forward(self, x):
        x = self.conv1(x)
        x = self.relu(x)
        x = self.conv2(x)
        return x


class CNN(nn.Module):
    """The tutorial's CNN (section 2.2): two conv+BN+ReLU, then a Linear over 128x8x8
    (so the input is N x 3 x 8 x 8)."""

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
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


class ResidualBlock(nn.Module):
    """The tutorial's ResidualBlock (section 4.3). As written there it adds the input to a
    block with more channels, so only in == out works; ComplexNet below keeps that shape."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x):
        residual = self.shortcut(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + residual
        return torch.relu(out)


class ComplexNet(nn.Module):
    """The tutorial's ComplexNet (section 4.3). The tutorial's layer2 starts with
    ResidualBlock(64, 128), whose `out += residual` cannot add 64 channels to 128; a 1x1
    shortcut convolution makes it run (an extra `layer2.0.shortcut.*` weight)."""

    def __init__(self):
        super().__init__()
        self.conv_input = nn.Conv2d(3, 64, 7, padding=3)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))
        self.layer2 = nn.Sequential(ResidualBlock(64, 128), ResidualBlock(128, 128))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv_input(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (bottleneck blocks 3-4-6-3, 25.6 M parameters, ~4.1 GFLOPs at 224x224) from
    plain torch.nn, with torchvision's parameter names."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._layer(64, 3, 1)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * 4, num_classes)

    def _layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class TinyLM(nn.Module):
    """A small language-model head over token ids: embedding, a position-wise MLP with a
    residual, layer norm and the output projection to the vocabulary (N x seq -> N x seq x vocab)."""

    def __init__(self, vocab: int = 1000, dim: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))
        return self.head(x)


def _ready(model: nn.Module, shape, dtype: str = "float32") -> nn.Module:
    model.example_input_shape = tuple(shape)
    if dtype != "float32":
        model.example_input_dtype = dtype
    return model.eval()


def simplenet() -> nn.Module:
    """The tutorial's SimpleNet (Linear), input N x 10."""
    return _ready(SimpleNet(), (1, 10))


def simple_conv() -> nn.Module:
    """The tutorial's convolutional SimpleNet, input N x 3 x 224 x 224."""
    return _ready(SimpleConvNet(), (1, 3, 224, 224))


def cnn() -> nn.Module:
    """The tutorial's CNN, input N x 3 x 8 x 8."""
    return _ready(CNN(), (1, 3, 8, 8))


def complexnet() -> nn.Module:
    """The tutorial's ComplexNet, input N x 3 x 32 x 32."""
    return _ready(ComplexNet(), (1, 3, 32, 32))


def resnet50() -> nn.Module:
    """A ResNet-50-sized model, input N x 3 x 224 x 224."""
    return _ready(ResNet50(), (1, 3, 224, 224))


def tiny_lm() -> nn.Module:
    """TinyLM over token ids, input N x 16 int64 (--seq-len changes the 16)."""
    return _ready(TinyLM(), (1, 16), "int64")
