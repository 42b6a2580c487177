"""Model zoo: the architectures the pruning literature and MLPerf Tiny use.

Every builder returns a plain ``nn.Module`` in NCHW layout, so torch.fx can trace it,
plus a module attribute ``input_shape`` (C, H, W) or (F,) without the batch dimension.
`ZOO` maps the CLI name to the builder; `load_model` (in ``edgeprune.models.loading``)
resolves user input (zoo name, state_dict, .pt2 program) to a module.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch.nn as nn

from .lenet import lenet5, lenet300100
from .vgg import vgg_small
from .mlperf_tiny import resnet8, dscnn, mobilenetv1_025, fc_autoencoder

ZOO: Dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "lenet300100": lenet300100,
    "vgg_small": vgg_small,
    "resnet8": resnet8,
    "dscnn": dscnn,
    "mobilenetv1_025": mobilenetv1_025,
    "fc_autoencoder": fc_autoencoder,
}


def build(name: str, **kwargs) -> nn.Module:
    """Build a zoo model by name; raises ValueError naming the known models."""
    if name not in ZOO:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(sorted(ZOO))}")
    return ZOO[name](**kwargs)


__all__ = ["ZOO", "build", "lenet5", "lenet300100", "vgg_small", "resnet8", "dscnn",
           "mobilenetv1_025", "fc_autoencoder"]
