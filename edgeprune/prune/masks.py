"""The mask core: weight, kernel, channel and N:M masks on a live model, behind one API.

Masks are applied with ``torch.nn.utils.parametrize`` (no copy of the model): every pruned tensor
(conv/linear weight and bias, BN affine) gets a `_MaskParametrization` whose float buffer ``mask``
multiplies the dense tensor on every forward.

* **Hard** masks zero the dense tensor too (`harden`) and the gradient of a pruned entry is zero,
  so a pruned weight stays pruned.
* **Soft** masks are recomputed by a method from the live dense weights; the forward uses
  ``w * m`` but the backward is the straight-through estimator (d(w*m)/dw := 1), so pruned weights
  keep receiving gradient updates and can grow back when the method recomputes the mask
  (Guo et al. 2016, "Dynamic Network Surgery", which updates the dense W with the gradient of the
  masked W).

Definition of a **channel-masked model** (the one `shrink_model` must reproduce exactly): for
every channel c that a channel group drops, the mask zeroes

* each ``out`` member: weight row ``[c]`` (dim 0) and ``bias[c]``;
* each ``dw`` member (depthwise conv): weight row ``[c]`` and ``bias[c]``;
* each ``bn`` member: ``weight[c]`` and ``bias[c]`` (running stats are left alone: with
  gamma = beta = 0 the BN output of the channel is exactly 0);
* each ``in`` member: weight columns (dim 1) ``[offset + c]``, or for a linear fed by a flatten
  the feature block ``[(offset + c) * repeat, (offset + c + 1) * repeat)``.

So a dropped channel carries exactly zero everywhere and nobody reads it; removing it (shrink)
changes no output.

Elementwise masks (granularities ``weight``, ``kernel`` and ``nm``) live on conv/linear weights
(and biases when a method prunes biases, as the statistical method does after Guo et al.); they
multiply with the channel-derived mask of the same tensor.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from ..errors import EdgepruneError
from ..graph import ChannelGroup, LayerGraph
from ..layergraph import OpKind

GRANULARITIES = ("weight", "kernel", "channel", "nm")


class PruneError(EdgepruneError, ValueError):
    """Bad pruning request: unknown granularity, method/criterion mismatch, bad budget..."""


@dataclass(frozen=True)
class Granularity:
    """kind: 'weight' | 'kernel' | 'channel' | 'nm'; n, m only for 'nm' (keep n of every m)."""

    kind: str
    n: int = 0
    m: int = 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.kind == "nm" else self.kind


def parse_granularity(spec: str) -> Granularity:
    """'weight', 'kernel', 'channel' (alias 'filter'), or 'N:M' / 'nm:N:M' (e.g. '2:4')."""
    s = str(spec).strip().lower()
    if s == "filter":
        s = "channel"
    if s in ("weight", "kernel", "channel"):
        return Granularity(s)
    m = re.fullmatch(r"(?:nm:)?(\d+):(\d+)", s)
    if m:
        n, mm = int(m.group(1)), int(m.group(2))
        if not 0 < n < mm:
            raise PruneError(f"granularity '{spec}': N:M needs 0 < N < M")
        return Granularity("nm", n, mm)
    raise PruneError(f"unknown granularity '{spec}'; use weight, kernel, channel or N:M (e.g. 2:4)")


class _MaskMul(torch.autograd.Function):
    """w * m, the product laid out exactly like w (strides included).

    Keeping w's strides matters for channels-last training (edgeprune.train): a conv weight with
    one input channel (LeNet-5's conv1) is channels-last only through the stride of its size-1
    dim, which a plain ``w * m`` drops; oneDNN then runs that conv and the pooling after it in
    NCHW, 1.5x slower per step (measured: benchmarks/train_throughput.py, soft_masks).
    Backward: ``grad * m`` (hard), or ``grad`` for every entry (soft: straight-through, so pruned
    weights keep learning)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, m: torch.Tensor, straight_through: bool) -> torch.Tensor:
        ctx.straight_through = straight_through
        if not straight_through:
            ctx.save_for_backward(m)
        out = torch.empty_like(w)              # preserve_format: w's exact strides
        return torch.mul(w, m, out=out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.straight_through:
            return grad, None, None
        (m,) = ctx.saved_tensors
        return grad * m, None, None


class _MaskParametrization(nn.Module):
    """forward(w) = w * mask. Soft: the backward passes the gradient to every entry (STE)."""

    def __init__(self, mask: torch.Tensor, soft: bool):
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.float32).clone())
        self.soft = soft

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        m = self.mask.to(w.dtype)
        # value w*m; soft: gradient 1 for every entry so pruned weights keep learning (one
        # autograd node: the w*m + (w - w.detach())*(1 - m) formulation cost 4x the ops)
        return _MaskMul.apply(w, m, bool(self.soft and w.requires_grad and torch.is_grad_enabled()))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


