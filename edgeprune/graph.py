"""The layer graph: one torch.fx extraction of a model that every other part reads.

Nodes carry op kind, shapes (batch dimension dropped), weight shape, params, MACs and
computational intensity. Coupled-channel groups say which output channels of one layer must
be removed together with which input channels of the following layers (through BN,
activations, pooling, padding, flatten-into-FC, residual add, concat and depthwise conv).

The design follows Torch-Pruning's dependency graph: the graph knows *what is coupled*; it
knows nothing of importance criteria or of pruning schedules.

Usage::

    g = extract(model)                   # model.input_shape or input_shape=(C, H, W)
    for n in g.compute_nodes(): ...      # conv2d / dwconv2d / linear, in topological order
    for grp in g.prunable_groups(): ...  # ChannelGroup, members say which tensor axes to slice
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from .layergraph import (COMPUTE_OPS, PASSTHROUGH_OPS, ChannelGroup, ChannelMember,  # noqa: F401
                         LayerGraph, LayerNode, OpKind, UnsupportedOpError)


# --------------------------------------------------------------------------------------------
# Classification of fx nodes

_MODULE_OPS = {
    nn.Linear: OpKind.LINEAR, nn.BatchNorm1d: OpKind.BATCHNORM, nn.BatchNorm2d: OpKind.BATCHNORM,
    nn.ReLU: OpKind.RELU, nn.ReLU6: OpKind.RELU6, nn.Sigmoid: OpKind.SIGMOID,
    nn.Tanh: OpKind.TANH, nn.MaxPool2d: OpKind.MAXPOOL2D, nn.AvgPool2d: OpKind.AVGPOOL2D,
    nn.AdaptiveAvgPool2d: OpKind.GAP, nn.ZeroPad2d: OpKind.PAD, nn.Dropout: OpKind.DROPOUT,
    nn.Identity: OpKind.IDENTITY, nn.Flatten: OpKind.FLATTEN, nn.Softmax: OpKind.SOFTMAX,
}

_FUNCTION_OPS = {
    F.relu: OpKind.RELU, torch.relu: OpKind.RELU, F.relu6: OpKind.RELU6,
    torch.sigmoid: OpKind.SIGMOID, torch.tanh: OpKind.TANH, F.max_pool2d: OpKind.MAXPOOL2D,
    F.avg_pool2d: OpKind.AVGPOOL2D, F.adaptive_avg_pool2d: OpKind.GAP, F.dropout: OpKind.DROPOUT,
    torch.flatten: OpKind.FLATTEN, operator.add: OpKind.ADD, torch.add: OpKind.ADD,
    torch.cat: OpKind.CONCAT, torch.concat: OpKind.CONCAT, F.softmax: OpKind.SOFTMAX,
    torch.softmax: OpKind.SOFTMAX, F.pad: OpKind.PAD,
}

_METHOD_OPS = {"relu": OpKind.RELU, "flatten": OpKind.FLATTEN, "view": OpKind.FLATTEN,
               "reshape": OpKind.FLATTEN, "add": OpKind.ADD, "sigmoid": OpKind.SIGMOID,
               "tanh": OpKind.TANH, "softmax": OpKind.SOFTMAX}


def _classify(node: fx.Node, modules: Dict[str, nn.Module]) -> Tuple[OpKind, Dict[str, object]]:
    """Return (op kind, attrs) for an fx node; raise UnsupportedOpError naming it otherwise."""
    if node.op == "call_module":
        mod = modules[node.target]
        if isinstance(mod, nn.Conv2d):
            g = mod.groups
            attrs = {"kernel_size": tuple(mod.kernel_size), "stride": tuple(mod.stride),
                     "padding": tuple(mod.padding) if not isinstance(mod.padding, str) else mod.padding,
                     "dilation": tuple(mod.dilation), "groups": g}
            if g > 1 and g == mod.in_channels == mod.out_channels:
                return OpKind.DWCONV2D, attrs
            return OpKind.CONV2D, attrs
        if isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0 and mod.max_val == 6.0:
            return OpKind.RELU6, {}
        # isinstance, not an exact type match: parametrized (masked) layers are subclasses that
        # torch.nn.utils.parametrize injects, and they must trace like the plain layer.
        for cls, kind in _MODULE_OPS.items():
            if isinstance(mod, cls):
                attrs: Dict[str, object] = {}
                if kind in (OpKind.MAXPOOL2D, OpKind.AVGPOOL2D):
                    attrs = {"kernel_size": _pair(mod.kernel_size),
                             "stride": _pair(mod.stride if mod.stride is not None else mod.kernel_size),
                             "padding": _pair(mod.padding)}
                elif kind == OpKind.GAP:
                    if _pair(mod.output_size) != (1, 1):
                        raise UnsupportedOpError(
                            f"node '{node.name}' ({node.target}): AdaptiveAvgPool2d with output "
                            f"size {mod.output_size} is not supported (only 1x1)")
                elif kind == OpKind.PAD:
                    attrs = {"padding": tuple(mod.padding)}  # (left, right, top, bottom)
                elif kind == OpKind.FLATTEN:
                    if mod.start_dim != 1 or mod.end_dim != -1:
                        raise UnsupportedOpError(
                            f"node '{node.name}' ({node.target}): Flatten(start_dim={mod.start_dim}, "
                            f"end_dim={mod.end_dim}) is not supported (only start_dim=1)")
                elif kind == OpKind.SOFTMAX:
                    attrs = {"dim": mod.dim}
                return kind, attrs
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.target}): unsupported layer {type(mod).__name__}")
    if node.op == "call_function":
        kind = _FUNCTION_OPS.get(node.target)
        if kind is None:
            name = getattr(node.target, "__name__", str(node.target))
            raise UnsupportedOpError(f"node '{node.name}': unsupported function {name}")
        return kind, {}
    if node.op == "call_method":
        kind = _METHOD_OPS.get(node.target)
        if kind is None:
            raise UnsupportedOpError(f"node '{node.name}': unsupported method .{node.target}()")
        return kind, {}
    raise UnsupportedOpError(f"node '{node.name}': unsupported fx op {node.op}")


def _pair(v) -> Tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# --------------------------------------------------------------------------------------------
# Channel spaces (union-find) for coupled groups

class _Spaces:
    def __init__(self):
        self.parent: List[int] = []
        self.size: List[int] = []
        self.members: List[List[ChannelMember]] = []
        self.pinned: List[str] = []

    def new(self, size: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.members.append([])
        self.pinned.append("")
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.members[a] += self.members[b]
            self.pinned[a] = self.pinned[a] or self.pinned[b]

    def pin(self, s: int, why: str) -> None:
        r = self.find(s)
        if not self.pinned[r]:
            self.pinned[r] = why

    def add(self, s: int, m: ChannelMember) -> None:
        self.members[self.find(s)].append(m)


@dataclass
class _Chan:
    """Channel layout of a tensor's axis 1: segments of spaces, each channel repeated `repeat` times."""

    segments: List[Tuple[int, int]]  # (space id, length)
    repeat: int = 1


