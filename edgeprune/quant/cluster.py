"""Cluster quantization (weight sharing) and Deep-Compression bit accounting.

Han, Mao & Dally, "Deep Compression" (ICLR 2016), §3: the weights of each conv/linear layer are
clustered with 1-D k-means; every weight then stores only a b-bit index into a table of 2^b
shared float32 values (the codebook). Fine-tuning trains the shared values: the gradient of a
centroid is the sum of the gradients of the weights in its cluster (§3.1).

Conventions (see docs/clustering.md):

- Only conv/linear *weights* are clustered; biases stay float32 (int32 at int8 export), BN is
  left alone (it is folded at export).
- Sparsity is preserved. In a layer that has exact zeros (pruned weights), code 0 is reserved for
  the value 0.0: it is one of the 2^b codes (as in Deep Compression, whose filler entries and
  dense index arrays need a code for zero) and it never moves. k-means then runs on the non-zero
  weights only, with 2^b - 1 centroids. A layer without zeros uses all 2^b codes for k-means.
- Codebooks are per layer, or per output channel (``per_channel=True``), always 2^b entries
  (unused slots hold 0.0) so the table has a fixed size a decoder can rely on.
- Initialisation (Deep Compression §3.2): ``linear`` spaces the centroids evenly over
  [min, max] of the non-zero weights; ``density`` puts them at evenly spaced quantiles of the
  non-zero weights (the CDF's y-axis is spaced linearly); ``kmeans++`` is scikit-learn's
  k-means++ seeded with ``seed``. Linear and density pass explicit initial centroids to
  scikit-learn's KMeans; every run uses ``n_init=1`` and ``random_state=seed``, so the same seed
  gives the same codebooks.

Public API::

    state = cluster_model(model, bits=4, init="linear", per_channel=False, seed=0)
    apply(state, model)                                  # write tied weights into the model
    Trainer(model, ds, cfg, hooks=[ClusterFinetuneHook(state)]).fit()   # centroid fine-tuning
    report = bits.bit_accounting(model, cluster_state=state)  # Deep-Compression storage (bits.py)
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, Mapping, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import EdgepruneError
from ..train import TrainHook

INITS = ("linear", "density", "kmeans++")
MAX_BITS = 16
# Deep Compression §2 encodes the relative index in 8 bits for conv and 5 bits for fc layers;
# we search 1..16 bits per layer and keep the cheapest, and report these for reference.
PAPER_RELATIVE_INDEX_BITS = {"conv": 8, "linear": 5}
FLOAT_BITS = 32          # dense reference and codebook entries: float32
BIAS_BITS = 32           # float32 now, int32 after int8 export: 32 bits either way

# Layer types whose weights we cluster. The layer graph's compute ops (conv2d, dwconv2d, linear)
# are these modules; Conv1d is accepted too so the API works on models outside the zoo.
_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


class ClusterError(EdgepruneError, ValueError):
    """Bad clustering input: unknown layer name, bits out of range, unknown init, untied weights."""


# --------------------------------------------------------------------------------------------
# State

@dataclass
class LayerCodebook:
    """One layer's weight sharing: ``weight == codebook[channel_or_0, indices]`` exactly."""

    name: str                    # qualified module name (= the layer graph node's target)
    bits: int
    per_channel: bool
    zero_code: bool              # code 0 is the fixed value 0.0 (the layer had pruned weights)
    codebook: torch.Tensor       # float32 [n_codebooks, 2**bits]; n_codebooks = out channels or 1
    indices: torch.Tensor        # int64, the weight's shape, values in [0, 2**bits)

    @property
    def n_codebooks(self) -> int:
        return int(self.codebook.shape[0])

    def _indices_2d(self) -> torch.Tensor:
        return self.indices.reshape(self.n_codebooks, -1)

    def weight(self) -> torch.Tensor:
        """The tied weight tensor the codebook and indices describe."""
        return self.codebook.gather(1, self._indices_2d()).reshape(self.indices.shape)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "per_channel": self.per_channel, "zero_code": self.zero_code,
                "shape": list(self.indices.shape),
                "codebook": [[float(v) for v in row] for row in self.codebook.tolist()]}


