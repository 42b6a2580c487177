"""Model surgery beside the layer graph: physical channel removal (channel keep-masks -> a smaller
dense ``nn.Module``), the channel-masked twin, and plain copies with masks baked in.

Both functions read the coupled channel groups of the layer graph (``edgeprune.graph``).
``keep`` maps a ``ChannelGroup.id`` to a bool tensor over that group's channels (True = keep);
groups not listed stay whole.

The *channel-masked model* (``mask_channels_inplace``) is the reference the shrunk model must
reproduce. For every removed channel of a group it zeroes, on every member of the group:

- ``out``: the producer's weight row (dim 0) and bias entry,
- ``bn``:  BatchNorm gamma and beta (in eval mode BN then emits exactly 0 for the channel,
           ``(x - mean) / sqrt(var + eps) * 0 + 0``),
- ``dw``:  the depthwise weight row and bias entry,
- ``in``:  the consumer's weight columns (dim 1; for flatten->FC, the `repeat` features the
           channel owns).

A removed channel therefore carries 0 into every consumer, which ignores it anyway, so deleting it
(``shrink_model``) gives the same outputs in eval mode. (The one exception the layer graph
cannot see: a softmax *across channels* in the middle of the net would still count the zero
channel in its normaliser; no zoo model has one.)

Masks held as torch parametrizations or ``torch.nn.utils.prune`` reparametrizations are baked
into the weights of the shrunk copy; other forward/backward hooks are not copied, so a pruning
method that masks through its own hooks must bake its masks (or re-register) after a shrink.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .errors import EdgepruneError
from .graph import LayerGraph
from .layergraph import OpKind

AXES = ("out", "in", "dw", "bn")


class ShrinkError(EdgepruneError, ValueError):
    """A keep mask cannot be applied to this model/graph (wrong size, empty group, ...)."""


# --------------------------------------------------------------------------------------------
# Which positions of which tensor axes each keep mask removes

def _check_keep(graph: LayerGraph, keep: Mapping[int, torch.Tensor]) -> Dict[int, torch.Tensor]:
    by_id = {g.id: g for g in graph.groups}
    out: Dict[int, torch.Tensor] = {}
    for gid, mask in keep.items():
        gid = int(gid)
        if gid not in by_id:
            raise ShrinkError(f"keep mask for channel group {gid}: the graph has no such group "
                              f"(ids 0..{len(graph.groups) - 1})")
        g = by_id[gid]
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() != 1 or mask.numel() != g.size:
            raise ShrinkError(f"keep mask for channel group {gid} must be a 1-D bool tensor of "
                              f"{g.size} channels, got {mask.dtype} {tuple(mask.shape)}")
        kept = int(mask.sum())
        if kept == 0:
            raise ShrinkError(f"channel group {gid} ({', '.join(g.nodes('out'))}) would keep 0 of "
                              f"{g.size} channels; keep at least one")
        if kept < g.size and not g.prunable:
            raise ShrinkError(f"channel group {gid} ({', '.join(g.nodes('out'))}) is not prunable "
                              f"({g.reason})")
        out[gid] = mask.cpu()
    return out


def axis_masks(graph: LayerGraph, keep: Mapping[int, torch.Tensor]) -> Dict[str, Dict[str, torch.Tensor]]:
    """Per module target (qualified name), per axis ('out'|'in'|'dw'|'bn'), a bool mask over that
    axis (True = kept). Only axes that lose something are listed.

    Raises ShrinkError for a bad keep mask, a grouped (non-depthwise) conv losing output
    channels, or one module called at two places with different masks.
    """
    keep = _check_keep(graph, keep)
    per_node: Dict[str, Dict[str, torch.Tensor]] = {}
    for g in graph.groups:
        mask = keep.get(g.id)
        if mask is None or bool(mask.all()):
            continue
        removed = torch.nonzero(~mask).flatten()
        for m in g.members:
            node = graph[m.node]
            length = _axis_length(node, m.role)
            ax = per_node.setdefault(m.node, {}).setdefault(
                m.role, torch.ones(length, dtype=torch.bool))
            # channel c owns positions [(offset + c) * repeat, (offset + c + 1) * repeat)
            pos = ((m.offset + removed)[:, None] * m.repeat + torch.arange(m.repeat)).flatten()
            ax[pos] = False
    per_target: Dict[str, Dict[str, torch.Tensor]] = {}
    for name, axes in per_node.items():
        node = graph[name]
        if node.op == OpKind.CONV2D and "out" in axes and int(node.attrs.get("groups", 1)) != 1:
            raise ShrinkError(f"layer '{node.target}': cannot remove output channels of a grouped "
                              f"convolution (groups={node.attrs['groups']})")
        prev = per_target.get(node.target)
        if prev is not None and (prev.keys() != axes.keys() or
                                 any(not torch.equal(prev[a], axes[a]) for a in axes)):
            raise ShrinkError(f"module '{node.target}' is called at several places whose channel "
                              f"masks differ; it cannot be shrunk")
        per_target[node.target] = axes
    return per_target


def _axis_length(node, role: str) -> int:
    if role in ("out", "dw"):
        return node.weight_shape[0]
    if role == "in":
        return node.weight_shape[1]
    if role == "bn":
        return node.out_shape[0]
    raise ShrinkError(f"node '{node.name}': unknown channel role '{role}'")


def _dims_for(param: str, axes: Mapping[str, torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """Per tensor dim, the kept indices (None = untouched) of `param` ('weight', 'bias',
    'running_mean', 'running_var') of a module whose axes are `axes`."""
    idx = {a: torch.nonzero(m).flatten() for a, m in axes.items()}
    if "bn" in idx:
        return [idx["bn"]]
    row = idx.get("out", idx.get("dw"))
    if param == "weight":
        return [row, idx.get("in")]
    return [row]  # bias


def kept_indices(graph: LayerGraph, keep: Mapping[int, torch.Tensor]) -> Dict[str, List[Optional[torch.Tensor]]]:
    """Qualified parameter/buffer name -> per-dim kept indices (None = dim untouched), for every
    tensor shrink_model slices. The Trainer uses it to carry optimizer state over a shrink."""
    out: Dict[str, List[Optional[torch.Tensor]]] = {}
    for target, axes in axis_masks(graph, keep).items():
        names = ("weight", "bias", "running_mean", "running_var") if "bn" in axes else ("weight", "bias")
        for p in names:
            out[f"{target}.{p}"] = _dims_for(p, axes)
    return out


def _slice(t: torch.Tensor, dims: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
    for d, idx in enumerate(dims):
        if idx is not None:
            t = t.index_select(d, idx.to(t.device))
    return t.contiguous()


# --------------------------------------------------------------------------------------------
# Module access by qualified name

def _get(model: nn.Module, target: str) -> nn.Module:
    try:
        return model.get_submodule(target)
    except AttributeError as e:
        raise ShrinkError(f"the model has no module '{target}' named by the layer graph; was the "
                          f"graph extracted from another model?") from e


def _raw(module: nn.Module, name: str) -> Optional[torch.Tensor]:
    """The stored tensor behind `module.<name>`: the original of a parametrization or of a
    torch.nn.utils.prune reparametrization, else the parameter itself (writes must go there)."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    orig = getattr(module, name + "_orig", None)
    if isinstance(orig, torch.Tensor):
        return orig
    return getattr(module, name, None)


