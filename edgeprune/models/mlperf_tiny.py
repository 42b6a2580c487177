"""The four MLPerf Tiny v1.x reference architectures, re-expressed in PyTorch.

Source of the architectures: mlcommons/tiny, ``benchmark/training/*/keras_model.py``
(image_classification ResNet-8, keyword_spotting DS-CNN, visual_wake_words MobileNetV1-0.25,
anomaly_detection FC autoencoder). Keras' ``padding='same'`` is reproduced with explicit
padding; where Keras pads asymmetrically (odd total padding) we use ``nn.ZeroPad2d`` so the
output sizes and MAC counts equal the reference.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _conv_bn_relu(c_in: int, c_out: int, k, stride=1, padding=0, groups: int = 1) -> list:
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups),
            nn.BatchNorm2d(c_out), nn.ReLU()]


class _ResidualStack(nn.Module):
    """Two 3x3 conv-BN layers with an identity or 1x1-conv shortcut (ResNet-v1 style)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        # The reference uses a 1x1 conv (no BN) on the shortcut whenever the shape changes.
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride)
                         if (stride != 1 or c_in != c_out) else nn.Identity())
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + self.shortcut(x))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification (CIFAR-10): 32x32x3, stages 16/32/64, ~78k params."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, 16, 3, padding=1))
        self.stack1 = _ResidualStack(16, 16, 1)
        self.stack2 = _ResidualStack(16, 32, 2)
        self.stack3 = _ResidualStack(32, 64, 2)
        self.pool = nn.AvgPool2d(8)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting: 49x10x1 MFCCs, conv 10x4/2 with 64 filters, 4 DS blocks."""

    input_shape = (1, 49, 10)

    def __init__(self, num_classes: int = 12, in_channels: int = 1, width: int = 64):
        super().__init__()
        # Keras 'same' for a 10x4 kernel at stride 2 on 49x10: output ceil(49/2) x ceil(10/2) =
        # 25x5, total padding (25-1)*2+10-49 = 9 rows (top 4, bottom 5) and 2 columns (1, 1).
        layers = [nn.ZeroPad2d((1, 1, 4, 5)), *_conv_bn_relu(in_channels, width, (10, 4), stride=2)]
        layers.append(nn.Dropout(0.2))
        for _ in range(4):
            layers += _conv_bn_relu(width, width, 3, padding=1, groups=width)   # depthwise
            layers += _conv_bn_relu(width, width, 1)                           # pointwise
        layers.append(nn.Dropout(0.4))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d((25, 5))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


class MobileNetV1(nn.Module):
    """MLPerf Tiny visual wake words: MobileNetV1 width 0.25 on 96x96x3, 2 classes (~211k params)."""

    input_shape = (3, 96, 96)
    # (output channels at width 1.0, stride) of the 13 depthwise-separable blocks (Howard et al. 2017).
    _BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
               (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, num_classes: int = 2, in_channels: int = 3, alpha: float = 0.25,
                 image_size: int = 96):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        c = int(32 * alpha)
        layers = _conv_bn_relu(in_channels, c, 3, stride=2, padding=1)
        for c_full, stride in self._BLOCKS:
            c_out = int(c_full * alpha)
            layers += _conv_bn_relu(c, c, 3, stride=stride, padding=1, groups=c)
            layers += _conv_bn_relu(c, c_out, 1)
            c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


class FCAutoencoder(nn.Module):
    """MLPerf Tiny anomaly detection: 640 -> 4x(128, BN, ReLU) -> 8 -> 4x(128, BN, ReLU) -> 640."""

    input_shape = (640,)

    def __init__(self, in_features: int = 640, hidden: int = 128, bottleneck: int = 8):
        super().__init__()
        layers = []
        widths = [in_features] + [hidden] * 4 + [bottleneck] + [hidden] * 4
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        layers.append(nn.Linear(hidden, in_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet8(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return ResNet8(num_classes, in_channels)


def dscnn(num_classes: int = 12, in_channels: int = 1) -> nn.Module:
    return DSCNN(num_classes, in_channels)


def mobilenetv1_025(num_classes: int = 2, in_channels: int = 3, image_size: int = 96) -> nn.Module:
    return MobileNetV1(num_classes, in_channels, 0.25, image_size)


def fc_autoencoder() -> nn.Module:
    return FCAutoencoder()