@dataclass
class ClusterState:
    """Codebooks and indices per clustered layer, keyed by qualified module name."""

    layers: Dict[str, LayerCodebook] = field(default_factory=dict)
    init: str = "linear"
    seed: int = 0

    def to_dict(self) -> dict:
        """JSON form (codebooks.json). Indices are not stored: `state_from_codebooks` recovers
        them from the tied weights by exact lookup."""
        return {"init": self.init, "seed": self.seed,
                "layers": {n: lc.to_dict() for n, lc in self.layers.items()}}


def weight_layers(model: nn.Module) -> Dict[str, nn.Module]:
    """Qualified name -> conv/linear module, in definition order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)}


def _plain_weight(module: nn.Module, name: str) -> torch.Tensor:
    from torch.nn.utils import parametrize
    if parametrize.is_parametrized(module, "weight") or hasattr(module, "weight_orig"):
        raise ClusterError(f"layer '{name}': weight has a pruning mask or parametrization attached; "
                           f"bake it in first (torch.nn.utils.prune.remove / "
                           f"parametrize.remove_parametrizations)")
    return module.weight


def resolve_bits(model: nn.Module, bits: Union[int, Mapping[str, int]]) -> Dict[str, int]:
    """bits (int for every conv/linear layer, or {layer: bits} for the named ones) -> full map."""
    layers = weight_layers(model)
    if not layers:
        raise ClusterError("model has no conv/linear layers to cluster")
    if isinstance(bits, Mapping):
        unknown = [n for n in bits if n not in layers]
        if unknown:
            raise ClusterError(f"unknown layer '{unknown[0]}' in bits per layer; "
                               f"layers: {', '.join(layers)}")
        out = {n: bits[n] for n in layers if n in bits}
    else:
        out = {n: bits for n in layers}
    for n, b in out.items():
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= MAX_BITS:
            raise ClusterError(f"layer '{n}': bits must be an integer in 1..{MAX_BITS}, got {b!r}")
    return {n: int(b) for n, b in out.items()}


# --------------------------------------------------------------------------------------------
# k-means

def _initial_centroids(values: np.ndarray, k: int, init: str) -> np.ndarray:
    if init == "linear":
        return np.linspace(values.min(), values.max(), k)
    # density: linearly spaced points on the CDF's y-axis, mapped back to weight values. The
    # half-step offset keeps the outermost centroids inside the data instead of at its extremes.
    return np.quantile(values, (np.arange(k) + 0.5) / k)


def _kmeans_1d(values: np.ndarray, k: int, init: str, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D float values into at most k centroids -> (sorted centroids, labels)."""
    uniq = np.unique(values)
    if len(uniq) <= k:
        # As many slots as distinct values: exact, no k-means needed (sklearn would also refuse
        # n_samples < n_clusters).
        return uniq, np.searchsorted(uniq, values)
    from sklearn.cluster import KMeans
    x = values.astype(np.float64).reshape(-1, 1)
    if init == "kmeans++":
        km = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed)
    else:
        km = KMeans(n_clusters=k, init=_initial_centroids(x.ravel(), k, init).reshape(-1, 1),
                    n_init=1, random_state=seed)
    with warnings.catch_warnings():
        # Duplicate density-init centroids (many equal weights) leave an empty cluster that
        # sklearn relocates; its ConvergenceWarning is not actionable for the user.
        warnings.simplefilter("ignore")
        km.fit(x)
    centroids = km.cluster_centers_.ravel()
    order = np.argsort(centroids, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return centroids[order], rank[km.labels_]


def _cluster_rows(w2d: np.ndarray, bits: int, zero_code: bool, init: str,
                  seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cluster each row of w2d (one row = one codebook) -> (codebook [rows, 2^b], codes)."""
    size = 1 << bits
    k = size - 1 if zero_code else size
    offset = 1 if zero_code else 0
    codebook = np.zeros((w2d.shape[0], size), dtype=np.float32)
    codes = np.zeros(w2d.shape, dtype=np.int64)
    for r, row in enumerate(w2d):
        nz = row != 0 if zero_code else np.ones(row.shape, dtype=bool)
        if not nz.any() or k == 0:
            continue                                   # whole row pruned: all code 0
        centroids, labels = _kmeans_1d(row[nz], k, init, seed)
        centroids = centroids.astype(np.float32)
        # a non-zero cluster must not round to 0.0, or its weights would look pruned
        centroids[centroids == 0] = np.finfo(np.float32).tiny
        codebook[r, offset:offset + len(centroids)] = centroids
        codes[r, nz] = labels + offset
    return codebook, codes


def cluster_model(model: nn.Module, bits: Union[int, Mapping[str, int]], init: str = "linear",
                  per_channel: bool = False, seed: int = 0) -> ClusterState:
    """k-means weight sharing for every conv/linear layer (or the layers named in ``bits``).

    Does not modify the model: call ``apply(state, model)`` to write the tied weights.
    Exact zeros get the fixed code 0 (see module docstring); non-zero weights get 2^b - 1
    centroids in such layers, 2^b in layers without zeros.
    """
    if init not in INITS:
        raise ClusterError(f"unknown init '{init}'; choose one of {', '.join(INITS)}")
    per_layer_bits = resolve_bits(model, bits)
    layers = weight_layers(model)
    state = ClusterState(init=init, seed=int(seed))
    for name, b in per_layer_bits.items():
        w = _plain_weight(layers[name], name).detach().cpu().float()
        w2d = w.reshape(w.shape[0] if per_channel else 1, -1).numpy()
        zero_code = bool((w2d == 0).any())
        if zero_code and b == 1:
            warnings.warn(f"layer '{name}': 1 bit with pruned weights leaves a single shared "
                          f"non-zero value (code 0 is the fixed zero)")
        codebook, codes = _cluster_rows(w2d, b, zero_code, init, seed)
        state.layers[name] = LayerCodebook(
            name=name, bits=b, per_channel=per_channel, zero_code=zero_code,
            codebook=torch.from_numpy(codebook), indices=torch.from_numpy(codes).reshape(w.shape))
    return state


def apply(state: ClusterState, model: nn.Module) -> nn.Module:
    """Write each clustered layer's tied weights (codebook[indices]) into the model, in place."""
    layers = weight_layers(model)
    for name, lc in state.layers.items():
        if name not in layers:
            raise ClusterError(f"cluster state names layer '{name}', which the model lacks")
        w = _plain_weight(layers[name], name)
        if tuple(w.shape) != tuple(lc.indices.shape):
            raise ClusterError(f"layer '{name}': weight shape {tuple(w.shape)} differs from the "
                               f"cluster state's {tuple(lc.indices.shape)}")
        with torch.no_grad():
            w.copy_(lc.weight().to(dtype=w.dtype, device=w.device))
    return model


def state_from_codebooks(model: nn.Module, codebooks: Mapping) -> ClusterState:
    """Rebuild a ClusterState from codebooks.json's dict and a model holding the tied weights:
    every weight must equal one entry of its codebook exactly."""
    layers = weight_layers(model)
    state = ClusterState(init=codebooks.get("init", "linear"), seed=int(codebooks.get("seed", 0)))
    for name, d in codebooks.get("layers", {}).items():
        if name not in layers:
            raise ClusterError(f"codebooks name layer '{name}', which the model lacks")
        w = _plain_weight(layers[name], name).detach().cpu().float()
        cb = torch.tensor(d["codebook"], dtype=torch.float32)
        w2d = w.reshape(cb.shape[0], -1)
        idx = torch.full(w2d.shape, -1, dtype=torch.long)
        for code in reversed(range(cb.shape[1])):            # lowest matching code wins (0 = zero)
            idx[w2d == cb[:, code:code + 1]] = code
        if bool((idx < 0).any()):
            raise ClusterError(f"layer '{name}': weights are not tied to its codebook")
        state.layers[name] = LayerCodebook(name, int(d["bits"]), bool(d["per_channel"]),
                                           bool(d["zero_code"]), cb,
                                           idx.long().reshape(w.shape))
    return state


# --------------------------------------------------------------------------------------------
# Centroid fine-tuning

def _per_cluster_sum(lc: LayerCodebook, values: torch.Tensor) -> torch.Tensor:
    idx = lc._indices_2d().to(values.device)
    out = torch.zeros((lc.n_codebooks, 1 << lc.bits), dtype=values.dtype, device=values.device)
    return out.scatter_add_(1, idx, values.reshape(lc.n_codebooks, -1))


class ClusterFinetuneHook(TrainHook):
    """Trains the shared values instead of free weights (Deep Compression §3.1).

    ``after_backward`` replaces each clustered weight's gradient by the sum of the gradients of
    all weights in its cluster (zero for the fixed zero code). Every weight of a cluster then
    gets the same gradient at every step, so any element-wise optimizer (SGD with or without
    momentum, Adam, weight decay) moves all of them by the same amount from the same optimizer
    state: the cluster's weights stay equal and the update is the centroid update,
    ``c -= lr * sum(grad)`` for plain SGD. ``after_step`` reads the new centroids back into the
    codebooks and re-ties the weights; ``max_untie`` records how far any weight had drifted from
    its cluster before re-tying (0.0 when the optimizer is element-wise, as it should be).
    """

    def __init__(self, state: ClusterState):
        self.state = state
        self.max_untie = 0.0
        self._weights: Dict[str, torch.Tensor] = {}

    # TrainHook interface
    def on_train_begin(self, trainer) -> None:
        self.bind(trainer.model)

    def after_backward(self, trainer) -> None:
        self.tie_gradients()

    def after_step(self, trainer) -> None:
        self.retie()

    def on_train_end(self, trainer) -> None:
        self.retie()

    def on_model_replaced(self, trainer, old_model) -> None:
        self.bind(trainer.model)          # a shrunk model no longer fits the indices: apply says so

    def state_dict(self) -> dict:
        # indices never change during fine-tuning; the trained centroids are the state
        return {"codebooks": {n: lc.codebook.clone() for n, lc in self.state.layers.items()}}

    def load_state_dict(self, state) -> None:
        for name, cb in state.get("codebooks", {}).items():
            if name not in self.state.layers:
                raise ClusterError(f"checkpoint has a codebook for layer '{name}', which this "
                                   f"cluster state lacks")
            self.state.layers[name].codebook = cb.clone().float()
        with torch.no_grad():
            for name, lc in self.state.layers.items():
                w = self._weights[name]
                w.copy_(lc.weight().to(w.device, w.dtype))

    # The work, usable without a Trainer
    def bind(self, model: nn.Module) -> None:
        apply(self.state, model)
        layers = weight_layers(model)
        self._weights = {n: layers[n].weight for n in self.state.layers}

    @torch.no_grad()
    def tie_gradients(self) -> None:
        for name, lc in self.state.layers.items():
            w = self._weights[name]
            if w.grad is None:
                continue
            sums = _per_cluster_sum(lc, w.grad)
            if lc.zero_code:
                sums[:, 0] = 0
            w.grad.copy_(sums.gather(1, lc._indices_2d().to(w.device)).reshape(w.shape))

    @torch.no_grad()
    def retie(self) -> None:
        for name, lc in self.state.layers.items():
            w = self._weights[name]
            counts = _per_cluster_sum(lc, torch.ones_like(w, dtype=torch.float64))
            means = _per_cluster_sum(lc, w.detach().double()) / counts.clamp(min=1)
            new = torch.where(counts > 0, means, lc.codebook.double().to(w.device)).float()
            if lc.zero_code:
                new[:, 0] = 0.0
            lc.codebook = new.cpu()
            tied = lc.weight().to(w.device, w.dtype)
            self.max_untie = max(self.max_untie, float((w - tied).abs().max()))
            w.copy_(tied)
