"""TFLite-Micro flash and arena of an int8 export, computed from its op plan.

- Flash (``estimate_flash``): the plan serialised exactly as the exporter serialises a converted
  model (``flatbuffer.canonicalize``), with placeholder weights of the right sizes; LUT
  compression simulated by running tflite-micro's own compressor on placeholder weights with the
  requested number of values per channel. The figure is the size of the file.
- Arena (``estimate_arena``): head = TFLM's GreedyMemoryPlanner re-implemented
  (micro/memory_planner/greedy_memory_planner.cc: buffers sorted by size, descending, stable;
  each placed at the first gap between buffers alive at the same time; lifetimes from
  micro_allocation_info.cc; sizes rounded up to 16 bytes), over activations, DECODE outputs and
  kernel scratch buffers. Tail = persistent structs, with per-struct sizes measured on the 64-bit
  host runtime (``benchmarks/tflm_memory.py --calibrate``; see ``PERSISTENT``).

Two arena figures (``estimate_arena(abi=...)``):
- ``abi='arm32'`` (default): ``arena_used_bytes()`` after ``AllocateTensors()`` on a 32-bit
  Cortex-M running TFLM + CMSIS-NN: the head as above with the scratch buffers CMSIS-NN's
  kernels request on a core with the DSP extension, and the tail replayed allocation by
  allocation (``tail_allocations_arm32``: allocator objects, eval tensors, node structs, builtin
  params, each kernel's Init / Prepare data, per-channel multiplier and shift arrays, scratch
  handles, the I/O TfLiteTensors) with sizes probed on the target (``arm32_structs``, generated
  by ``benchmarks/tflm_target.py --probe`` on QEMU M4). Equal to the byte on 29 synthetic and
  7 zoo models (``benchmarks/results/tflm_target_arena.md``).
- ``abi='host64'``: the smallest arena with which TFLM's Python runtime (64-bit host, reference
  kernels) allocates and invokes the model, the figure the exporter measures: per-struct sizes
  fitted on the host (``PERSISTENT``) and the temporaries' peak during AllocateTensors.
Import-light: no torch, no tensorflow.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .compress import compress_model, lut_choice, lut_sizes
from .flatbuffer import canonicalize, pack_aligned, plan_model_t
from .plan import TflOp, TflPlan, lower

ALIGN = 16  # MicroArenaBufferAlignment() (micro/memory_helpers.h) and flatbuffer force_align


def align(n: int, a: int = ALIGN) -> int:
    """`n` rounded up to a multiple of `a`."""
    return -(-n // a) * a


# --------------------------------------------------------------------------------------------
# int4 weights

def with_int4(plan: TflPlan, nodes) -> TflPlan:
    """The plan with the weights of `nodes` stored as TFLite int4 (``int4.py``): packed two
    per byte; a fully-connected filter (and its bias) per-tensor quantized, as TFLM's
    int4 FULLY_CONNECTED requires."""
    if not nodes:
        return plan
    import copy
    p = copy.deepcopy(plan)
    for node in nodes:
        op = p.op_for_node(node)
        if op is None or op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            raise ValueError(f"int4: '{node}' is not a conv, depthwise or fully-connected layer")
        w = p.tensors[op.inputs[1]]
        w.dtype = "int4"
        if op.opcode == "FULLY_CONNECTED":
            w.quant_channels = 1
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                p.tensors[op.inputs[2]].quant_channels = 1
    return p


# --------------------------------------------------------------------------------------------
# Flash

def estimate_flash(graph, *, compression=None, plan: Optional[TflPlan] = None,
                   int4=None) -> dict:
    """Size of the exported .tflite: ``{total_bytes, layers: {node: bytes}, overhead_bytes,
    compressed: [node...]}``.

    ``compression``: {node_name: index_bits} or {node_name: {'bits': b, 'values': n}} (n = the
    largest number of distinct int8 values in one output channel; default 2**bits). Nodes
    where per-channel LUT compression would grow the file are left uncompressed. ``int4``:
    nodes whose weights are stored as int4 (``with_int4``).
    """
    plan = with_int4(plan or lower(graph), int4)
    chosen = lut_choice(plan, compression)
    lut_values = {i: (nv or 2 ** b) for i, (b, nv) in chosen.items()}
    base = canonicalize(pack_aligned(plan_model_t(plan, lut_values)))
    if chosen:
        total = len(compress_model(base, {i: (b, plan.tensors[i].quant_axis)
                                          for i, (b, _) in chosen.items()}))
    else:
        total = len(base)
    layers: Dict[str, int] = {}
    for op in plan.ops:
        b = 0
        for i in op.inputs:
            if i < 0 or not plan.tensors[i].const:
                continue
            t = plan.tensors[i]
            if i in chosen:
                enc, anc = lut_sizes(t, *chosen[i])
                b += align(enc) + align(anc)
            else:
                b += align(t.nbytes)
            b += t.quant_channels * (4 + 8)   # float32 scale + int64 zero point per channel
        layers[op.node] = layers.get(op.node, 0) + b
    return {"total_bytes": total, "layers": layers,
            "overhead_bytes": total - sum(layers.values()),
            "compressed": [plan.tensors[i].node for i in sorted(chosen)]}


# --------------------------------------------------------------------------------------------
# Arena

# Persistent (tail) allocations of the TFLM Python runtime on a 64-bit host. All sizes were
# measured with benchmarks/tflm_memory.py --calibrate (RecordingMicroAllocator categories of
# synthetic single-op models; results in benchmarks/results/tflm_calibration.json); the struct
# names are those micro_allocator.cc / recording_micro_allocator.cc report.
PERSISTENT = {
    "eval_tensor": 24,            # TfLiteEvalTensor, one per tensor of the subgraph
    "node_and_registration": 64,  # NodeAndRegistration, one per operator
    "io_tensor": 64 + 32,         # persistent TfLiteTensor + its quantization, per model input/output
    "buffers_base": 16,           # the two persistent buffers every model had ('Persistent buffer data')
    "fixed": 488,                 # uncategorised tail: allocator objects, subgraph allocations
    "slack_base": 12,             # alignment padding between persistent buffers: base + per op
    "slack_per_op": 4,
}
# Per op: (kernel persistent buffer bytes independent of channels, bytes per output channel
# (int32 output multiplier + shift), builtin-data bytes (TfLite*Params, uncategorised tail)).
OP_PERSISTENT = {
    "CONV_2D": (80, 8, 28), "DEPTHWISE_CONV_2D": (80, 8, 28), "FULLY_CONNECTED": (72, 8, 32),
    "MAX_POOL_2D": (32, 0, 40), "AVERAGE_POOL_2D": (32, 0, 40), "RESHAPE": (0, 0, 40),
    "SOFTMAX": (80, 0, 4), "ADD": (60, 0, 8), "CONCATENATION": (80, 0, 8), "PAD": (56, 0, 0),
    "LOGISTIC": (16, 0, 0), "TANH": (16, 0, 0), "RELU": (16, 0, 0), "RELU6": (16, 0, 0),
    # DECODE: a DecodeStateLUT object (72 B) + 12 B alignment slack, measured on clustered
    # LeNet-5 exports (+8 B per decoded output for the DecodeState* array, decode.cc).
    "TRANSPOSE": (0, 0, 0), "DECODE": (84, 0, 0),
}


# Temporaries while the interpreter allocates (see estimate_arena). Struct sizes of the 64-bit
# host build; the two adjustments were fitted on synthetic MLPs (--calibrate cases mlp2, mlp8).
INIT_TEMP = {"tensor": 64, "quant": 24, "prepare_adjust": -48, "allocation_info": 32,
             "planner_per_buffer": 40, "planning_adjust": -16, "conv_extra": 304}


def _cmsis_scratch(plan: TflPlan, op: TflOp) -> int:
    """Scratch buffer a CMSIS-NN kernel requests in Prepare on a Cortex-M with the DSP
    extension and no MVE (M4, M7, M33), built with GCC: the *_get_buffer_size functions of the
    CMSIS-NN revision TFLM pins (ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c,
    arm_depthwise_conv_get_buffer_sizes_s8.c, PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c,
    FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c), as
    kernels/cmsis_nn/{conv,depthwise_conv,pooling,fully_connected}.cc call them."""
    int4 = plan.tensors[op.inputs[1]].dtype == "int4" if len(op.inputs) > 1 and op.inputs[1] >= 0 else False
    if op.opcode == "CONV_2D":
        w = plan.tensors[op.inputs[1]].shape
        k_h, k_w, c_in = w[1], w[2], w[3]
        if int4:
            # arm_convolve_wrapper_s4_get_buffer_size (arm_convolve_get_buffer_sizes_s4.c,
            # non-MVE): 1x1 -> 0, else 2 * rhs_cols int16 (not rounded up)
            return 0 if (k_h == 1 and k_w == 1) else 2 * k_h * k_w * c_in * 2
        if k_h == 1 and k_w == 1:
            # arm_nn_is_convolve_1x1 (SAME and VALID both pad 0): the 1x1 kernels; the fast one's
            # DSP buffer is 0 outside Arm Compiler 6, the strided one needs none
            return 0
        # arm_convolve_s8_get_buffer_size, non-MVE: 2 * rhs_cols rounded up to 4, int16 each
        # (arm_convolve_1_x_n_s8 uses the same size without MVE)
        rhs = k_h * k_w * c_in
        return 2 * (-(-rhs // 4) * 4) * 2
    if op.opcode == "DEPTHWISE_CONV_2D":
        w = plan.tensors[op.inputs[1]].shape
        k_h, k_w, c_out = w[1], w[2], w[3]
        c_in = plan.tensors[op.inputs[0]].shape[-1]
        if c_in != c_out:
            return 0   # channel multiplier > 1: the generic kernel, no buffer
        if int4:
            # arm_depthwise_conv_wrapper_s4_get_buffer_size: the opt buffer, 3x3 included
            return c_in * k_h * k_w * 2
        if k_h == 3 and k_w == 3:
            return 0   # arm_depthwise_conv_3x3_s8 (padding <= 1 always holds for 3x3)
        # arm_depthwise_conv_s8_opt_get_buffer_size_dsp: ch * k_w * k_h * sizeof(int16)
        return c_in * k_h * k_w * 2
    if op.opcode == "AVERAGE_POOL_2D":
        # arm_avgpool_s8_get_buffer_size_dsp: ch * sizeof(int32)
        return plan.tensors[op.inputs[0]].shape[-1] * 4
    # FULLY_CONNECTED: arm_fully_connected_s8_get_buffer_size_dsp is 0 (2-D outputs, so not
    # the conv-1x1 path); MAX_POOL_2D, ADD, PAD, SOFTMAX, activations: no buffer
    return 0


def _cmsis_scratch_mve(plan: TflPlan, op: TflOp) -> int:
    """Scratch buffer a CMSIS-NN kernel requests in Prepare on a Cortex-M with MVE (the M55):
    the *_get_buffer_size_mve functions of the same sources as ``_cmsis_scratch`` (int8
    weights; int4 layers keep the DSP sizes, not measured on MVE)."""
    int4 = plan.tensors[op.inputs[1]].dtype == "int4" if len(op.inputs) > 1 and op.inputs[1] >= 0 else False
    if int4 or op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"):
        return _cmsis_scratch(plan, op)
    if op.opcode in ("AVERAGE_POOL_2D", "FULLY_CONNECTED"):
        # arm_avgpool_s8_get_buffer_size_mve: 0; fully connected: persistent kernel sums instead
        return 0
    w = plan.tensors[op.inputs[1]].shape
    k_h, k_w = w[1], w[2]
    if op.opcode == "CONV_2D":
        if k_h == 1 and k_w == 1:
            return 0             # 1x1 (fast or strided): no buffer
        # arm_convolve_s8_get_buffer_size_mve: 4 im2col columns of in_c * kh * kw rounded up
        # to 16 int8 lanes (arm_convolve_1_x_n_s8 needs an input height of 1: not emitted)
        return 4 * -(-(k_h * k_w * w[3]) // 16) * 16
    c_out = w[3]
    c_in = plan.tensors[op.inputs[0]].shape[-1]
    if c_in != c_out:
        return 0
    # arm_depthwise_conv_s8_opt_get_buffer_size_mve: 4 * CH_IN_BLOCK_MVE (124) * kw * kh,
    # 3x3 included (the 3x3 kernel is DSP-only)
    return 4 * 124 * k_w * k_h


def _cmsis_scratch_v6m(plan: TflPlan, op: TflOp) -> int:
    """Scratch buffer a CMSIS-NN kernel requests in Prepare on a core without the DSP extension
    (the Armv6-M Cortex-M0+): the same *_get_buffer_size functions compiled without
    ARM_MATH_DSP. Conv keeps its im2col buffer (arm_convolve_wrapper_s8_get_buffer_size, plain
    branch: the same sizes); the depthwise opt kernel (arm_depthwise_conv_s8_opt_get_buffer_size)
    and the average pool (arm_avgpool_s8_get_buffer_size) request none, as their plain paths
    work without one. int4 layers keep the DSP sizes (not measured on Armv6-M)."""
    int4 = plan.tensors[op.inputs[1]].dtype == "int4" if len(op.inputs) > 1 and op.inputs[1] >= 0 else False
    if not int4 and op.opcode in ("DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
        return 0
    return _cmsis_scratch(plan, op)


def _reference_scratch(plan: TflPlan, op: TflOp) -> int:
    """Scratch TFLM's reference kernels request: an int4 filter unpacked to int8, one byte per
    weight (kernels/conv_common.cc, depthwise_conv_common.cc, fully_connected.cc Prepare)."""
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        w = plan.tensors[op.inputs[1]]
        if w.dtype == "int4":
            n = 1
            for d in w.shape:
                n *= d
            return n
    return 0


def greedy_plan(buffers: Sequence[Tuple[int, int, int]]) -> Tuple[int, List[int]]:
    """TFLM GreedyMemoryPlanner over (size, first_used, last_used): (arena bytes, offsets)."""
    # CalculateOffsetsIfNeeded fills the online buffers from the tail of its sort array, then
    # bubble-sorts by size (stable): equal sizes end up in reverse index order.
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], -i))
    placed: List[Tuple[int, int]] = []   # (offset, id) sorted by offset
    offsets = [0] * len(buffers)
    for bid in order:
        size, first, last = buffers[bid]
        cand = 0
        for off, other in placed:
            osz, ofirst, olast = buffers[other]
            if ofirst > last or first > olast:
                continue
            if off - cand >= size:
                break
            cand = max(cand, off + osz)
        offsets[bid] = cand
        placed.append((cand, bid))
        placed.sort(key=lambda p: p[0])
    total = max((offsets[i] + buffers[i][0] for i in range(len(buffers))), default=0)
    return total, offsets


def _compressed_plan(plan: TflPlan, chosen) -> List[TflOp]:
    """Op list with one DECODE op inserted before each consumer of compressed tensors
    (mirrors compression/decode_insert.py)."""
    ops: List[TflOp] = []
    for op in plan.ops:
        comp = [i for i in op.inputs if i in chosen]
        if comp:
            d = TflOp("DECODE", op.node, [], [], {}, [], {"decodes": comp})
            ops.append(d)
        ops.append(op)
    return ops


def _head(plan: TflPlan, ops: List[TflOp], scratch_fn, alt_decompression: bool):
    """Non-persistent (head) buffers and TFLM's plan of them: (entries, scratch, head bytes,
    decode_bytes, n_tensors with DECODE's tensors)."""
    n_tensors = len(plan.tensors)
    # Buffers in TFLM's order: tensors by index (the canonical order: inputs, then each op's
    # outputs in op order, DECODE outputs included), then scratch requests in op order.
    # Lifetimes as micro_allocation_info.cc marks them: inputs from scope 0, op i at scope i+1,
    # outputs to the last scope.
    entries: List[list] = []           # [size, first, last, node, kind]
    by_tensor: Dict[int, list] = {}
    for t in plan.inputs:
        by_tensor[t] = [align(plan.tensors[t].nbytes), 0, 0, plan.tensors[t].node, "act"]
        entries.append(by_tensor[t])
    scratch: List[list] = []
    step = 0
    for op in ops:
        step += 1
        if op.opcode == "DECODE":
            n_tensors += 2 * len(op.attrs["decodes"])   # ancillary + decoded output per input
            for i in op.attrs["decodes"]:
                # decoded copy, alive from this DECODE to its consumer, the next op
                entries.append([align(plan.tensors[i].nbytes), step, step + 1, op.node, "decode"])
            continue
        for i in op.inputs:
            if i >= 0 and i in by_tensor:
                by_tensor[i][2] = step
        for o in op.outputs:
            by_tensor[o] = [align(plan.tensors[o].nbytes), step, step, plan.tensors[o].node, "act"]
            entries.append(by_tensor[o])
        if scratch_fn is not None:
            s = scratch_fn(plan, op)
            if s:
                scratch.append([align(s), step, step, op.node, "scratch"])
    for t in plan.outputs:
        by_tensor[t][2] = step
    decode_bytes = 0
    if alt_decompression:
        decode_bytes = max((e[0] for e in entries if e[4] == "decode"), default=0)
        entries = [e for e in entries if e[4] != "decode"]
    all_entries = entries + scratch
    buffers = [(e[0], e[1], e[2]) for e in all_entries]
    head, offsets = greedy_plan(buffers)
    head = align(head)

    return entries, scratch, all_entries, head, decode_bytes, n_tensors