def _tensor_meta_shape(node: fx.Node) -> Tuple[int, ...]:
    tm = node.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        raise UnsupportedOpError(f"node '{node.name}': output is not a single tensor")
    return tuple(int(d) for d in tm.shape[1:])


def _resolve_input_shape(model: nn.Module, input_shape) -> Tuple[int, ...]:
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("input shape unknown: pass input_shape=(C, H, W) or set model.input_shape")
    return tuple(int(d) for d in shape)


def extract(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> LayerGraph:
    """Trace `model` with torch.fx, propagate shapes and build the layer graph."""
    shape = _resolve_input_shape(model, input_shape)
    was_training = model.training
    model.eval()  # shape propagation with batch 2 must not update BN statistics
    try:
        try:
            gm = fx.symbolic_trace(model)
        except Exception as e:  # noqa: BLE001 - any trace failure is reported with its cause
            raise UnsupportedOpError(f"torch.fx cannot trace {type(model).__name__}: "
                                     f"{str(e).splitlines()[0]}") from e
        sample = torch.zeros((2,) + shape)
        with torch.no_grad():
            try:
                ShapeProp(gm).propagate(sample)
            except Exception as e:  # noqa: BLE001
                raise UnsupportedOpError(f"shape propagation with input {shape} failed: "
                                         f"{str(e).splitlines()[0]}") from e
    finally:
        model.train(was_training)
    modules = dict(gm.named_modules())

    nodes: List[LayerNode] = []
    chans: Dict[str, _Chan] = {}
    spaces = _Spaces()
    # Nodes whose value is not a tensor (x.size(0) and the like) feed only view/reshape.
    skipped: set = set()

    for node in gm.graph.nodes:
        if node.op == "get_attr":
            raise UnsupportedOpError(f"node '{node.name}': parameters used outside a layer "
                                     f"('{node.target}') are not supported")
        if node.op == "call_method" and node.target == "size" or (
                node.op == "call_function" and node.target is getattr):
            skipped.add(node.name)
            continue
        if node.op == "placeholder":
            out = _tensor_meta_shape(node)
            s = spaces.new(out[0])
            spaces.pin(s, "model input channels")
            chans[node.name] = _Chan([(s, out[0])])
            nodes.append(LayerNode(node.name, OpKind.INPUT, None, [], [], out))
            continue
        if node.op == "output":
            src = node.args[0]
            if not isinstance(src, fx.Node):
                raise UnsupportedOpError("model output must be a single tensor")
            for sid, _ in chans[src.name].segments:
                spaces.pin(sid, "model output channels")
            nodes.append(LayerNode("output", OpKind.OUTPUT, None, [src.name],
                                   [_shape_of(nodes, src.name)], _shape_of(nodes, src.name)))
            continue

        kind, attrs = _classify(node, modules)
        tensor_inputs = [a for a in _flat_args(node) if isinstance(a, fx.Node) and a.name not in skipped]
        in_names = [a.name for a in tensor_inputs]
        in_shapes = [_shape_of(nodes, n) for n in in_names]
        out = _tensor_meta_shape(node)
        ln = LayerNode(node.name, kind, node.target if node.op == "call_module" else None,
                       in_names, in_shapes, out, attrs=attrs)

        if kind in (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR):
            mod = modules[node.target]
            ln.weight_shape = tuple(mod.weight.shape)
            ln.has_bias = mod.bias is not None
            ln.params = mod.weight.numel() + (mod.bias.numel() if mod.bias is not None else 0)
            if kind == OpKind.LINEAR:
                ln.macs = mod.in_features * mod.out_features
            else:
                k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
                ln.macs = out[0] * out[1] * out[2] * k
        elif kind == OpKind.BATCHNORM:
            mod = modules[node.target]
            ln.params = sum(p.numel() for p in mod.parameters())
        _propagate_channels(ln, node, chans, spaces, modules)
        nodes.append(ln)

    groups = []
    group_of_root: Dict[int, int] = {}
    for i in range(len(spaces.parent)):
        r = spaces.find(i)
        if r in group_of_root or r in (-1,):
            continue
        mem = spaces.members[r]
        if not any(m.role == "out" for m in mem):
            group_of_root[r] = -1  # only the input tensor's channels, not a group of any layer
            continue
        group_of_root[r] = len(groups)
        prunable = not spaces.pinned[r]
        groups.append(ChannelGroup(len(groups), spaces.size[r], mem, prunable, spaces.pinned[r]))
    for ln in nodes:
        src = ln.name if ln.op != OpKind.OUTPUT else ln.inputs[0]
        c = chans[src]
        ln.channels = [(group_of_root[spaces.find(sid)], length) for sid, length in c.segments]
        ln.repeat = c.repeat
    return LayerGraph(nodes, groups, shape, gm)


def _flat_args(node: fx.Node) -> list:
    out = []
    for a in list(node.args) + list(node.kwargs.values()):
        if isinstance(a, (list, tuple)):
            out += list(a)
        else:
            out.append(a)
    return out


def _shape_of(nodes: List[LayerNode], name: str) -> Tuple[int, ...]:
    for n in reversed(nodes):
        if n.name == name:
            return n.out_shape
    raise KeyError(name)


def _propagate_channels(ln: LayerNode, node: fx.Node, chans: Dict[str, _Chan], spaces: _Spaces,
                        modules: Dict[str, nn.Module]) -> None:
    """Give `ln`'s output its channel layout and record which weights each space touches."""
    kind = ln.op
    src = chans[ln.inputs[0]] if ln.inputs else None

    def record_in(c: _Chan, role: str) -> None:
        off = 0
        for sid, length in c.segments:
            spaces.add(sid, ChannelMember(ln.name, role, off, c.repeat))
            off += length

    if kind in (OpKind.CONV2D, OpKind.LINEAR):
        groups = ln.attrs.get("groups", 1)
        if groups != 1:
            for sid, _ in src.segments:
                spaces.pin(sid, f"grouped conv {ln.name} (groups={groups})")
        else:
            record_in(src, "in")
        s = spaces.new(ln.out_shape[0])
        spaces.add(s, ChannelMember(ln.name, "out"))
        chans[ln.name] = _Chan([(s, ln.out_shape[0])])
        return
    if kind == OpKind.DWCONV2D:
        if src.repeat != 1:
            raise UnsupportedOpError(f"node '{ln.name}': depthwise conv on a flattened tensor")
        record_in(src, "dw")
        chans[ln.name] = _Chan(list(src.segments))
        return
    if kind == OpKind.BATCHNORM:
        record_in(src, "bn")
        chans[ln.name] = _Chan(list(src.segments), src.repeat)
        return
    if kind in PASSTHROUGH_OPS:
        if (kind == OpKind.SOFTMAX and len(ln.out_shape) > 1
                and ln.attrs.get("dim", 1) in (2, 3, -1, -2)):
            pass  # spatial softmax keeps channels apart
        chans[ln.name] = _Chan(list(src.segments), src.repeat)
        return
    if kind == OpKind.FLATTEN:
        in_shape = ln.in_shapes[0]
        if len(ln.out_shape) != 1:
            raise UnsupportedOpError(f"node '{ln.name}': reshape to {ln.out_shape} is not supported "
                                     f"(only flattening to (N, features))")
        spatial = 1
        for d in in_shape[1:]:
            spatial *= d
        chans[ln.name] = _Chan(list(src.segments), src.repeat * spatial)
        return
    if kind == OpKind.ADD:
        if len(ln.inputs) != 2:
            raise UnsupportedOpError(f"node '{ln.name}': add with a constant is not supported")
        a, b = chans[ln.inputs[0]], chans[ln.inputs[1]]
        if [l for _, l in a.segments] == [l for _, l in b.segments] and a.repeat == b.repeat:
            for (sa, _), (sb, _) in zip(a.segments, b.segments):
                spaces.union(sa, sb)
        else:  # misaligned concat segments: keep both sides whole
            for sid, _ in a.segments + b.segments:
                spaces.pin(sid, f"add {ln.name} with misaligned channel segments")
        chans[ln.name] = _Chan(list(a.segments), a.repeat)
        return
    if kind == OpKind.CONCAT:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim not in (1, -len(ln.out_shape) - 1 + 1) and dim != 1:
            raise UnsupportedOpError(f"node '{ln.name}': concat along dim {dim} (only channels)")
        segs: List[Tuple[int, int]] = []
        reps = {chans[i].repeat for i in ln.inputs}
        if len(reps) != 1:
            raise UnsupportedOpError(f"node '{ln.name}': concat of tensors with different layouts")
        for i in ln.inputs:
            segs += chans[i].segments
        chans[ln.name] = _Chan(segs, reps.pop())
        return
    raise UnsupportedOpError(f"node '{ln.name}': op '{kind}' has no channel rule")
