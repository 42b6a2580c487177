"""Dataset loading: IDX (raw or .gz) and .npz directories, no network.

``load_dataset(spec)`` takes a name ('fashion-mnist', 'mnist-10k') or a directory path and returns
a `Dataset` with uint8 images (N, H, W) or (N, C, H, W) and int64 labels, split into train and test.

- fashion-mnist: the Debian package ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist),
  60k train + 10k test.
- mnist-10k: the official MNIST test set only (the training set is not on this machine);
  split 8,000 train / 2,000 test (first 8k train, last 2k test), as the benchmarks use it.
- PATH: a directory holding IDX files (``*-images-idx3-ubyte[.gz]`` + ``*-labels-idx1-ubyte[.gz]``,
  train and/or t10k) or .npz files with arrays ``x_train, y_train, x_test, y_test`` (or ``x, y``).
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import EdgepruneError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The official MNIST test set lives beside the checkout (../shared/data/mnist-t10k) on the
# developers' machines; users pass their own path or set EDGEPRUNE_MNIST10K.
MNIST10K_CANDIDATES = (
    os.environ.get("EDGEPRUNE_MNIST10K", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"),
    str(Path.cwd().parent / "shared" / "data" / "mnist-t10k"),
)
MNIST10K_TRAIN = 8000

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(EdgepruneError, ValueError):
    """A dataset file is missing or corrupt; the message names the file."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1

    @property
    def image_shape(self) -> Tuple[int, ...]:
        """(C, H, W) of one sample as the models see it."""
        s = self.x_test.shape[1:]
        return (1,) + tuple(s) if len(s) == 2 else tuple(s)

    def subset(self, n_train: Optional[int] = None, n_test: Optional[int] = None) -> "Dataset":
        return Dataset(self.name, self.x_train[:n_train], self.y_train[:n_train],
                       self.x_test[:n_test], self.y_test[:n_test])

    def validate(self, source: str) -> "Dataset":
        """Check shapes, dtypes, values and labels; a DataError names `source` and the problem."""
        for split, x, y in (("train", self.x_train, self.y_train),
                            ("test", self.x_test, self.y_test)):
            if len(x) == 0:
                raise DataError(f"{source}: the {split} split is empty")
            if x.ndim not in (3, 4):
                raise DataError(f"{source}: {split} images must be (N, H, W) or (N, C, H, W), "
                                f"got shape {x.shape}")
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
                raise DataError(f"{source}: {split} images have dtype {x.dtype}; expected uint8 "
                                f"or float")
            if np.issubdtype(x.dtype, np.floating):
                bad = int(np.count_nonzero(~np.isfinite(x)))
                if bad:
                    raise DataError(f"{source}: {bad} {split} pixel values are NaN or Inf")
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"{source}: {split} labels must be one per image, got shape "
                                f"{y.shape} for {len(x)} images")
            if len(y) and (y.min() < 0):
                raise DataError(f"{source}: {split} labels must be >= 0, found {int(y.min())}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{source}: train images {self.x_train.shape[1:]} and test images "
                            f"{self.x_test.shape[1:]} differ in shape")
        return self

    def check_fits(self, input_shape, n_outputs: Optional[int] = None, what: str = "the model"):
        """Raise a DataError unless the samples fit `input_shape` (same number of values) and
        every label is below `n_outputs`."""
        per = int(np.prod(self.image_shape))
        want = int(np.prod(tuple(input_shape)))
        if per != want:
            raise DataError(f"dataset '{self.name}' has samples of shape {self.image_shape}, "
                            f"{what} takes {tuple(input_shape)}")
        if n_outputs is not None and self.num_classes > n_outputs:
            raise DataError(f"dataset '{self.name}' has labels up to {self.num_classes - 1}, but "
                            f"{what} has {n_outputs} outputs")


