"""int4 weights for TFLite-Micro: conv / depthwise / fully-connected filters whose int8 values
lie on a grid of at most 16 uniform levels (a 4-bit-quantized layer, or one clustered to <= 16
evenly spaced values) stored as TFLite INT4, two values per byte.

TFLM's CMSIS-NN kernels take int4 filters directly (kernels/cmsis_nn/conv.cc,
depthwise_conv.cc, fully_connected.cc call arm_convolve_wrapper_s4, arm_depthwise_conv_wrapper_s4,
arm_fully_connected_s4): half the weight bytes, nothing decoded into the arena on the target.
TFLM's reference kernels (the host runtime) unpack into a scratch buffer. Constraints from
those kernels: symmetric weights (zero point 0); a fully-connected int4 filter must be
per-tensor quantized (fully_connected.cc: per-channel int4 is rejected), so a per-channel FC
filter is converted only when all its channels share one 4-bit step.

The rewrite keeps each weight's dequantized value within half an int8 step of the int8 model
(an exact grid gives the 4-bit float values back); biases are requantized to the new
scale (bias scale = input scale x weight scale, as TFLite requires).
Import-light: numpy and the tflite_micro schema only.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

INT4_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
TOL = 0.5 + 1e-6     # largest |q8 - step * q4| accepted, in int8 steps


def channel_grid(row: np.ndarray) -> Optional[float]:
    """The step r (in int8 units) with row ~= r * q4, q4 integer in [-8, 7], |error| <= 0.5;
    None if the channel is not on such a grid. An all-zero channel has step 1."""
    row = row.astype(np.float64)
    m = float(np.abs(row).max())
    if m == 0:
        return 1.0
    if len(np.unique(row)) > 16:
        return None
    for k in range(1, 9):
        r = m / k
        q = np.round(row / r)
        if q.min() >= -8 and q.max() <= 7 and np.abs(row - r * q).max() <= TOL:
            return r
    return None


def _weights(m, sg, ti):
    t = sg.tensors[ti]
    return t, np.frombuffer(bytes(m.buffers[t.buffer].data), dtype=np.int8).reshape(t.shape)


def int4_candidates(model_bytes: bytes) -> Dict[int, dict]:
    """Weight tensors that int4 can hold: {tensor index: {'op', 'axis', 'steps' (per channel,
    int8 units), 'per_tensor_scale' (FC: the common float step, or None), 'elements'}}."""
    from .flatbuffer import _fb
    fb = _fb()
    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = m.subgraphs[0]
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    out: Dict[int, dict] = {}
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        name = names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode))
        if name not in INT4_OPS:
            continue
        ti = int(op.inputs[1])
        t, data = _weights(m, sg, ti)
        if t.type != fb.TensorType.INT8 or t.quantization is None:
            continue
        q = t.quantization
        if q.zeroPoint is not None and np.any(np.asarray(q.zeroPoint) != 0):
            continue
        axis = 3 if name == "DEPTHWISE_CONV_2D" else 0
        per = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
        steps = [channel_grid(r) for r in per]
        if any(s is None for s in steps):
            continue
        scales = np.asarray(q.scale, dtype=np.float64)
        if len(scales) == 1:
            scales = np.full(len(steps), scales[0])
        common = None
        if name == "FULLY_CONNECTED":
            f = scales * np.asarray(steps)            # float step per channel
            nz = [i for i in range(len(steps)) if np.any(per[i])]
            if nz:
                ref = float(min(f[i] for i in nz))       # the finest step: every channel on it
                ok = True
                for i in nz:
                    v = per[i] * scales[i] / ref
                    qv = np.round(v)
                    if qv.min() < -8 or qv.max() > 7 or np.abs(v - qv).max() > TOL * scales[i] / ref:
                        ok = False
                        break
                if not ok:
                    continue
                common = ref
            else:
                common = float(scales[0])
        out[ti] = {"op": name, "axis": axis, "steps": [float(s) for s in steps],
                   "per_tensor_scale": common, "elements": int(data.size),
                   "bias": int(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None}
    return out


def auto_choice(elements: Dict[str, int], file_bytes: int, flash_budget: Optional[int]) -> List[str]:
    """`--compress auto`'s int4 choice: CMSIS-NN's int4 kernels cost cycles (1.3-2.3x the int8
    cycles per layer on the Cortex-M4, benchmarks/results/tflm_int4.md), so none while the
    file fits the flash budget (or there is none); else the largest eligible tensors
    (`elements`: node -> weight count) until it fits, or all of them."""
    keep: List[str] = []
    size = file_bytes
    for node in sorted(elements, key=lambda n: (-elements[n], n)):
        if flash_budget is None or size <= flash_budget:
            break
        keep.append(node)
        size -= elements[node] - -(-elements[node] // 2)
    return keep


def pack_int4(q4: np.ndarray) -> bytes:
    """TFLite's int4 packing: element 2i in the low nibble, 2i + 1 in the high nibble."""
    flat = q4.astype(np.int8).reshape(-1)
    if len(flat) % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    lo = flat[0::2].astype(np.uint8) & 0x0F
    hi = (flat[1::2].astype(np.uint8) & 0x0F) << 4
    return (lo | hi).astype(np.uint8).tobytes()