class PruningMasks:
    """All masks of one model. Built from the model and its layer graph (extracted *before*
    masking: a parametrized module no longer traces as a plain layer).

    State:
      ``weight_masks[node]``: bool tensor of the node's weight shape (elementwise decisions);
      ``bias_masks[node]``:   bool tensor of the bias shape (only biases a method prunes);
      ``channel_keep[gid]``:  bool vector of the group's size (True = channel kept).
    ``refresh()`` combines them into the parametrization buffers.
    """

    def __init__(self, model: nn.Module, graph: LayerGraph, soft: bool = False,
                 exclude: Iterable[str] = ()):
        self.model = _unwrap(model)
        self.graph = graph
        self.soft = soft
        modules = dict(self.model.named_modules())
        excluded = set(exclude)
        self.layers: Dict[str, nn.Module] = {}          # node name -> conv/linear module
        for n in graph.compute_nodes():
            if n.target in modules and n.target not in excluded:
                self.layers[n.name] = modules[n.target]
        self.node_module: Dict[str, nn.Module] = {n.name: modules[n.target] for n in graph.nodes
                                                  if n.target in modules}
        self.weight_masks: Dict[str, torch.Tensor] = {
            name: torch.ones_like(mod.weight, dtype=torch.bool) for name, mod in self.layers.items()}
        self.bias_masks: Dict[str, torch.Tensor] = {}
        self.channel_keep: Dict[int, torch.Tensor] = {
            g.id: torch.ones(g.size, dtype=torch.bool) for g in graph.prunable_groups()}
        self._attached: Dict[Tuple[int, str], _MaskParametrization] = {}
        self._attach()

    # ---------------------------------------------------------------- parametrizations
    def _targets(self) -> List[Tuple[nn.Module, str]]:
        """Every (module, param name) any mask can touch."""
        out: Dict[Tuple[int, str], Tuple[nn.Module, str]] = {}
        for mod in self.layers.values():
            for p in ("weight", "bias"):
                if getattr(mod, p, None) is not None:
                    out[(id(mod), p)] = (mod, p)
        for g in self.graph.prunable_groups():
            for m in g.members:
                mod = self.node_module.get(m.node)
                if mod is None:
                    continue
                for p in ("weight", "bias"):
                    if getattr(mod, p, None) is not None:
                        out[(id(mod), p)] = (mod, p)
        return list(out.values())

    def _attach(self) -> None:
        for mod, p in self._targets():
            pm = _MaskParametrization(torch.ones_like(getattr(mod, p)), self.soft)
            parametrize.register_parametrization(mod, p, pm)
            self._attached[(id(mod), p)] = pm

    def set_soft(self, soft: bool) -> None:
        self.soft = soft
        for pm in self._attached.values():
            pm.soft = soft

    def dense(self, mod: nn.Module, p: str = "weight") -> torch.Tensor:
        """The live dense tensor under the mask (the one the optimizer updates)."""
        if parametrize.is_parametrized(mod, p):
            return mod.parametrizations[p].original
        return getattr(mod, p)

    def dense_weight(self, node: str) -> torch.Tensor:
        return self.dense(self.layers[node], "weight")

    # ---------------------------------------------------------------- combining masks
    def channel_mask_for(self, mod: nn.Module, p: str) -> Optional[torch.Tensor]:
        """Bool mask of `mod.p` implied by the channel groups (None when no group drops a channel)."""
        shape = self.dense(mod, p).shape
        mask = None
        for g in self.graph.prunable_groups():
            keep = self.channel_keep[g.id]
            if bool(keep.all()):
                continue
            drop = (~keep).nonzero().flatten()
            for m in g.members:
                if self.node_module.get(m.node) is not mod:
                    continue
                if mask is None:
                    mask = torch.ones(shape, dtype=torch.bool)
                if m.role in ("out", "dw", "bn"):
                    mask[drop] = False
                elif m.role == "in" and p == "weight":
                    for c in drop.tolist():
                        lo = (m.offset + c) * m.repeat
                        mask[:, lo:lo + m.repeat] = False
        return mask

    def effective_mask(self, mod: nn.Module, p: str) -> torch.Tensor:
        shape = self.dense(mod, p).shape
        mask = torch.ones(shape, dtype=torch.bool)
        for name, layer in self.layers.items():
            if layer is mod:
                if p == "weight":
                    mask &= self.weight_masks[name]
                elif name in self.bias_masks:
                    mask &= self.bias_masks[name]
        cm = self.channel_mask_for(mod, p)
        if cm is not None:
            mask &= cm
        return mask

    @torch.no_grad()
    def refresh(self) -> None:
        """Push the current decisions into the parametrization buffers."""
        for mod, p in self._targets():
            self._attached[(id(mod), p)].mask.copy_(self.effective_mask(mod, p).float())

    @torch.no_grad()
    def harden(self) -> None:
        """Make the masks hard: zero the dense tensors under them and stop the STE gradient."""
        self.refresh()
        for mod, p in self._targets():
            self.dense(mod, p).mul_(self._attached[(id(mod), p)].mask)
        self.set_soft(False)

    # ---------------------------------------------------------------- statistics
    def layer_stats(self) -> Dict[str, Dict[str, float]]:
        """Per compute node: weights, nonzero weights, sparsity (of the *effective* weight)."""
        out = {}
        for node in self.graph.compute_nodes():
            mod = self.node_module.get(node.name)
            if mod is None:
                continue
            w = self.effective_mask(mod, "weight") if (id(mod), "weight") in self._attached \
                else torch.ones_like(mod.weight, dtype=torch.bool)
            nz = int(w.sum())
            out[node.name] = {"weights": w.numel(), "nonzero": nz,
                              "sparsity": 1.0 - nz / max(w.numel(), 1)}
        return out

    def nonzero_params(self) -> int:
        return count_nonzero_params(self.model)

    def effective_macs(self) -> int:
        return effective_macs(self.model, self.graph)

    def kept_sizes(self) -> Dict[int, int]:
        return {gid: int(k.sum()) for gid, k in self.channel_keep.items()}

    # ---------------------------------------------------------------- (de)serialisation
    def state_dict(self) -> dict:
        return {"weight_masks": {k: v.clone() for k, v in self.weight_masks.items()},
                "bias_masks": {k: v.clone() for k, v in self.bias_masks.items()},
                "channel_keep": {str(k): v.clone() for k, v in self.channel_keep.items()},
                "soft": self.soft}

    def load_state_dict(self, state: dict) -> None:
        self.weight_masks.update({k: v.bool() for k, v in state["weight_masks"].items()})
        self.bias_masks = {k: v.bool() for k, v in state["bias_masks"].items()}
        self.channel_keep.update({int(k): v.bool() for k, v in state["channel_keep"].items()})
        self.set_soft(bool(state.get("soft", self.soft)))
        self.refresh()

    def remove(self) -> nn.Module:
        """Bake the masks into the tensors and drop the parametrizations (model stays in place)."""
        self.refresh()
        for mod, p in self._targets():
            if parametrize.is_parametrized(mod, p):
                parametrize.remove_parametrizations(mod, p, leave_parametrized=True)
        self._attached.clear()
        return self.model


