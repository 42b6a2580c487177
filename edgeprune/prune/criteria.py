"""Importance criteria: how much each weight, kernel or channel matters.

Every criterion gives elementwise scores for a layer's weight (`weight_scores`) and per-channel
scores for a channel group (`channel_scores`); higher means more important. The granularity code
(orientation.py) aggregates elementwise scores into kernels. Scores are read from the *live dense*
weights, so under soft masks a pruned weight that grows back scores again.

* ``l1`` / ``l2``: magnitude |w| / w^2; a kernel is scored by its L1 / L2 norm, a channel by the
  mean |w| / root-mean-square w of its producer rows (``out`` and ``dw`` members).
* ``taylor``: first-order Taylor expansion of the loss change when a weight is removed,
  |w * dL/dw| accumulated over the steps since the last decision (Molchanov et al. 2017/2019).
  For a channel, (sum over its producer rows and BN affine of w * dL/dw)^2 per step, accumulated
  (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning").
* ``density`` / ``apoz`` / ``mean_act``: activation statistics from forward hooks on the ReLU
  that follows the channel (Hu et al. 2016 "Network Trimming": APoZ = average percentage of zeros;
  density = 1 - APoZ; mean post-ReLU activation). Channel granularity only.
* ``random``: uniform random scores from the run's seed (the baseline).
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Optional, Tuple

import torch

from ..graph import ChannelGroup, LayerGraph
from ..layergraph import OpKind
from .masks import PruneError, PruningMasks

CRITERIA = ("l1", "l2", "taylor", "density", "apoz", "mean_act", "random")
ACTIVATION_CRITERIA = ("density", "apoz", "mean_act")


def _dist_sum_(t: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) across DDP ranks so every rank takes the same decision."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t


class Criterion:
    name = "base"
    needs_grad = False
    needs_activations = False

    def __init__(self, masks: PruningMasks, seed: int = 0):
        self.masks = masks
        self.seed = seed

    # hooks into the training step
    def after_backward(self) -> None: ...
    def observed(self) -> bool:
        """False while a data-driven criterion has seen no batch since the last reset."""
        return True
    def reset(self) -> None: ...
    def close(self) -> None: ...

    def weight_scores(self, node: str) -> torch.Tensor:
        raise NotImplementedError

    def channel_scores(self, group: ChannelGroup) -> torch.Tensor:
        """Mean of the elementwise scores over the group's producer rows (out and dw members)."""
        total = torch.zeros(group.size)
        count = 0
        for m in group.members:
            if m.role not in ("out", "dw") or m.node not in self.masks.layers:
                continue
            s = self.weight_scores(m.node)
            total += s.reshape(s.shape[0], -1).sum(1)
            count += s[0].numel()
        return total / max(count, 1)

    def kernel_reduce(self, s: torch.Tensor) -> torch.Tensor:
        """Aggregate elementwise scores of a conv weight (O, I, kh, kw) to (O, I)."""
        return s.reshape(s.shape[0], s.shape[1], -1).sum(-1) if s.dim() == 4 else s

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class Magnitude(Criterion):
    def __init__(self, masks: PruningMasks, p: int = 1, seed: int = 0):
        super().__init__(masks, seed)
        self.p = p
        self.name = f"l{p}"

    @torch.no_grad()
    def weight_scores(self, node: str) -> torch.Tensor:
        w = self.masks.dense_weight(node).detach()
        return w.abs() if self.p == 1 else w * w

    def kernel_reduce(self, s: torch.Tensor) -> torch.Tensor:
        r = super().kernel_reduce(s)
        return r if self.p == 1 else r.sqrt()

    def channel_scores(self, group: ChannelGroup) -> torch.Tensor:
        r = super().channel_scores(group)
        return r if self.p == 1 else r.sqrt()