def _check_module(graph: LayerGraph, model: nn.Module, target: str) -> nn.Module:
    node = graph.node_for_module(target)
    mod = _get(model, target)
    if node.weight_shape is not None:
        w = getattr(mod, "weight", None)
        if w is None or tuple(w.shape) != tuple(node.weight_shape):
            raise ShrinkError(f"module '{target}' has weight shape "
                              f"{None if w is None else tuple(w.shape)}, the layer graph says "
                              f"{tuple(node.weight_shape)}; extract the graph from this model")
    return mod


# --------------------------------------------------------------------------------------------
# The channel-masked model

@torch.no_grad()
def mask_channels_inplace(model: nn.Module, graph: LayerGraph,
                          keep: Mapping[int, torch.Tensor]) -> nn.Module:
    """Zero, in place, every weight that a removed channel touches (see the module docstring for
    the exact definition). Returns `model`. Writes go to the stored tensors, so masks held as
    parametrizations / prune reparametrizations stay in place on top."""
    for target, axes in axis_masks(graph, keep).items():
        mod = _check_module(graph, model, target)
        if "bn" in axes:
            drop = ~axes["bn"]
            for p in ("weight", "bias"):
                t = _raw(mod, p)
                if t is not None:
                    t[drop] = 0
            continue
        row = axes.get("out", axes.get("dw"))
        w, b = _raw(mod, "weight"), _raw(mod, "bias")
        if row is not None:
            w[~row] = 0
            if b is not None:
                b[~row] = 0
        if "in" in axes:
            w[:, ~axes["in"]] = 0
    return model


# --------------------------------------------------------------------------------------------
# Physical shrink