# -------------------------------------------------------------------------------------------
# Helpers usable on any model (masked or plain)

def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every mask baked in and no parametrizations left.

    (Not ``parametrize.remove_parametrizations`` on the copy: a deep copy shares the dynamically
    created ``Parametrized*`` class with the original, and removing the parametrization deletes
    the property from that shared class, which breaks the original model.)
    """
    m = copy.deepcopy(_unwrap(model))
    for mod in [x for x in m.modules() if parametrize.is_parametrized(x)]:
        values = []
        with torch.no_grad():
            for p in list(mod.parametrizations.keys()):
                orig = mod.parametrizations[p].original
                values.append((p, getattr(mod, p).detach().clone(), orig.requires_grad,
                               isinstance(orig, nn.Parameter)))
        del mod._modules["parametrizations"]
        mod.__class__ = mod.__class__.__bases__[0]
        for p, v, requires_grad, is_param in values:
            if is_param:
                mod.register_parameter(p, nn.Parameter(v, requires_grad=requires_grad))
            else:
                mod.register_buffer(p, v)
    return m


def baked_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The state_dict a plain (unmasked) model of the same architecture loads, masks baked in."""
    return {k: v.detach().clone() for k, v in plain_copy(model).state_dict().items()}


@torch.no_grad()
def count_nonzero_params(model: nn.Module) -> int:
    """Parameters a sparse deployment stores, masks applied.

    conv/linear weights and biases: the non-zero entries. BatchNorm: 2 per live channel (gamma or
    beta non-zero), so a dense model's zero-initialised betas still count as parameters.
    """
    total = 0
    for mod in _unwrap(model).modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if mod.weight is not None:
                live = (mod.weight != 0) | (mod.bias != 0)
                total += 2 * int(live.sum())
            continue
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            total += int((mod.weight != 0).sum())
            if mod.bias is not None:
                total += int((mod.bias != 0).sum())
    return total


