"""Quantization-aware fine-tuning of a `QuantNet` with edgeprune's training loop.

Pruned weights stay zero: `KeepZerosHook` records which weights are zero when QAT starts (the
pruning masks, already baked into the shrunk model's weights) and, after every optimizer step,
re-zeroes them; it also zeroes their gradients before the step so Adam's moment estimates do not
accumulate on them. Symmetric quantizers with zero point 0 map 0.0 to integer 0, so a weight that
is zero in float is zero in every export.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..data import Dataset
from ..train import TrainConfig, Trainer, TrainHook, TrainResult, dataset_tensors, evaluate
from .brevitas_model import QuantNet, calibrate, fold_sign_batchnorms, zero_masks


class KeepZerosHook(TrainHook):
    """Keep the weights that are zero at the start of training at exactly zero."""

    def __init__(self, qnet: QuantNet):
        self.qnet = qnet
        self.masks: Dict[int, torch.Tensor] = zero_masks(qnet)

    def _weights(self):
        for idx, mask in self.masks.items():
            yield self.qnet.core[idx].weight, mask

    def after_backward(self, trainer) -> None:
        for w, mask in self._weights():
            if w.grad is not None:
                w.grad.mul_(mask)

    @torch.no_grad()
    def after_step(self, trainer) -> None:
        for w, mask in self._weights():
            w.mul_(mask)


def qat(qnet: QuantNet, ds: Dataset, *, epochs: int = 2, lr: float = 1e-3, seed: int = 0,
        batch_size: int = 128, max_steps_per_epoch: Optional[int] = None,
        progress: bool = True) -> TrainResult:
    """Calibrate activation scales on training data, then fine-tune `qnet` in place.

    epochs=0 only calibrates (and evaluates). 1-bit-weight layers with a 1-bit (sign)
    activation train behind a BatchNorm that is folded into their thresholds at the end
    (`fold_sign_batchnorms`). Returns the Trainer's result (test accuracy of the
    quantized model).
    """
    torch.manual_seed(seed)
    x_tr, _, x_te, y_te = dataset_tensors(ds, qnet.input_shape)
    calibrate(qnet, x_tr)
    hook = KeepZerosHook(qnet)
    if epochs <= 0:
        result = TrainResult()
    else:
        cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                          max_steps_per_epoch=max_steps_per_epoch, progress=progress)
        result = Trainer(qnet, ds, cfg, hooks=[hook]).fit()
    qnet.eval()
    # BNN layers trained behind a BatchNorm: fold it into their integer thresholds, and report
    # the accuracy of the folded network (the one that is exported)
    fold_sign_batchnorms(qnet)
    result.test_accuracy = evaluate(qnet, x_te, y_te)
    return result