# Hook dicts that are not copied into the shrunk model: hooks belong to the model they were
# registered on (and may hold objects that cannot or should not be deep-copied).
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks")


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every mask baked into plain parameters (torch
    parametrizations and torch.nn.utils.prune reparametrizations) and no hooks; `model` itself
    is untouched. What the layer graph traces, exporters convert and checkpoints store."""
    m = copy_without_hooks(model)
    bake_masks(m)
    return m


def copy_without_hooks(model: nn.Module) -> nn.Module:
    memo: dict = {}
    for m in model.modules():
        for attr in _HOOK_DICTS:
            d = getattr(m, attr, None)
            if d is not None:
                memo[id(d)] = OrderedDict()
        # torch.nn.utils.prune keeps `weight = weight_orig * weight_mask` as a plain non-leaf
        # attribute, which deepcopy refuses; bake_masks recomputes it.
        for name in list(m._parameters):
            base = name[: -len("_orig")] if name.endswith("_orig") else None
            if base and isinstance(m.__dict__.get(base), torch.Tensor):
                memo[id(m.__dict__[base])] = None
    return copy.deepcopy(model, memo)


@torch.no_grad()
def bake_masks(model: nn.Module) -> None:
    """Turn parametrized / torch-prune-reparametrized tensors back into plain parameters that
    hold the masked values (the hooks that applied them were not copied)."""
    for mod in model.modules():
        if parametrize.is_parametrized(mod):
            # A deep copy shares the injected Parametrized<Layer> class with the original, and
            # remove_parametrizations deletes the property from that class, which would break
            # the original too; give the copy its own class first.
            cls = type(mod)
            body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            mod.__class__ = type(cls.__name__, cls.__bases__, body)
            for name in list(mod.parametrizations.keys()):
                parametrize.remove_parametrizations(mod, name, leave_parametrized=True)
        for name, _ in list(mod.named_parameters(recurse=False)):
            if not name.endswith("_orig"):
                continue
            base = name[: -len("_orig")]
            mask = getattr(mod, base + "_mask", None)
            if not isinstance(mask, torch.Tensor):
                continue
            orig = getattr(mod, name)
            value = nn.Parameter((orig * mask).detach().clone(), requires_grad=orig.requires_grad)
            del mod._parameters[name]
            del mod._buffers[base + "_mask"]
            mod.__dict__.pop(base, None)  # the value torch.nn.utils.prune left as an attribute
            mod.register_parameter(base, value)


def _replace_tensor(mod: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(mod, name)
    if name in mod._parameters:
        mod._parameters[name] = nn.Parameter(value, requires_grad=old.requires_grad)
    else:
        mod._buffers[name] = value


@torch.no_grad()
def shrink_model(model: nn.Module, graph: LayerGraph, keep: Mapping[int, torch.Tensor]) -> nn.Module:
    """A new, smaller dense copy of `model` with the removed channels deleted.

    `graph` must be ``extract(model)``; `keep[group_id]` is a bool mask over that group's
    channels. The input model is not modified. In eval mode the result's outputs equal those
    of ``mask_channels_inplace(copy.deepcopy(model), graph, keep)``. Training-mode BatchNorm
    differs only in that the masked twin still normalises the dead channels.
    """
    plan = axis_masks(graph, keep)
    for target in plan:
        _check_module(graph, model, target)
    new = copy_without_hooks(model)
    bake_masks(new)
    for target, axes in plan.items():
        node = graph.node_for_module(target)
        mod = _get(new, target)
        if "bn" in axes:
            for p in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(mod, p, None)
                if t is not None:
                    _replace_tensor(mod, p, _slice(t, _dims_for(p, axes)))
            mod.num_features = int(axes["bn"].sum())
            continue
        _replace_tensor(mod, "weight", _slice(mod.weight, _dims_for("weight", axes)))
        if mod.bias is not None:
            _replace_tensor(mod, "bias", _slice(mod.bias, _dims_for("bias", axes)))
        w = mod.weight
        if node.op == OpKind.LINEAR:
            mod.out_features, mod.in_features = int(w.shape[0]), int(w.shape[1])
        elif node.op == OpKind.DWCONV2D:
            mod.in_channels = mod.out_channels = mod.groups = int(w.shape[0])
        else:  # conv2d with groups == 1
            mod.out_channels, mod.in_channels = int(w.shape[0]), int(w.shape[1])
    return new


__all__ = ["ShrinkError", "axis_masks", "kept_indices", "mask_channels_inplace", "shrink_model",
           "plain_copy", "bake_masks", "copy_without_hooks"]
