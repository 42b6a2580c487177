"""Tiny models shared by tests/test_fpga_*.py (this module holds no tests)."""
import torch
import torch.nn as nn


class TinyCNN(nn.Module):
    """conv-BN-ReLU-pool, conv-pool (no ReLU, like LeNet-5), FC: every FPGA-path conversion rule."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool1 = nn.MaxPool2d(2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        x = self.relu1(self.pool1(self.bn1(self.conv1(x))))   # ReLU after the pool: moved up
        x = self.pool2(self.conv2(x))
        return self.fc(self.flatten(x))


def tiny_pruned(seed: int = 0) -> TinyCNN:
    """TinyCNN with non-trivial BN statistics and half of the FC weights pruned (zeroed)."""
    torch.manual_seed(seed)
    m = TinyCNN()
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-0.1, 0.1)
        m.bn1.running_var.uniform_(0.5, 2.0)
        m.bn1.weight.uniform_(0.5, 1.5)
        w = m.fc.weight
        w[w.abs() <= w.abs().flatten().kthvalue(w.numel() // 2).values] = 0
    return m.eval()


class Residual(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        return self.fc((self.conv(x) + x).flatten(1))