def estimate_arena(graph, *, compression=None, runtime: Optional[str] = None,
                   alt_decompression: bool = False, plan: Optional[TflPlan] = None,
                   abi: str = "arm32", int4=None, isa: str = "dsp") -> dict:
    """Tensor arena the TFLM interpreter needs: ``{total_bytes, activations_bytes,
    scratch_bytes, persistent_bytes, decode_bytes, layers: {node: {...}}}``.

    ``abi``: 'arm32' (default): ``arena_used_bytes()`` after ``AllocateTensors()`` on a 32-bit
    Cortex-M (TFLM's persistent allocations replayed with the struct sizes probed on the
    target, ``arm32_structs``); 'host64': the smallest arena with which TFLM's Python runtime
    (64-bit host) allocates and invokes the model (what the exporter measures).
    ``runtime``: 'tflm-cmsis-nn' (CMSIS-NN scratch buffers for a core with the DSP extension;
    the default for arm32) or 'tflm-reference' (no scratch; the default for host64, the kernels
    of TFLM's Python runtime). ``alt_decompression``: DECODE outputs go to a separate
    buffer (reported as decode_bytes, not in the arena). ``isa`` (arm32, tflm-cmsis-nn):
    'dsp' (M4 / M7 / M33), 'v6m' (the M0+: CMSIS-NN's plain-C scratch sizes) or 'mve' (the
    M55: CMSIS-NN's MVE scratch sizes and the fully-connected kernel sums TFLM keeps in
    persistent memory).
    """
    plan = with_int4(plan or lower(graph), int4)
    if abi == "arm32":
        return estimate_arena_arm32(graph, compression=compression, runtime=runtime,
                                    alt_decompression=alt_decompression, plan=plan, isa=isa)
    if abi != "host64":
        raise ValueError(f"abi must be 'arm32' or 'host64', not {abi!r}")
    plan = plan or lower(graph)
    if runtime is None:
        runtime = "tflm-reference"
    chosen = lut_choice(plan, compression)
    ops = _compressed_plan(plan, chosen)
    entries, scratch, all_entries, head, decode_bytes, n_tensors = _head(
        plan, ops, _cmsis_scratch if runtime == "tflm-cmsis-nn" else _reference_scratch,
        alt_decompression)

    n_ops = len(ops)
    p = PERSISTENT
    n_io = len(set(plan.inputs + plan.outputs))
    persistent = (align(p["eval_tensor"] * n_tensors, 8) + p["node_and_registration"] * n_ops
                  + p["io_tensor"] * n_io + p["buffers_base"] + p["fixed"] + p["slack_base"])
    layers: Dict[str, dict] = {}
    for op in ops:
        fixed, per_ch, builtin = OP_PERSISTENT.get(op.opcode, (0, 0, 0))
        pb = fixed + builtin
        if per_ch:
            ch = plan.tensors[op.inputs[1]].quant_channels
            pb += 2 * align(per_ch // 2 * ch)     # two int32 arrays, each 16-byte aligned
        if fixed:
            pb += p["slack_per_op"]
        if op.opcode == "DECODE":
            pb += 8 * len(op.attrs["decodes"])    # DecodeState* per output (decode.cc)
        persistent += pb
        L = layers.setdefault(op.node, {"op": [], "activation_bytes": 0, "scratch_bytes": 0,
                                        "decode_bytes": 0, "persistent_bytes": 0})
        L["op"].append(op.opcode)
        L["persistent_bytes"] += pb
        if op.opcode != "DECODE":
            L["activation_bytes"] += sum(plan.tensors[o].nbytes for o in op.outputs)
    # Peak during AllocateTensors (measured minimum arenas exceed the final head + tail on
    # models with small activations and wide per-channel layers):
    # - each op's Prepare holds temp TfLiteTensors for its inputs/outputs (64 B each on a
    #   64-bit host, plus TfLiteAffineQuantization 24 B + int32 zero-point array 4 + 4C B)
    #   while the per-channel arrays of later ops are not yet allocated;
    # - planning holds an AllocationInfo (32 B) per tensor and 40 B of planner state per
    #   planned buffer (greedy_memory_planner.h per_buffer_size()).
    # Constants: benchmarks/tflm_memory.py --calibrate (cases mlp2, mlp8: minimum arena found
    # by bisection in child processes).
    later_arrays = [0] * (len(ops) + 1)
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        arr = 0
        if OP_PERSISTENT.get(op.opcode, (0, 0, 0))[1]:
            arr = 2 * align(4 * plan.tensors[op.inputs[1]].quant_channels)
        later_arrays[k] = later_arrays[k + 1] + arr
    prepare_peak = 0
    for k, op in enumerate(ops):
        ids = op.attrs["decodes"] if op.opcode == "DECODE" else [i for i in op.inputs + op.outputs if i >= 0]
        temp = 0
        for i in ids:
            t = plan.tensors[i]
            temp += INIT_TEMP["tensor"] + (INIT_TEMP["quant"] + 4 + 4 * t.quant_channels
                                           if t.quant_channels else 0)
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            # conv Prepare holds more temporaries than its four tensors (fitted on the
            # conv_c*/dwconv_c* calibration cases: 304 B + 4 B per output channel)
            temp += INIT_TEMP["conv_extra"] + 4 * plan.tensors[op.inputs[1]].quant_channels
        prepare_peak = max(prepare_peak, persistent - later_arrays[k + 1] + temp
                           + INIT_TEMP["prepare_adjust"])
    n_planned = len(all_entries)
    planning_peak = (persistent + INIT_TEMP["allocation_info"] * n_tensors
                     + INIT_TEMP["planner_per_buffer"] * n_planned + INIT_TEMP["planning_adjust"])
    init_peak = align(max(prepare_peak, planning_peak))
    return {"total_bytes": max(head + persistent, init_peak),
            "init_peak_bytes": init_peak,
            **_head_split(layers, entries, all_entries, scratch, head, persistent, decode_bytes,
                          alt_decompression),
            "runtime": runtime, "abi": "host64",
            "layers": layers}


# --------------------------------------------------------------------------------------------
# Arena on the 32-bit target

# Ops whose parser allocates builtin data, and its struct (core/api/flatbuffer_conversions.cc:
# Parse* call SafeBuiltinDataAllocator::Allocate<T>(); ParsePad, ParseRelu, ParseRelu6,
# ParseLogistic, ParseTanh, ParseTranspose allocate nothing).
BUILTIN_PARAMS = {"CONV_2D": "TfLiteConvParams", "DEPTHWISE_CONV_2D": "TfLiteDepthwiseConvParams",
                  "FULLY_CONNECTED": "TfLiteFullyConnectedParams", "MAX_POOL_2D": "TfLitePoolParams",
                  "AVERAGE_POOL_2D": "TfLitePoolParams", "RESHAPE": "TfLiteReshapeParams",
                  "SOFTMAX": "TfLiteSoftmaxParams", "ADD": "TfLiteAddParams",
                  "CONCATENATION": "TfLiteConcatenationParams"}


def _per_channel_arrays(plan: TflPlan, op: TflOp) -> int:
    """Output channels of the int32 multiplier and shift arrays an op's Prepare allocates
    (kernels/cmsis_nn/conv.cc, depthwise_conv.cc: always for int8; fully_connected_common.cc:
    only for a per-channel quantized filter); 0 if none."""
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return plan.tensors[op.inputs[1]].shape[0 if op.opcode == "CONV_2D" else 3]
    if op.opcode == "FULLY_CONNECTED":
        q = plan.tensors[op.inputs[1]].quant_channels
        return q if q > 1 else 0
    return 0


def tail_allocations_arm32(plan: TflPlan, ops: Sequence[TflOp], n_tensors: int,
                           n_scratch: int, mve: bool = False,
                           reference: bool = False) -> List[Tuple[str, str, int, int]]:
    """TFLM's persistent (tail) allocations on the 32-bit target, in the order
    MicroInterpreter(model, resolver, arena, size) + AllocateTensors() makes them:
    [(node or '', what, bytes, alignment)]. Sources: micro_allocator.cc (Create,
    StartModelAllocation, AllocateTfLiteEvalTensors, AllocateNodeAndRegistrations,
    AllocateScratchBufferHandles, AllocatePersistentTfLiteTensor), micro_interpreter.cc
    (PrepareNodeAndRegistrationDataFromFlatbuffer, AllocateTensors), the kernels' Init /
    Prepare; sizes: ``arm32_structs`` (probed on the target). ``reference``: TFLM's reference
    kernels, whose Init allocates the reference OpData (``arm32_reference``: sizeof on the
    target's compiler), smaller than the CMSIS-NN kernels' wrappers of it."""
    from . import arm32_structs as A
    from .arm32_reference import REFERENCE_KERNEL_INIT
    st = A.STRUCTS
    seq: List[Tuple[str, str, int, int]] = []

    def add(node, what):
        seq.append((node, what, *st[what]))
    for what in ("SingleArenaBufferAllocator", "GreedyMemoryPlanner", "MicroAllocator"):
        add("", what)
    seq.append(("", "MicroBuiltinDataAllocator", *A.BUILTIN_DATA_ALLOCATOR))
    add("", "SubgraphAllocations")
    sz, a = st["TfLiteEvalTensor"]
    seq.append(("", "TfLiteEvalTensor[]", sz * n_tensors, a))
    sz, a = st["NodeAndRegistration"]
    seq.append(("", "NodeAndRegistration[]", sz * len(ops), a))
    for op in ops:
        if op.opcode in BUILTIN_PARAMS:
            add(op.node, BUILTIN_PARAMS[op.opcode])
    for op in ops:                                   # MicroInterpreterGraph::InitSubgraphs
        init = (REFERENCE_KERNEL_INIT.get(op.opcode) if reference else None) or \
            A.KERNEL_INIT.get(op.opcode)
        if init is None:
            # an op kind the calibration models did not exercise standalone (RELU, RELU6,
            # TRANSPOSE, DECODE): the 64-bit host's kernel data, an upper bound
            init = (OP_PERSISTENT.get(op.opcode, (0, 0, 0))[0],)
        for b in init:
            seq.append((op.node, op.opcode + " init", b, ALIGN))
    for op in ops:                                   # MicroInterpreterGraph::PrepareSubgraphs
        ch = _per_channel_arrays(plan, op)
        if ch:
            seq.append((op.node, op.opcode + " output multipliers", 4 * ch, ALIGN))
            seq.append((op.node, op.opcode + " output shifts", 4 * ch, ALIGN))
        for b in A.KERNEL_PREPARE.get(op.opcode, ()):
            seq.append((op.node, op.opcode + " prepare", b, ALIGN))
        if mve and op.opcode == "FULLY_CONNECTED" and plan.tensors[op.inputs[1]].dtype != "int4":
            # kernels/cmsis_nn/fully_connected.cc Prepare (KERNELS_OPTIMIZED_FOR_SPEED, TFLM's
            # default): the MVE buffer (arm_fully_connected_s8_get_buffer_size_mve, one int32
            # per output) becomes persistent kernel sums, no scratch
            seq.append((op.node, "FULLY_CONNECTED kernel sums",
                        4 * plan.tensors[op.outputs[0]].shape[-1], ALIGN))
        if op.opcode == "DECODE":
            seq.append((op.node, "DECODE prepare", 4 * len(op.attrs["decodes"]), ALIGN))
    if n_scratch:
        sz, a = st["ScratchBufferHandle"]
        seq.append(("", "ScratchBufferHandle[]", sz * n_scratch, a))
    for group in (plan.inputs, plan.outputs):        # MicroInterpreter::AllocateTensors
        seq.append(("", "TfLiteTensor*[]", st["TfLiteTensor*"][0] * len(group), ALIGN))
        for t in group:
            add(plan.tensors[t].node, "TfLiteTensor")
            ch = plan.tensors[t].quant_channels
            if ch:
                add(plan.tensors[t].node, "TfLiteAffineQuantization")
                sz, a = st["TfLiteIntArray"]
                seq.append((plan.tensors[t].node, "zero points", sz + 4 * ch, a))
    return seq


def replay_tail(seq) -> int:
    """Bytes the tail takes: each allocation placed below the previous one, aligned down
    (SingleArenaBufferAllocator::AllocatePersistentBuffer), from a 16-byte-aligned arena end."""
    t = 0
    for _, _, size, al in seq:
        t = align(t + size, al)
    return t


def _head_split(layers: dict, entries, all_entries, scratch, head: int, persistent: int,
                decode_bytes: int, alt_decompression: bool) -> dict:
    """Both ABIs' split of the arena: each layer's scratch and decode bytes, and the peak bytes
    attributable to scratch and to decoded weights (the head re-planned without them)."""
    for e in all_entries:
        if e[4] in ("scratch", "decode"):
            layers[e[3]][e[4] + "_bytes"] += e[0]
    head_no_scratch = align(greedy_plan([(e[0], e[1], e[2]) for e in entries])[0]) if scratch else head
    acts = [(e[0], e[1], e[2]) for e in entries if e[4] == "act"]
    head_no_decode = align(greedy_plan(acts)[0]) if len(acts) != len(entries) else head_no_scratch
    return {"activations_bytes": head_no_decode,
            "decode_bytes": (head_no_scratch - head_no_decode) if not alt_decompression else decode_bytes,
            "scratch_bytes": head - head_no_scratch,
            "persistent_bytes": persistent,
            "head_bytes": head}


def estimate_arena_arm32(graph, *, compression=None, runtime: Optional[str] = None,
                         alt_decompression: bool = False, plan: Optional[TflPlan] = None,
                         isa: str = "dsp") -> dict:
    """``arena_used_bytes()`` after ``AllocateTensors()`` on a 32-bit Cortex-M: head = the
    GreedyMemoryPlanner's plan of activations and CMSIS-NN scratch buffers (16-byte aligned);
    tail = ``tail_allocations_arm32`` replayed. See ``estimate_arena``."""
    runtime = runtime or "tflm-cmsis-nn"
    plan = plan or lower(graph)
    chosen = lut_choice(plan, compression)
    ops = _compressed_plan(plan, chosen)
    mve = isa == "mve" and runtime == "tflm-cmsis-nn"
    scratch_fn = None
    if runtime == "tflm-cmsis-nn":
        scratch_fn = {"mve": _cmsis_scratch_mve, "v6m": _cmsis_scratch_v6m}.get(isa, _cmsis_scratch)
    entries, scratch, all_entries, head, decode_bytes, n_tensors = _head(
        plan, ops, scratch_fn, alt_decompression)
    seq = tail_allocations_arm32(plan, ops, n_tensors, len(scratch), mve=mve,
                                 reference=runtime == "tflm-reference")
    persistent = replay_tail(seq)
    layers: Dict[str, dict] = {}
    for op in ops:
        L = layers.setdefault(op.node, {"op": [], "activation_bytes": 0, "scratch_bytes": 0,
                                        "decode_bytes": 0, "persistent_bytes": 0})
        L["op"].append(op.opcode)
        if op.opcode != "DECODE":
            L["activation_bytes"] += sum(plan.tensors[o].nbytes for o in op.outputs)
    for node, _, size, _ in seq:
        if node in layers:
            layers[node]["persistent_bytes"] += size
    # On an MVE core AllocateTensors needs more than arena_used_bytes() (fc_autoencoder on
    # QEMU AN547: 22,644 B used, init faults in TFLM's planner with 26,624 B, runs with 28,672);
    # that init peak is not modelled: the fully-connected kernel sums once more bound it on the
    # zoo, and the export sizes the arena with it (init_headroom_bytes)
    headroom = sum(size for _, what, size, _ in seq if what == "FULLY_CONNECTED kernel sums")
    return {"total_bytes": head + persistent, "init_headroom_bytes": headroom,
            **_head_split(layers, entries, all_entries, scratch, head, persistent, decode_bytes,
                          alt_decompression),
            "runtime": runtime, "abi": "arm32",
            "layers": layers}
