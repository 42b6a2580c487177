"""Where the sparsity goes (orientation) and when pruning may stop (budgets).

Units and families
    A *unit* is what one decision removes: a weight, a kernel (a K x K slice; a linear layer's
    kernels are its single weights), or a channel of a coupled channel group. A *family* is a set
    of units whose scores are comparable: the units of one layer, or the channels of one group.

Comparable importance
    Raw scores are not comparable across layers (conv1 weights are larger than fc1 weights), so
    each family's scores are normalised the way LAMP does for magnitudes (Lee et al. 2021,
    "Layer-adaptive sparsity for the magnitude-based pruning"): with the family's scores sorted
    ascending, unit i gets ``s_i / sum_{j >= i} s_j``. The normalisation keeps the order inside a
    family, gives the most important unit of every family the score 1, and needs no
    hyperparameter. It is applied to every criterion (magnitude, Taylor, activation, random).

Orientation = the price of a unit
    Units are removed in ascending order of ``normalised importance / saving``, where the saving
    is what removing the unit buys:

    * ``memory``:   parameters removed (1 per weight, K*K per kernel, every tensor entry of a
                    channel). Importance per parameter: the sparsity goes where the parameters
                    are, i.e. into the low-intensity layers (LeNet-5: fc1).
    * ``workload``: MACs removed (a weight of a conv with H x W output positions saves H*W MACs,
                    a linear weight saves 1). This is the memory price divided by the
                    computational intensity (MACs per weight), so high-intensity layers
                    (LeNet-5: conv2, conv1) are pruned first.
    * ``target``:   the cost model's marginal saving on the target
                    (``edgeprune.cost.marginal_costs``: cycles, flash, RAM, LUT, DSP...) per weight
                    or per channel, each metric divided by its scale (the distance to its budget
                    when one is set, else its dense total), summed over the metrics.
    * ``uniform``:  every family loses the same fraction of its units (the granularity study
                    uses it to compare criteria at matched per-layer sparsity).

    The *amount* of pruning is the fraction of the orientation's resource removed, counted over
    the pruned layers: memory/uniform -> parameters, workload -> MACs, target -> normalised cost.
    The most important unit of every family (and channel of every group) is never removed.

Budgets: ``edgeprune.prune.budgets``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..graph import ChannelGroup, LayerGraph
from .criteria import Criterion
from .masks import Granularity, PruneError, PruningMasks

ORIENTATIONS = ("memory", "workload", "target", "uniform")


# ------------------------------------------------------------------------------------------
# Units

@dataclass
class Family:
    key: str                        # node name, or "group<id>"
    node: Optional[str]             # the layer (weight/kernel/nm granularity)
    group: Optional[ChannelGroup]   # the channel group (channel granularity)
    shape: Tuple[int, ...]          # unit grid shape (weight shape, (O, I) for kernels, (C,))
    scores: torch.Tensor            # flat, raw importance
    params: torch.Tensor            # flat, parameters per unit
    macs: torch.Tensor              # flat, MACs per unit
    saving: Optional[torch.Tensor] = None   # flat, normalised target saving per unit
    kernel: int = 1                 # K*K of a kernel unit

    @property
    def n(self) -> int:
        return self.scores.numel()


def _positions(graph: LayerGraph, node: str) -> int:
    p = 1
    for d in graph[node].out_shape[1:]:
        p *= d
    return p


def layer_families(masks: PruningMasks, criterion: Criterion, gran: Granularity) -> List[Family]:
    """One family per prunable layer (weight / kernel granularity)."""
    out = []
    for node, mod in masks.layers.items():
        w = masks.dense(mod, "weight")
        s = criterion.weight_scores(node).detach().float()
        pos = _positions(masks.graph, node)
        if gran.kind == "kernel" and w.dim() == 4:
            k = w.shape[2] * w.shape[3]
            ks = criterion.kernel_reduce(s)
            out.append(Family(node, node, None, tuple(ks.shape), ks.flatten(),
                              torch.full((ks.numel(),), float(k)),
                              torch.full((ks.numel(),), float(k * pos)), kernel=k))
        else:
            out.append(Family(node, node, None, tuple(w.shape), s.flatten(),
                              torch.ones(w.numel()), torch.full((w.numel(),), float(pos))))
    return out


def channel_cost(graph: LayerGraph, group: ChannelGroup) -> Tuple[float, float]:
    """(parameters, MACs) one channel of `group` owns across all its members."""
    params = macs = 0.0
    for m in group.members:
        node = graph[m.node]
        if m.role == "bn":
            params += 2
            continue
        ws = node.weight_shape
        if not ws:
            continue
        pos = _positions(graph, m.node)
        if m.role in ("out", "dw"):
            row = 1
            for d in ws[1:]:
                row *= d
            params += row + (1 if node.has_bias else 0)
            macs += row * pos
        elif m.role == "in":
            col = ws[0] * m.repeat
            for d in ws[2:]:
                col *= d
            params += col
            macs += col * pos
    return params, macs


def group_families(masks: PruningMasks, criterion: Criterion) -> List[Family]:
    out = []
    for g in masks.graph.prunable_groups():
        if g.size < 2:
            continue
        p, m = channel_cost(masks.graph, g)
        s = criterion.channel_scores(g).detach().float().flatten()
        out.append(Family(f"group{g.id}", None, g, (g.size,), s, torch.full((g.size,), p),
                          torch.full((g.size,), m)))
    return out


def build_families(masks: PruningMasks, criterion: Criterion, gran: Granularity) -> List[Family]:
    if gran.kind == "channel":
        return group_families(masks, criterion)
    return layer_families(masks, criterion, gran)


# ------------------------------------------------------------------------------------------
# Normalised importance and selection

def _ascending(v: torch.Tensor) -> torch.Tensor:
    """Stable ascending argsort of a non-negative vector; zeros (pruned units under hard masks,
    most of a layer late in a run) are placed first without sorting them."""
    zero = v == 0
    idx_zero = zero.nonzero().flatten()
    idx_nz = (~zero).nonzero().flatten()
    return torch.cat([idx_zero, idx_nz[torch.argsort(v[idx_nz], stable=True)]])


def lamp_normalise(scores: torch.Tensor) -> torch.Tensor:
    """s_i / sum_{j >= i} s_j over the ascending order (LAMP); 0 where the tail sum is 0."""
    s = scores.double().clamp_min(0)
    order = _ascending(s)
    sorted_s = s[order]
    tail = torch.flip(torch.cumsum(torch.flip(sorted_s, [0]), 0), [0])
    norm_sorted = torch.where(tail > 0, sorted_s / tail.clamp_min(1e-300), torch.zeros_like(tail))
    out = torch.empty_like(norm_sorted)
    out[order] = norm_sorted
    return out


def resource(fam: Family, orientation: str) -> torch.Tensor:
    if orientation == "workload":
        return fam.macs
    if orientation == "target":
        if fam.saving is None:
            raise PruneError("orientation 'target' needs the target's marginal costs")
        return fam.saving
    return fam.params


def protected(fam: Family) -> torch.Tensor:
    """The unit(s) never removed: the most important unit of the family."""
    p = torch.zeros(fam.n, dtype=torch.bool)
    if fam.n:
        p[int(torch.argmax(fam.scores))] = True
    return p


def select(families: Sequence[Family], orientation: str, amount: float,
           removed_fn: Optional[Callable[[Dict[str, torch.Tensor]], float]] = None,
           comparable: bool = False) -> Dict[str, torch.Tensor]:
    """Decide which units to remove: family key -> bool 'pruned' vector (flat).

    Removes units in ascending normalised-importance / saving order until `amount` of the
    orientation's resource (over all families) is removed. `removed_fn(selection)`, when given,
    measures the fraction really removed (channels: a weight between two pruned channels is
    counted once, on the shrunk architecture); the prefix is then found by bisection on it.
    `comparable`: the scores are already on one scale across families (estimated loss
    increases), so they are used as they are, without the LAMP normalisation.
    """
    if orientation not in ORIENTATIONS:
        raise PruneError(f"unknown orientation '{orientation}'; known: {', '.join(ORIENTATIONS)}")
    amount = float(min(max(amount, 0.0), 1.0))
    out = {f.key: torch.zeros(f.n, dtype=torch.bool) for f in families}
    if amount <= 0 or not families:
        return out
    if orientation == "uniform":
        for f in families:
            k = min(int(math.floor(amount * f.n + 1e-9)), f.n - 1)
            if k > 0:
                order = torch.argsort(f.scores.double(), stable=True)
                prot = protected(f)
                order = order[~prot[order]]
                out[f.key][order[:k]] = True
        return out
    prios, res, prot = [], [], []
    for i, f in enumerate(families):
        r = resource(f, orientation).double()
        norm = f.scores.double().clamp_min(0) if comparable else lamp_normalise(f.scores)
        prios.append(norm / r.clamp_min(1e-30))
        res.append(r)
        prot.append(protected(f))
    prio = torch.cat(prios)
    r = torch.cat(res)
    keep_always = torch.cat(prot)
    goal = amount * float(r.sum())
    order = _ascending(prio)
    order = order[~keep_always[order]]

    offsets = [0]
    for f in families:
        offsets.append(offsets[-1] + f.n)

    def take(n_take: int) -> Dict[str, torch.Tensor]:
        flag = torch.zeros(offsets[-1], dtype=torch.bool)
        flag[order[:n_take]] = True
        return {f.key: flag[offsets[i]:offsets[i + 1]].clone() for i, f in enumerate(families)}

    if removed_fn is None:
        cum = torch.cumsum(r[order], 0)
        n_take = int(torch.searchsorted(cum, torch.tensor(goal - 1e-9, dtype=cum.dtype)).item()) + 1
        return take(min(n_take, order.numel()))
    lo, hi = 0, order.numel()          # smallest prefix whose real removed fraction >= amount
    if removed_fn(take(hi)) < amount:
        return take(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if removed_fn(take(mid)) >= amount - 1e-9:
            hi = mid
        else:
            lo = mid + 1
    return take(lo)


def channel_removed_fn(graph: LayerGraph, families: Sequence[Family], orientation: str
                       ) -> Callable[[Dict[str, torch.Tensor]], float]:
    """Fraction of the model's parameters (memory) or MACs (workload) a channel selection removes,
    measured on the graph with the kept channel counts."""
    dense_params = graph.total_params
    dense_macs = sum(n.macs for n in graph.compute_nodes())

    def fn(sel: Dict[str, torch.Tensor]) -> float:
        sizes = {f.group.id: max(f.n - int(sel[f.key].sum()), 1) for f in families
                 if f.group is not None and bool(sel[f.key].any())}
        g = graph.with_group_sizes(sizes) if sizes else graph
        if orientation == "workload":
            return 1.0 - sum(n.macs for n in g.compute_nodes()) / max(dense_macs, 1)
        return 1.0 - g.total_params / max(dense_params, 1)
    return fn


def nm_masks(masks: PruningMasks, criterion: Criterion, n: int, m: int) -> Dict[str, torch.Tensor]:
    """N:M masks: in every run of M consecutive weights along the reduction axis (input channels
    innermost, the OHWI order TFLite/CMSIS-NN and sparse tensor cores use) keep the N most
    important. Layers whose reduction length is not a multiple of M are left dense."""
    out = {}
    for node, mod in masks.layers.items():
        w = masks.dense(mod, "weight")
        s = criterion.weight_scores(node).detach().float()
        o = w.shape[0]
        s_ohwi = s.permute(0, 2, 3, 1) if s.dim() == 4 else s
        red = s_ohwi.reshape(o, -1)
        if red.shape[1] % m:
            out[node] = torch.ones_like(w, dtype=torch.bool)
            continue
        blocks = red.reshape(o, -1, m)
        top = torch.topk(blocks, n, dim=-1, largest=True, sorted=False).indices
        keep = torch.zeros_like(blocks, dtype=torch.bool).scatter_(-1, top, True)
        keep = keep.reshape(s_ohwi.shape)
        out[node] = keep.permute(0, 3, 1, 2).contiguous() if s.dim() == 4 else keep
    return out


def apply_selection(masks: PruningMasks, families: Sequence[Family], pruned: Dict[str, torch.Tensor],
                    gran: Granularity) -> None:
    """Write a selection into the masks (and refresh the parametrizations)."""
    for f in families:
        p = pruned[f.key]
        if f.group is not None:
            masks.channel_keep[f.group.id] = ~p.reshape(f.shape)
        elif gran.kind == "kernel" and len(f.shape) == 2 and masks.dense_weight(f.node).dim() == 4:
            w = masks.dense_weight(f.node)
            keep = (~p.reshape(f.shape))[:, :, None, None].expand_as(w)
            masks.weight_masks[f.node] = keep.clone()
        else:
            masks.weight_masks[f.node] = ~p.reshape(f.shape)
    masks.refresh()


# ------------------------------------------------------------------------------------------
# Target marginal costs

def attach_target_savings(families: Sequence[Family], graph: LayerGraph, marginal: Dict[str, dict],
                          scales: Dict[str, float]) -> None:
    """Fill `Family.saving` from ``marginal_costs`` output, each metric divided by its scale."""
    def norm_sum(d: Dict[str, float]) -> float:
        return sum(float(v) / scales[k] for k, v in d.items() if k in scales and scales[k] > 0)
    for f in families:
        if f.group is not None:
            per = 0.0
            for m in f.group.members:
                if m.role in ("out", "dw") and m.node in marginal:
                    per += norm_sum(marginal[m.node].get("per_channel", {}))
            f.saving = torch.full((f.n,), max(per, 0.0))
        else:
            per_w = norm_sum(marginal.get(f.node, {}).get("per_weight", {}))
            f.saving = torch.full((f.n,), max(per_w, 0.0) * f.kernel)
    # a unit the cost model says saves nothing still gets a tiny price so it is removed last
    floor = min((float(f.saving.max()) for f in families if f.n and float(f.saving.max()) > 0),
                default=1.0) * 1e-6
    for f in families:
        f.saving = f.saving.clamp_min(floor)


__all__ = ["ORIENTATIONS", "Family", "build_families", "layer_families", "group_families",
           "channel_cost", "lamp_normalise", "select", "nm_masks", "apply_selection",
           "attach_target_savings"]