def unpack_int4(b: bytes, n: int) -> np.ndarray:
    u = np.frombuffer(b, dtype=np.uint8)
    v = np.empty(2 * len(u), np.int8)
    v[0::2] = (u & 0x0F).astype(np.int8)
    v[1::2] = (u >> 4).astype(np.int8)
    v = np.where(v > 7, v - 16, v).astype(np.int8)
    return v[:n]


def to_int4(model_bytes: bytes, tensors: List[int], cands: Optional[Dict[int, dict]] = None) -> bytes:
    """The model with the given weight tensors (from ``int4_candidates``) stored as INT4, their
    biases requantized; canonicalised (deterministic bytes)."""
    from .flatbuffer import _fb, canonicalize, pack_aligned
    fb = _fb()
    cands = cands if cands is not None else int4_candidates(model_bytes)
    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = m.subgraphs[0]
    for ti in tensors:
        c = cands[ti]
        t, data = _weights(m, sg, ti)
        scales = np.asarray(t.quantization.scale, dtype=np.float64)
        n_ch = data.shape[c["axis"]]
        if len(scales) == 1:
            scales = np.full(n_ch, scales[0])
        if c["per_tensor_scale"] is not None:
            new_scale = np.full(n_ch, c["per_tensor_scale"])
        else:
            new_scale = scales * np.asarray(c["steps"])
        shape = [1] * data.ndim
        shape[c["axis"]] = n_ch
        ratio = (scales / new_scale).reshape(shape)
        q4 = np.round(data.astype(np.float64) * ratio).astype(np.int8)
        assert q4.min() >= -8 and q4.max() <= 7
        m.buffers[t.buffer].data = np.frombuffer(pack_int4(q4), dtype=np.uint8)
        t.type = fb.TensorType.INT4
        q = t.quantization
        if c["per_tensor_scale"] is not None:
            q.scale = [float(c["per_tensor_scale"])]
            q.zeroPoint = [0]
            q.quantizedDimension = 0
        else:
            q.scale = [float(s) for s in new_scale]
            q.zeroPoint = [0] * n_ch
        bi = c.get("bias")
        if bi is not None:
            bt = sg.tensors[bi]
            b = np.frombuffer(bytes(m.buffers[bt.buffer].data), dtype=np.int32).astype(np.float64)
            bscale = np.asarray(bt.quantization.scale, dtype=np.float64)
            if len(bscale) == 1:
                bscale = np.full(len(b), bscale[0])
            in_scale = bscale / scales                       # input scale, per channel
            nb = np.round(b * bscale / (in_scale * new_scale))
            m.buffers[bt.buffer].data = np.frombuffer(
                np.clip(nb, -2**31, 2**31 - 1).astype(np.int32).tobytes(), dtype=np.uint8)
            if c["per_tensor_scale"] is not None:
                bt.quantization.scale = [float(in_scale[0] * c["per_tensor_scale"])]
                bt.quantization.zeroPoint = [0]
            else:
                bt.quantization.scale = [float(v) for v in in_scale * new_scale]
    return canonicalize(pack_aligned(m))
