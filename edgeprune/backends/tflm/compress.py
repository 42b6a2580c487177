"""LUT compression of clustered weights (tflite-micro's DECODE): when it pays, and how.

tflite-micro's compressor replaces an int8 weight tensor whose channels each hold few distinct
values by packed per-channel indices plus a value table; a DECODE op inserted before the
consumer expands it into the arena at run time. These rules are shared by the flash/arena model
(``memory.py``) and the exporter, so the estimate and the file agree.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from ...errors import EdgepruneError
from .flatbuffer import canonicalize
from .plan import TflPlan, TflTensor

LUT_MAX_BITS = 7        # DCM bitwidth field is 3 bits, 1..7 (compression/lut.py)
DCM_BYTES = 16          # DECODE common metadata header (compression/decode.py)


def lut_sizes(t: TflTensor, bits: int, n_values: Optional[int] = None) -> Tuple[int, int]:
    """(encoded index bytes, ancillary bytes) of a per-channel LUT-compressed tensor
    (compression/lut.py: indices packed MSB-first, padded to a byte; ancillary = 16-byte DCM
    + one value table per channel, each as long as the largest)."""
    n = t.nbytes // (4 if t.dtype == "int32" else 1)
    ch = t.shape[t.quant_axis]
    stride = n_values if n_values else 2 ** bits
    item = 4 if t.dtype == "int32" else 1
    return -(-n * bits // 8), DCM_BYTES + ch * stride * item


def lut_pays(t: TflTensor, bits: int, n_values: Optional[int] = None) -> bool:
    """Compress only where the file shrinks, counting the DECODE op and its tensors' metadata
    (FLATBUFFER_PER_TENSOR_BYTES, measured) against the saving."""
    enc, anc = lut_sizes(t, bits, n_values)
    # The DECODE output tensor copies the weights' per-channel quantization (float32 scale +
    # int64 zero point per channel, compression/decode_insert.py _create_output_tensor).
    quant_copy = 12 * t.quant_channels
    return (enc + anc + quant_copy + 2 * FLATBUFFER_PER_TENSOR_BYTES + FLATBUFFER_PER_OP_BYTES
            < t.nbytes)


# Serialised size of one extra tensor table (name, shape vector, no quantization) and one
# extra operator table; measured by benchmarks/tflm_memory.py --calibrate (flatbuffer deltas).
FLATBUFFER_PER_TENSOR_BYTES = 64
FLATBUFFER_PER_OP_BYTES = 48


def lut_choice(plan: TflPlan, compression) -> Dict[int, Tuple[int, Optional[int]]]:
    """tensor index -> (bits, values per channel) for the weight tensors `compression` names
    where per-channel LUT compression pays."""
    chosen: Dict[int, Tuple[int, Optional[int]]] = {}
    for node, spec in (compression or {}).items():
        if isinstance(spec, dict):
            bits, n_values = int(spec["bits"]), spec.get("values")
        else:
            bits, n_values = int(spec), None
        if not 1 <= bits <= LUT_MAX_BITS:
            raise EdgepruneError(f"compression of '{node}': index_bits must be 1..{LUT_MAX_BITS}, "
                                 f"got {bits}")
        op = plan.op_for_node(node)
        if op is None:
            raise EdgepruneError(f"compression names '{node}', which is not a layer of the model")
        wt = [i for i in op.inputs if i >= 0 and plan.tensors[i].role == "weights"]
        if not wt:
            raise EdgepruneError(f"compression names '{node}', which has no weights")
        t = plan.tensors[wt[0]]
        if lut_pays(t, bits, n_values):
            chosen[t.index] = (bits, n_values)
    return chosen


def compress_spec(tensor_bits: Dict[int, Tuple[int, int]]):
    """tflite-micro compression spec: per-channel LUT along the quantized axis (axis 0 for
    conv/FC weights, 3 for depthwise); per-tensor mode is never emitted (it decodes wrongly)."""
    from tflite_micro.tensorflow.lite.micro.compression import spec as cspec
    specs = []
    for idx, (bits, axis) in sorted(tensor_bits.items()):
        specs.append(cspec.Tensor(subgraph=0, tensor=idx, compression=[
            cspec.LookUpTableCompression(index_bitwidth=bits, mode=cspec.PerChannel(axis=axis))]))
    return specs


def compress_model(model_bytes: bytes, tensor_bits: Dict[int, Tuple[int, int]]) -> bytes:
    """Run tflite-micro's LUT compressor (per-channel only) and canonicalise the result."""
    import contextlib
    import io
    import warnings
    from tflite_micro.tensorflow.lite.micro.compression import compress
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        out = compress(model_bytes, compress_spec(tensor_bits))
    return canonicalize(bytes(out))

