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


class TinyBranchy(nn.Module):
    """Every op the zoo's FPGA path needs beyond a chain, at toy size: asymmetric pad, depthwise
    conv, residual add (identity shortcut, shared quantizer), concat, a windowed average pool
    and a global average pool into the classifier."""

    input_shape = (1, 12, 12)

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 1, 2, 0))
        self.conv1 = nn.Conv2d(1, 4, 3)                        # 14x14 -> 12x12
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)      # depthwise
        self.bn2 = nn.BatchNorm2d(4)
        self.relu2 = nn.ReLU()
        self.side = nn.Conv2d(4, 2, 1)
        self.pool = nn.AvgPool2d(2)                            # 12x12 -> 6x6
        self.conv2 = nn.Conv2d(6, 8, 3)                        # 6x6 -> 4x4
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(self.pad(x))))
        y = self.relu2(self.bn2(self.dw(x)) + x)               # residual add, then ReLU
        y = torch.cat([y, self.side(y)], dim=1)                # concat
        y = self.relu3(self.conv2(self.pool(y)))
        return self.fc(torch.flatten(self.gap(y), 1))


def tiny_branchy(seed: int = 0) -> TinyBranchy:
    torch.manual_seed(seed)
    m = TinyBranchy()
    with torch.no_grad():
        for bn in (m.bn1, m.bn2):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    return m.eval()
