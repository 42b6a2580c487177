"""The one training loop every method uses: pruning, cluster fine-tuning and QAT plug in as hooks.

Inputs are uint8 images scaled to [0, 1] (no mean/std standardisation), so int8 exporters can
map input pixels to int8 with a fixed scale of 1/255 and zero point -128.

Hooks (`TrainHook`) see the model at fixed points of every step; a pruning method recomputes
masks in ``after_step``, a clustering method ties gradients in ``after_backward``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .data import Dataset, to_tensors


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainHook:
    """Override any of these; all receive the Trainer, which exposes model, step, epoch, optimizer."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def before_step(self, trainer: "Trainer") -> None: ...
    def after_backward(self, trainer: "Trainer") -> None: ...
    def after_step(self, trainer: "Trainer") -> None: ...
    def on_epoch_end(self, trainer: "Trainer", metrics: Dict[str, float]) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...


@dataclass
class TrainConfig:
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    optimizer: str = "adam"          # adam | sgd
    weight_decay: float = 0.0
    max_steps_per_epoch: Optional[int] = None   # for tests
    progress: bool = True


@dataclass
class TrainResult:
    history: List[Dict[str, float]] = field(default_factory=list)
    test_accuracy: float = 0.0


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(len(x), 1)


def dataset_tensors(ds: Dataset, input_shape: Optional[Sequence[int]] = None):
    """(x_train, y_train, x_test, y_test) float tensors shaped for a model's input_shape."""
    xtr, ytr = to_tensors(ds.x_train, ds.y_train)
    xte, yte = to_tensors(ds.x_test, ds.y_test)
    if input_shape is not None and tuple(xtr.shape[1:]) != tuple(input_shape):
        xtr = xtr.reshape((len(xtr),) + tuple(input_shape))
        xte = xte.reshape((len(xte),) + tuple(input_shape))
    return xtr, ytr, xte, yte


class Trainer:
    def __init__(self, model: nn.Module, ds: Dataset, config: TrainConfig,
                 hooks: Sequence[TrainHook] = (), loss_fn: Optional[Callable] = None):
        self.model = model
        self.config = config
        self.hooks = list(hooks)
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        shape = getattr(model, "input_shape", None)
        self.x_train, self.y_train, self.x_test, self.y_test = dataset_tensors(ds, shape)
        self.step = 0
        self.epoch = 0
        self.optimizer = self._make_optimizer()
        self.last_loss = float("nan")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    def evaluate(self) -> float:
        return evaluate(self.model, self.x_test, self.y_test)

    def fit(self) -> TrainResult:
        c = self.config
        seed_everything(c.seed)
        result = TrainResult()
        for h in self.hooks:
            h.on_train_begin(self)
        gen = torch.Generator().manual_seed(c.seed)
        n = len(self.x_train)
        for epoch in range(c.epochs):
            self.epoch = epoch
            self.model.train()
            perm = torch.randperm(n, generator=gen)
            steps = (n + c.batch_size - 1) // c.batch_size
            if c.max_steps_per_epoch:
                steps = min(steps, c.max_steps_per_epoch)
            total = 0.0
            for s in range(steps):
                idx = perm[s * c.batch_size:(s + 1) * c.batch_size]
                for h in self.hooks:
                    h.before_step(self)
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.loss_fn(self.model(self.x_train[idx]), self.y_train[idx])
                loss.backward()
                for h in self.hooks:
                    h.after_backward(self)
                self.optimizer.step()
                self.step += 1
                for h in self.hooks:
                    h.after_step(self)
                total += loss.item()
                self.last_loss = loss.item()
            metrics = {"epoch": epoch, "loss": total / max(steps, 1), "test_acc": self.evaluate()}
            for h in self.hooks:
                h.on_epoch_end(self, metrics)
            result.history.append(metrics)
            if c.progress:
                print(f"epoch {epoch + 1}/{c.epochs}  loss {metrics['loss']:.4f}  "
                      f"test acc {100 * metrics['test_acc']:.2f}%", flush=True)
        for h in self.hooks:
            h.on_train_end(self)
        result.test_accuracy = self.evaluate()
        return result


def train(model: nn.Module, ds: Dataset, config: Optional[TrainConfig] = None,
          hooks: Sequence[TrainHook] = ()) -> TrainResult:
    return Trainer(model, ds, config or TrainConfig(), hooks).fit()