def read_idx(path: os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip). Raises DataError naming the file when it is bad."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 0
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(f"{path}: size mismatch: header says {dims} ({count * dtype.itemsize} "
                        f"bytes of data), file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Optional[Path]:
    for suffix in ("", ".gz"):
        for sep in ("-", "."):
            p = directory / (stem.replace("-", sep) + suffix)
            if p.is_file():
                return p
    return None


def _load_idx_pair(directory: Path, prefix: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    img = _find(directory, f"{prefix}-images-idx3-ubyte")
    lab = _find(directory, f"{prefix}-labels-idx1-ubyte")
    if img is None and lab is None:
        return None
    if img is None or lab is None:
        missing = f"{prefix}-images-idx3-ubyte" if img is None else f"{prefix}-labels-idx1-ubyte"
        raise DataError(f"{directory / missing}[.gz]: file not found (its pair is present)")
    x, y = read_idx(img), read_idx(lab)
    if len(x) != len(y):
        raise DataError(f"{img}: {len(x)} images but {lab.name} has {len(y)} labels")
    return x, y.astype(np.int64)


def _labels(y: np.ndarray, source) -> np.ndarray:
    """Labels as int64; float labels must hold whole numbers."""
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(f"{source}: labels must be whole class numbers, found non-integer "
                            f"or NaN values")
        return y.astype(np.int64)
    raise DataError(f"{source}: labels have dtype {y.dtype}; expected integers")


def _load_npz_dir(directory: Path) -> Optional[Dataset]:
    files = sorted(directory.glob("*.npz"))
    if not files:
        return None
    arrays = {}
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                arrays.update({k: z[k] for k in z.files})
        except Exception as e:  # noqa: BLE001 - zipfile/ValueError/OSError all mean corrupt
            raise DataError(f"{f}: cannot read npz ({e})") from e
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        return Dataset(directory.name, arrays["x_train"], _labels(arrays["y_train"], files[0]),
                       arrays["x_test"], _labels(arrays["y_test"], files[0]))
    if {"x", "y"} <= arrays.keys():
        return _split(directory.name, arrays["x"], _labels(arrays["y"], files[0]))
    raise DataError(f"{files[0]}: npz needs arrays x_train/y_train/x_test/y_test or x/y, "
                    f"found {sorted(arrays)}")


def _split(name: str, x: np.ndarray, y: np.ndarray, n_train: Optional[int] = None) -> Dataset:
    n_train = n_train if n_train is not None else int(round(0.8 * len(x)))
    return Dataset(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def load_directory(directory: os.PathLike, name: Optional[str] = None) -> Dataset:
    """Load an IDX or npz directory. train+t10k IDX pairs give the official split; a lone t10k
    pair is split 8k/2k (first 8,000 train, rest test)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: dataset directory not found")
    name = name or directory.name
    train = _load_idx_pair(directory, "train")
    test = _load_idx_pair(directory, "t10k")
    if train is not None and test is not None:
        return Dataset(name, train[0], train[1], test[0], test[1]).validate(str(directory))
    lone = train or test
    if lone is not None:
        return _split(name, lone[0], lone[1],
                      min(MNIST10K_TRAIN, int(0.8 * len(lone[0])))).validate(str(directory))
    ds = _load_npz_dir(directory)
    if ds is None:
        raise DataError(f"{directory}: no IDX (*-images-idx3-ubyte[.gz]) or .npz files found")
    ds.name = name
    return ds.validate(str(directory))


def mnist10k_dir() -> Optional[Path]:
    for c in MNIST10K_CANDIDATES:
        if c and Path(c).is_dir():
            return Path(c)
    return None


SYNTHETIC_PREFIX = "synthetic:"


def synthetic_dataset(shape, classes: int = 10, n_train: int = 2048, n_test: int = 1024,
                      seed: int = 0) -> Dataset:
    """A labelled SYNTHETIC data set of uint8 samples shaped `shape` ((C, H, W) or (F,)), for
    models whose real data (CIFAR-10, speech MFCCs, wake-word images, machine sounds) is not on
    this machine. Each class is a fixed random template; a sample is its class template blended
    with uniform noise, so the task is learnable but says nothing about accuracy on real data.
    Deterministic in `seed`."""
    shape = tuple(int(d) for d in shape)
    if not shape or any(d < 1 for d in shape) or len(shape) not in (1, 3):
        raise DataError(f"synthetic data: shape must be C,H,W or F with positive sizes, got {shape}")
    if classes < 2:
        raise DataError(f"synthetic data: need at least 2 classes, got {classes}")
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(classes,) + shape).astype(np.float32)
    store = shape if len(shape) == 3 else (1,) + shape   # Dataset holds (N, H, W) or (N, C, H, W)

    def draw(n):
        y = rng.integers(0, classes, size=n).astype(np.int64)
        noise = rng.integers(0, 256, size=(n,) + shape).astype(np.float32)
        x = np.clip(np.rint(0.5 * templates[y] + 0.5 * noise), 0, 255).astype(np.uint8)
        return x.reshape((n,) + store), y
    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    name = f"{SYNTHETIC_PREFIX}{'x'.join(map(str, shape))}:{classes}"
    return Dataset(name, xtr, ytr, xte, yte).validate(name)


def parse_synthetic(spec: str) -> Dataset:
    """'synthetic:CxHxW[:classes]' (or 'synthetic:F[:classes]') -> synthetic_dataset."""
    parts = spec[len(SYNTHETIC_PREFIX):].split(":")
    try:
        shape = tuple(int(v) for v in parts[0].split("x"))
        classes = int(parts[1]) if len(parts) > 1 else 10
        if len(parts) > 2:
            raise ValueError
    except ValueError:
        raise DataError(f"'{spec}': synthetic data is written synthetic:CxHxW[:classes], e.g. "
                        f"synthetic:3x32x32:10") from None
    return synthetic_dataset(shape, classes)


def load_dataset(spec: str) -> Dataset:
    """'fashion-mnist', 'mnist-10k', 'synthetic:CxHxW[:classes]' or a directory path."""
    if spec.startswith(SYNTHETIC_PREFIX):
        return parse_synthetic(spec)
    if spec == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise DataError(f"{FASHION_MNIST_DIR}: not found; install the Debian package "
                            f"dataset-fashion-mnist (make setup does) or pass a directory")
        return load_directory(FASHION_MNIST_DIR, "fashion-mnist")
    if spec == "mnist-10k":
        d = mnist10k_dir()
        if d is None:
            raise DataError("mnist-10k: directory not found; pass the path of the MNIST t10k IDX "
                            "files or set EDGEPRUNE_MNIST10K")
        return load_directory(d, "mnist-10k")
    return load_directory(spec)


def to_tensors(x: np.ndarray, y: np.ndarray, mean: float = 0.0, std: float = 1.0):
    """uint8 images -> float32 NCHW tensors scaled to [0, 1] then standardised."""
    import torch
    xf = torch.from_numpy(np.ascontiguousarray(x)).float()
    if x.dtype == np.uint8:
        xf = xf / 255.0
    if xf.dim() == 3:
        xf = xf.unsqueeze(1)
    xf = (xf - mean) / std
    return xf, torch.from_numpy(np.ascontiguousarray(y)).long()