class Taylor(Criterion):
    name = "taylor"
    needs_grad = True

    def __init__(self, masks: PruningMasks, seed: int = 0):
        super().__init__(masks, seed)
        self.acc: Dict[str, torch.Tensor] = {}
        self.group_acc: Dict[int, torch.Tensor] = {}
        self.steps = 0

    @torch.no_grad()
    def after_backward(self) -> None:
        for node, mod in self.masks.layers.items():
            w = self.masks.dense(mod, "weight")
            if w.grad is None:
                continue
            s = (w * w.grad).abs()
            self.acc[node] = self.acc[node] + s if node in self.acc else s.clone()
        for g in self.masks.graph.prunable_groups():
            contrib = torch.zeros(g.size)
            for m in g.members:
                if m.role not in ("out", "dw", "bn"):
                    continue
                mod = self.masks.node_module.get(m.node)
                if mod is None:
                    continue
                for p in ("weight", "bias"):
                    if getattr(mod, p, None) is None:
                        continue
                    t = self.masks.dense(mod, p)
                    if t.grad is not None:
                        contrib += (t * t.grad).reshape(t.shape[0], -1).sum(1)
            sq = contrib * contrib
            self.group_acc[g.id] = self.group_acc[g.id] + sq if g.id in self.group_acc else sq
        self.steps += 1

    def observed(self) -> bool:
        return self.steps > 0

    def reset(self) -> None:
        self.acc.clear()
        self.group_acc.clear()
        self.steps = 0

    def weight_scores(self, node: str) -> torch.Tensor:
        if node not in self.acc:
            return torch.zeros_like(self.masks.dense_weight(node)).detach()
        return _dist_sum_(self.acc[node].clone())

    def channel_scores(self, group: ChannelGroup) -> torch.Tensor:
        if group.id not in self.group_acc:
            return torch.zeros(group.size)
        return _dist_sum_(self.group_acc[group.id].clone())

    def state_dict(self) -> dict:
        return {"acc": dict(self.acc), "group_acc": {str(k): v for k, v in self.group_acc.items()},
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.acc = dict(state.get("acc", {}))
        self.group_acc = {int(k): v for k, v in state.get("group_acc", {}).items()}
        self.steps = int(state.get("steps", 0))


def activation_sites(graph: LayerGraph, group: ChannelGroup) -> List[Tuple[str, int, bool]]:
    """Where to observe a group's activations: (module name, channel offset, is_relu).

    Every ReLU/ReLU6 *module* whose output carries the group's channels; when there is none (a
    functional ReLU, or Caffe's LeNet-5 whose convolutions have no ReLU) the producer's output
    (BN if any, else the conv/linear) observed as is.
    """
    sites = []
    for n in graph.nodes:
        if n.op in (OpKind.RELU, OpKind.RELU6) and n.target is not None:
            off = 0
            for gid, length in getattr(n, "channels", []):
                if gid == group.id:
                    sites.append((n.target, off, True))
                off += length
    if sites:
        return sites
    for role in ("bn", "out"):
        for m in group.members:
            if m.role == role:
                t = graph[m.node].target
                if t is not None:
                    return [(t, 0, False)]
    return []


class Activation(Criterion):
    """density / apoz / mean_act from forward hooks (training batches, all ranks summed)."""

    needs_activations = True

    def __init__(self, masks: PruningMasks, kind: str = "density", seed: int = 0):
        super().__init__(masks, seed)
        self.name = kind
        self.kind = kind
        self.nonzero: Dict[int, torch.Tensor] = {}
        self.total: Dict[int, torch.Tensor] = {}
        self.sum: Dict[int, torch.Tensor] = {}
        self.handles = []
        self.relu_site: Dict[int, bool] = {}
        modules = dict(masks.model.named_modules())
        for g in masks.graph.prunable_groups():
            for target, off, is_relu in activation_sites(masks.graph, g):
                mod = modules.get(target)
                if mod is not None:
                    self.relu_site[g.id] = is_relu
                    self.handles.append(mod.register_forward_hook(
                        self._make_hook(g.id, g.size, off, is_relu)))

    def _make_hook(self, gid: int, size: int, off: int, is_relu: bool):
        def hook(module, inputs, output):
            if not module.training:
                return
            with torch.no_grad():
                a = output.detach()[:, off:off + size]
                dims = [d for d in range(a.dim()) if d != 1]
                nz = (a > 0).float().sum(dims) if a.dim() > 1 else (a > 0).float()
                count = torch.full((size,), float(a.numel() // max(a.shape[1], 1)))
                self.nonzero[gid] = self.nonzero.get(gid, 0) + nz
                self.total[gid] = self.total.get(gid, 0) + count
                # without a ReLU the "activation" is the magnitude of the pre-activation
                mag = a.clamp_min(0) if is_relu else a.abs()
                self.sum[gid] = self.sum.get(gid, 0) + mag.sum(dims)
        return hook

    def observed(self) -> bool:
        return bool(self.total)

    def reset(self) -> None:
        self.nonzero.clear()
        self.total.clear()
        self.sum.clear()

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def density(self, group: ChannelGroup) -> Optional[torch.Tensor]:
        """Per-channel fraction of non-zero post-ReLU activations; None where no ReLU follows
        (density of a pre-activation means nothing) or nothing was observed yet."""
        if group.id not in self.total or not self.relu_site.get(group.id, False):
            return None
        nz = _dist_sum_(self.nonzero[group.id].clone())
        tot = _dist_sum_(self.total[group.id].clone())
        return nz / tot.clamp_min(1)

    def channel_scores(self, group: ChannelGroup) -> torch.Tensor:
        if group.id not in self.total:
            return torch.ones(group.size)
        if self.kind == "mean_act":
            tot = _dist_sum_(self.total[group.id].clone())
            return _dist_sum_(self.sum[group.id].clone()) / tot.clamp_min(1)
        d = self.density(group)      # density and 1 - APoZ rank identically
        if d is None:                # no ReLU after this group: fall back to mean |activation|
            tot = _dist_sum_(self.total[group.id].clone())
            return _dist_sum_(self.sum[group.id].clone()) / tot.clamp_min(1)
        return d

    def weight_scores(self, node: str) -> torch.Tensor:
        raise PruneError(f"criterion '{self.kind}' scores channels; use --granularity channel")

    def state_dict(self) -> dict:
        return {"nonzero": {str(k): v for k, v in self.nonzero.items()},
                "total": {str(k): v for k, v in self.total.items()},
                "sum": {str(k): v for k, v in self.sum.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.nonzero = {int(k): v for k, v in state.get("nonzero", {}).items()}
        self.total = {int(k): v for k, v in state.get("total", {}).items()}
        self.sum = {int(k): v for k, v in state.get("sum", {}).items()}


class Random(Criterion):
    """Fixed uniform scores drawn once from the seed (same seed -> same masks)."""

    name = "random"

    def __init__(self, masks: PruningMasks, seed: int = 0):
        super().__init__(masks, seed)
        self.scores: Dict[str, torch.Tensor] = {}
        self.group_scores: Dict[int, torch.Tensor] = {}
        for node, mod in masks.layers.items():
            self.scores[node] = torch.rand(masks.dense(mod).shape, generator=self._gen(node))
        for g in masks.graph.prunable_groups():
            self.group_scores[g.id] = torch.rand(g.size, generator=self._gen(f"group{g.id}"))

    def _gen(self, key: str) -> torch.Generator:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:8], "little")
        return torch.Generator().manual_seed(h & 0x7FFFFFFFFFFFFFFF)

    def weight_scores(self, node: str) -> torch.Tensor:
        return self.scores[node]

    def channel_scores(self, group: ChannelGroup) -> torch.Tensor:
        return self.group_scores[group.id]


def make_criterion(name: str, masks: PruningMasks, seed: int = 0) -> Criterion:
    name = name.lower()
    if name in ("l1", "magnitude"):
        return Magnitude(masks, 1, seed)
    if name == "l2":
        return Magnitude(masks, 2, seed)
    if name == "taylor":
        return Taylor(masks, seed)
    if name in ACTIVATION_CRITERIA:
        return Activation(masks, name, seed)
    if name == "random":
        return Random(masks, seed)
    raise PruneError(f"unknown criterion '{name}'; known: {', '.join(CRITERIA)}")


__all__ = ["CRITERIA", "ACTIVATION_CRITERIA", "Criterion", "Magnitude", "Taylor", "Activation",
           "Random", "make_criterion", "activation_sites"]
