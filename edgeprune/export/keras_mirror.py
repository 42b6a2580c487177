"""A Keras (NHWC) mirror of a torch model, built from the TFLite op plan of its layer graph.

The mirror has one Keras layer per planned TFLite op, so the converter's output has the ops the
cost model (``edgeprune.backends.tflm.plan.lower``) counted:

- BatchNorm is folded into the conv/linear before it (w' = w * g / sqrt(v + eps),
  b' = (b - mean) * g / sqrt(v + eps) + beta);
- conv weights (O, I, kh, kw) become (kh, kw, I, O), depthwise (C, 1, kh, kw) become
  (kh, kw, C, 1);
- a Linear fed by a flatten of a C x H x W map gets its input features permuted from torch's
  C-major order to NHWC's channel-minor order, so no TRANSPOSE op is needed;
- ReLU/ReLU6 become the fused activation of the layer before them.

Heavy: imports keras/tensorflow. Only the exporter imports this module.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

from ..backends.tflm.plan import TflPlan, TflmUnsupportedError
from ..errors import EdgepruneError


class MirrorMismatchError(EdgepruneError):
    """The Keras mirror does not compute what the torch model computes."""


_ACT = {"NONE": None, "RELU": "relu", "RELU6": "relu6"}


def _folded_params(model: torch.nn.Module, graph, op) -> Tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the op's torch layer with any following BatchNorm folded in, float64."""
    node = graph[op.node]
    mod = model.get_submodule(node.target)
    w = mod.weight.detach().double().cpu().numpy()
    out_ch = w.shape[0]
    b = (mod.bias.detach().double().cpu().numpy() if mod.bias is not None
         else np.zeros(out_ch))
    bn_target = op.attrs.get("bn")
    if bn_target:
        bn = model.get_submodule(bn_target)
        mean = bn.running_mean.detach().double().cpu().numpy()
        var = bn.running_var.detach().double().cpu().numpy()
        gamma = (bn.weight.detach().double().cpu().numpy() if bn.weight is not None
                 else np.ones(out_ch))
        beta = (bn.bias.detach().double().cpu().numpy() if bn.bias is not None
                else np.zeros(out_ch))
        scale = gamma / np.sqrt(var + bn.eps)
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (b - mean) * scale + beta
    return w, b


def build_keras_mirror(model: torch.nn.Module, graph, plan: TflPlan):
    """The Keras functional model computing `model` in NHWC, batch size 1."""
    import keras

    values: Dict[int, object] = {}
    inputs = []
    for t in plan.inputs:
        shape = plan.tensors[t].shape[1:]
        x = keras.Input(shape=shape, batch_size=1, name=f"input_{len(inputs)}")
        values[t] = x
        inputs.append(x)
    for i, op in enumerate(plan.ops):
        name = f"op{i}_{op.opcode.lower()}"
        xs = [values[j] for j in op.inputs if j >= 0 and not plan.tensors[j].const]
        act = _ACT[op.options.get("fused_activation", "NONE")]
        if op.opcode == "CONV_2D":
            w, b = _folded_params(model, graph, op)
            layer = keras.layers.Conv2D(w.shape[0], w.shape[2:], strides=op.options["stride"],
                                        padding=op.attrs["padding"],
                                        dilation_rate=op.options["dilation"], activation=act,
                                        use_bias=True, name=name)
            y = layer(xs[0])
            layer.set_weights([w.transpose(2, 3, 1, 0).astype(np.float32), b.astype(np.float32)])
        elif op.opcode == "DEPTHWISE_CONV_2D":
            w, b = _folded_params(model, graph, op)
            layer = keras.layers.DepthwiseConv2D(w.shape[2:], strides=op.options["stride"],
                                                 padding=op.attrs["padding"],
                                                 dilation_rate=op.options["dilation"],
                                                 activation=act, use_bias=True, name=name)
            y = layer(xs[0])
            layer.set_weights([w.transpose(2, 3, 0, 1).astype(np.float32), b.astype(np.float32)])
        elif op.opcode == "FULLY_CONNECTED":
            w, b = _folded_params(model, graph, op)
            perm = op.attrs.get("permute_from_chw")
            if perm:
                c, h, wd = perm
                w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            has_bias = op.attrs.get("has_bias", True)
            layer = keras.layers.Dense(w.shape[0], activation=act, use_bias=has_bias, name=name)
            x = xs[0]
            if len(x.shape) > 2:   # a 1x1xC map: the converter folds this Flatten into the FC
                x = keras.layers.Flatten(name=name + "_flatten")(x)
            y = layer(x)
            ws = [w.T.astype(np.float32)] + ([b.astype(np.float32)] if has_bias else [])
            layer.set_weights(ws)
        elif op.opcode == "PAD":
            top, bottom, left, right = op.attrs["pads"]
            y = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=name)(xs[0])
        elif op.opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            cls = keras.layers.MaxPooling2D if op.opcode == "MAX_POOL_2D" else keras.layers.AveragePooling2D
            y = cls(pool_size=op.options["filter"], strides=op.options["stride"], padding="valid",
                    name=name)(xs[0])
            if act:
                y = keras.layers.Activation(act, name=name + "_act")(y)
        elif op.opcode == "RESHAPE":
            y = keras.layers.Flatten(name=name)(xs[0])
        elif op.opcode == "SOFTMAX":
            y = keras.layers.Softmax(name=name)(xs[0])
        elif op.opcode == "ADD":
            y = keras.layers.Add(name=name)(xs)
            if act:
                y = keras.layers.Activation(act, name=name + "_act")(y)
        elif op.opcode == "CONCATENATION":
            y = keras.layers.Concatenate(axis=-1, name=name)(xs)
        elif op.opcode in ("RELU", "RELU6", "LOGISTIC", "TANH"):
            fn = {"RELU": "relu", "RELU6": "relu6", "LOGISTIC": "sigmoid", "TANH": "tanh"}[op.opcode]
            y = keras.layers.Activation(fn, name=name)(xs[0])
        else:  # pragma: no cover - lower() only plans the ops above
            raise TflmUnsupportedError(f"layer '{op.node}': no Keras mirror for {op.opcode}")
        values[op.outputs[0]] = y
    outputs = [values[t] for t in plan.outputs]
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name="edgeprune_mirror")


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """NCHW (or flat) batch -> the mirror's layout."""
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def check_mirror(model: torch.nn.Module, mirror, x_nchw: np.ndarray, tol: float = 1e-4) -> float:
    """Max |torch - keras| on `x_nchw`; raises MirrorMismatchError above `tol` (relative to the
    output range when that exceeds 1)."""
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x_nchw.astype(np.float32))).double().numpy()
    got = np.concatenate([np.asarray(mirror(to_nhwc(x_nchw[i:i + 1]).astype(np.float32)))
                          for i in range(len(x_nchw))]).astype(np.float64)
    diff = float(np.max(np.abs(ref - got.reshape(ref.shape)))) if ref.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if diff > tol * scale:
        raise MirrorMismatchError(f"the Keras mirror differs from the torch model by {diff:.3g} "
                                  f"(tolerance {tol * scale:.3g}); please report this model")
    return diff
