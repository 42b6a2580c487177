"""Layer-graph types: plain data, no torch import.

`edgeprune.graph.extract` builds a `LayerGraph` from a torch model; this module holds only the
data classes so that code that reads graphs (cost models, `edgeprune estimate` on a cached zoo
graph) starts without importing torch.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Dict, List, Optional, Tuple

from .errors import EdgepruneError


class UnsupportedOpError(EdgepruneError, ValueError):
    """An op the layer graph (and therefore the cost models and exporters) cannot handle."""


class OpKind(StrEnum):
    """The one enumerated list of op kinds a layer graph can hold.

    Every backend (TFLite plan, MCU cycles, FINN/HLS export, FPGA cost, ...) keeps a table over
    this list saying how it handles each kind or why it does not (``edgeprune ops`` prints them;
    tests/test_support_matrix.py fails when a kind is missing from a table). A ``StrEnum``: its
    members are their names as strings (``OpKind.CONV2D == "conv2d"``), so graphs serialise to
    plain JSON.
    """

    INPUT = "input"
    OUTPUT = "output"
    CONV2D = "conv2d"           # nn.Conv2d, groups == 1 (grouped convs are recorded, backends refuse)
    DWCONV2D = "dwconv2d"       # nn.Conv2d with groups == in == out channels
    LINEAR = "linear"
    BATCHNORM = "batchnorm"
    RELU = "relu"
    RELU6 = "relu6"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    MAXPOOL2D = "maxpool2d"
    AVGPOOL2D = "avgpool2d"
    GAP = "gap"                 # global average pooling (AdaptiveAvgPool2d(1))
    PAD = "pad"                 # ZeroPad2d / F.pad (left, right, top, bottom)
    DROPOUT = "dropout"         # a no-op at inference
    IDENTITY = "identity"       # a no-op
    SOFTMAX = "softmax"
    FLATTEN = "flatten"         # flatten / view / reshape to (N, features)
    ADD = "add"                 # element-wise sum of two tensors
    CONCAT = "concat"           # concatenation along channels

    @property
    def is_compute(self) -> bool:
        return self in COMPUTE_OPS


# Compute ops have weights and MACs; pass-through ops keep the channel axis as is; inference
# no-ops vanish from every deployed model.
COMPUTE_OPS = frozenset({OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR})
PASSTHROUGH_OPS = frozenset({
    OpKind.BATCHNORM, OpKind.RELU, OpKind.RELU6, OpKind.SIGMOID, OpKind.TANH, OpKind.MAXPOOL2D,
    OpKind.AVGPOOL2D, OpKind.GAP, OpKind.PAD, OpKind.DROPOUT, OpKind.IDENTITY, OpKind.SOFTMAX})
INFERENCE_NOOPS = frozenset({OpKind.DROPOUT, OpKind.IDENTITY})


@dataclass
class LayerNode:
    """One tensor-producing op of the model, in topological order."""

    name: str                       # unique fx node name
    op: OpKind
    target: Optional[str]           # qualified module name for module ops, else None
    inputs: List[str]               # names of producer nodes
    in_shapes: List[Tuple[int, ...]]
    out_shape: Tuple[int, ...]
    weight_shape: Optional[Tuple[int, ...]] = None
    has_bias: bool = False
    params: int = 0                 # trainable parameters owned by this node
    macs: int = 0                   # multiply-accumulates for one input sample
    attrs: Dict[str, object] = field(default_factory=dict)
    # Layout of the output's channel axis: (group id, length) segments, -1 for channels of no
    # group (the model input); `repeat` > 1 after a flatten (features per channel).
    channels: List[Tuple[int, int]] = field(default_factory=list)
    repeat: int = 1

    @property
    def weight_count(self) -> int:
        n = 1
        for d in self.weight_shape or ():
            n *= d
        return n if self.weight_shape else 0

    @property
    def intensity(self) -> float:
        """Computational intensity: MACs per weight (0 for ops without weights)."""
        w = self.weight_count
        return self.macs / w if w else 0.0

    @property
    def in_shape(self) -> Tuple[int, ...]:
        return self.in_shapes[0] if self.in_shapes else ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["intensity"] = self.intensity
        return d


@dataclass
class ChannelMember:
    """One place a channel group lives.

    role:
      'out' - output channels of conv2d/linear: weight dim 0 and bias
      'in'  - input channels of conv2d/linear: weight dim 1; for a linear fed by a flatten,
              channel c owns input features [(offset + c) * repeat, (offset + c + 1) * repeat)
      'dw'  - a depthwise conv passes the channel through: weight dim 0 and bias
      'bn'  - BatchNorm affine params and running stats
    offset: position of the group's first channel on that axis (non-zero after a concat).
    """

    node: str
    role: str
    offset: int = 0
    repeat: int = 1


@dataclass
class ChannelGroup:
    id: int
    size: int
    members: List[ChannelMember]
    prunable: bool = True
    reason: str = ""                # why it is not prunable

    def nodes(self, role: Optional[str] = None) -> List[str]:
        return [m.node for m in self.members if role is None or m.role == role]


@dataclass
class LayerGraph:
    nodes: List[LayerNode]
    groups: List[ChannelGroup]
    input_shape: Tuple[int, ...]
    gm: Any = field(default=None, repr=False, compare=False)  # torch.fx.GraphModule

    def __post_init__(self):
        self._by_name = {n.name: n for n in self.nodes}

    def __getitem__(self, name: str) -> LayerNode:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.nodes)

    def compute_nodes(self) -> List[LayerNode]:
        return [n for n in self.nodes if n.op in COMPUTE_OPS]

    def prunable_groups(self) -> List[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def consumers(self, name: str) -> List[LayerNode]:
        return [n for n in self.nodes if name in n.inputs]

    def node_for_module(self, target: str) -> LayerNode:
        for n in self.nodes:
            if n.target == target:
                return n
        raise KeyError(target)

    @property
    def output_node(self) -> LayerNode:
        return next(n for n in self.nodes if n.op == OpKind.OUTPUT)

    @property
    def total_params(self) -> int:
        """All trainable parameters (conv/linear weights and biases, BN affine)."""
        return sum(n.params for n in self.nodes)

    @property
    def compute_params(self) -> int:
        """Weights and biases of conv/linear layers: what a deployed (BN-folded) model stores."""
        return sum(n.params for n in self.compute_nodes())

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    def with_group_sizes(self, sizes: Dict[int, int]) -> "LayerGraph":
        """A new graph as if channel group g kept `sizes[g]` channels: shapes, weight shapes,
        params and MACs recomputed analytically (no model needed). Groups not named keep their
        size. Used by the cost models' what-if and the pruner's budget checks."""
        for gid, n in sizes.items():
            if not 0 <= gid < len(self.groups):
                raise KeyError(f"no channel group {gid}")
            if n < 1:
                raise ValueError(f"channel group {gid} cannot shrink to {n} channels")
        size = {g.id: sizes.get(g.id, g.size) for g in self.groups}
        new_nodes: List[LayerNode] = []
        by_name: Dict[str, LayerNode] = {}
        for old in self.nodes:
            n = copy.deepcopy(old)
            n.channels = [(g, size[g] if g >= 0 else length) for g, length in old.channels]
            n.in_shapes = [by_name[i].out_shape for i in old.inputs]
            c = sum(length for _, length in n.channels)
            if n.op != OpKind.INPUT:
                n.out_shape = ((c * n.repeat,) if len(old.out_shape) == 1
                               else (c,) + tuple(old.out_shape[1:]))
            if n.op in (OpKind.CONV2D, OpKind.DWCONV2D):
                kh, kw = old.weight_shape[2], old.weight_shape[3]
                cin = n.in_shapes[0][0]
                groups = cin if n.op == OpKind.DWCONV2D else int(n.attrs.get("groups", 1))
                n.weight_shape = (c, cin // groups, kh, kw)
                if n.op == OpKind.DWCONV2D:
                    n.attrs = dict(n.attrs, groups=cin)
                n.macs = c * n.out_shape[1] * n.out_shape[2] * (cin // groups) * kh * kw
                n.params = c * (cin // groups) * kh * kw + (c if n.has_bias else 0)
            elif n.op == OpKind.LINEAR:
                cin = n.in_shapes[0][0]
                n.weight_shape = (c, cin)
                n.macs = c * cin
                n.params = c * cin + (c if n.has_bias else 0)
            elif n.op == OpKind.BATCHNORM:
                n.params = 2 * c if old.params else 0
            new_nodes.append(n)
            by_name[n.name] = n
        new_groups = [ChannelGroup(g.id, size[g.id], copy.deepcopy(g.members), g.prunable, g.reason)
                      for g in self.groups]
        return LayerGraph(new_nodes, new_groups, self.input_shape, None)

    def group_of_node(self, name: str, role: str = "out") -> Optional[ChannelGroup]:
        """The channel group in which node `name` plays `role` (e.g. a conv's output channels)."""
        for g in self.groups:
            if any(m.node == name and m.role == role for m in g.members):
                return g
        return None

    @classmethod
    def from_dict(cls, d: dict) -> "LayerGraph":
        """Inverse of to_dict (the derived 'intensity' and 'totals' are recomputed)."""
        nodes = []
        for nd in d["nodes"]:
            nd = {k: v for k, v in nd.items() if k != "intensity"}
            try:
                nd["op"] = OpKind(nd["op"])
            except ValueError:
                raise UnsupportedOpError(f"node '{nd.get('name')}': unknown op kind "
                                         f"{nd['op']!r}") from None
            nd["in_shapes"] = [tuple(s) for s in nd["in_shapes"]]
            nd["out_shape"] = tuple(nd["out_shape"])
            nd["weight_shape"] = tuple(nd["weight_shape"]) if nd["weight_shape"] is not None else None
            nd["channels"] = [tuple(c) for c in nd["channels"]]
            nd["attrs"] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in nd["attrs"].items()}
            nodes.append(LayerNode(**nd))
        groups = [ChannelGroup(g["id"], g["size"], [ChannelMember(**m) for m in g["members"]],
                               g["prunable"], g["reason"]) for g in d["groups"]]
        return cls(nodes, groups, tuple(d["input_shape"]), None)

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape),
                "nodes": [n.to_dict() for n in self.nodes],
                "groups": [asdict(g) for g in self.groups],
                "totals": {"params": self.total_params, "compute_params": self.compute_params,
                           "macs": self.total_macs}}
