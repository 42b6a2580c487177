"""LeNet variants used in the pruning literature (Han et al. 2015; the statistical-pruning papers)."""
from __future__ import annotations

import torch
import torch.nn as nn


class LeNet5(nn.Module):
    """Caffe's LeNet-5 ("lenet_train_test.prototxt"): 431,080 params, 2,293,000 MACs on 28x28x1.

    conv 20@5x5 -> maxpool 2 -> conv 50@5x5 -> maxpool 2 -> fc 500 -> ReLU -> fc 10.
    Caffe's version has no ReLU after the convolutions; we keep that so the parameter and
    MAC counts, and the published compression figures, refer to the same network.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.flatten(x)
        return self.fc2(self.relu(self.fc1(x)))


class LeNet300100(nn.Module):
    """The 784-300-100-10 MLP of LeCun et al. 1998 / Han et al. 2015 (266,610 params)."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(784, 300)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(300, 100)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        return self.fc3(x)


def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return LeNet5(num_classes=num_classes, in_channels=in_channels)


def lenet300100(num_classes: int = 10) -> nn.Module:
    return LeNet300100(num_classes=num_classes)
