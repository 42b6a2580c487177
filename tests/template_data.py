"""A tiny learnable stand-in for MNIST that the pruning tests share: 10 classes of 28x28 uint8
images, each a fixed random template per class plus uniform noise."""
from __future__ import annotations

import numpy as np

from edgeprune.data import Dataset


def template_arrays(n_train: int, n_test: int, seed: int = 0, template_weight: float = 0.7,
                    noise: float = 80.0):
    """(x_train, y_train, x_test, y_test); a lower weight or more noise makes it harder."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, size=(10, 28, 28))

    def make(n):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] * template_weight + rng.uniform(0, noise, size=(n, 28, 28)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)
    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return xtr, ytr, xte, yte


def template_dataset(n_train: int, n_test: int, seed: int = 0, **kw) -> Dataset:
    return Dataset("tiny", *template_arrays(n_train, n_test, seed, **kw))
