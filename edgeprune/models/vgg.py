"""A small VGG-style CNN for 28x28 (MNIST-like) or 32x32 (CIFAR-like) inputs."""
from __future__ import annotations

import torch
import torch.nn as nn


class VGGSmall(nn.Module):
    """Three VGG blocks (conv3x3-BN-ReLU x2, maxpool) with widths (w, 2w, 4w), then GAP and FC.

    Global average pooling makes the classifier independent of the input size, so the same
    network serves 28x28x1 and 32x32x3.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 width: int = 16):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        layers = []
        c_in = in_channels
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            for j in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                           nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


def vgg_small(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
              width: int = 16) -> nn.Module:
    return VGGSmall(num_classes, in_channels, image_size, width)