@torch.no_grad()
def effective_macs(model: nn.Module, graph: LayerGraph) -> int:
    """MACs that touch a non-zero weight: per conv/linear, nnz(weight) x output positions.

    A zero weight (pruned entry, pruned kernel, dropped channel row or column) costs nothing on an
    engine that skips zeros; this is the MAC count such an engine runs. Dense MACs for layers
    whose weights are all non-zero equal `graph.total_macs` minus non-compute ops.
    """
    m = _unwrap(model)
    modules = dict(m.named_modules())
    total = 0
    for node in graph.compute_nodes():
        mod = modules.get(node.target)
        if mod is None:
            continue
        nnz = int((mod.weight != 0).sum())
        positions = 1
        for d in node.out_shape[1:]:
            positions *= d
        total += nnz * positions
    return total


@torch.no_grad()
def dead_channels(model: nn.Module, graph: LayerGraph, tol: float = 0.0) -> Dict[int, torch.Tensor]:
    """Per prunable group, the channels that can be removed without changing any output.

    A channel is dead when no consumer reads it (every ``in`` column/feature block is zero), or
    when it is identically zero (every ``out``/``dw`` row and bias zero and, with BN, gamma and
    beta zero). Unstructured pruning at high sparsity leaves many of these; they are turned into
    channel masks so the shrunk export drops them.
    """
    m = _unwrap(model)
    modules = dict(m.named_modules())
    out: Dict[int, torch.Tensor] = {}
    for g in graph.prunable_groups():
        unread = torch.ones(g.size, dtype=torch.bool)
        zero = torch.ones(g.size, dtype=torch.bool)
        has_in = False
        for mem in g.members:
            node = graph[mem.node]
            mod = modules.get(node.target)
            if mod is None:
                continue
            if mem.role == "in":
                has_in = True
                w = mod.weight
                cols = w.abs().reshape(w.shape[0], w.shape[1], -1).amax(dim=(0, 2))  # per column
                blocks = cols[mem.offset * mem.repeat:(mem.offset + g.size) * mem.repeat]
                unread &= blocks.reshape(g.size, mem.repeat).amax(1) <= tol
            elif mem.role in ("out", "dw", "bn"):
                w = mod.weight
                rz = w.abs().reshape(w.shape[0], -1).amax(1) <= tol
                if getattr(mod, "bias", None) is not None:
                    rz &= mod.bias.abs() <= tol
                zero &= rz
        # an all-zero channel stays zero only through ops with f(0) = 0
        zero_passes = not any(n.op in (OpKind.SIGMOID, OpKind.TANH, OpKind.SOFTMAX) for n in graph.nodes)
        dead = (zero if zero_passes else torch.zeros_like(zero)) | \
            (unread if has_in else torch.zeros_like(unread))
        if bool(dead.all()):  # a group keeps at least one channel: keep the strongest
            dead[0] = False
        out[g.id] = ~dead   # keep vector
    return out


def channel_slices(group: ChannelGroup) -> List[Tuple[str, str, int, int]]:
    """(node, role, offset, repeat) of the group's members, for scoring code."""
    return [(m.node, m.role, m.offset, m.repeat) for m in group.members]


__all__ = ["GRANULARITIES", "Granularity", "parse_granularity", "PruneError", "PruningMasks",
           "plain_copy", "baked_state_dict", "count_nonzero_params", "effective_macs",
           "dead_channels", "channel_slices"]
