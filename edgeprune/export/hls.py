"""`edgeprune export hls`: an hls4ml (Vitis HLS, io_stream) dataflow project with a bit-exact
C-simulation, plus the Vivado flow from the generated IP to a bitstream.

Pipeline: float model -> Brevitas QAT (edgeprune.quant) -> QONNX (verified) -> hls4ml's QONNX front
end. hls4ml does the HLS generation; edgeprune only sets its configuration:

* precision: every Quant node has a power-of-two scale and zero point 0, so hls4ml turns each into
  an ``ap_fixed`` type; all other types are ``auto`` (hls4ml's ``infer_precision`` widens
  accumulators so nothing overflows) and the input is ``ufixed<8,8>`` (uint8 pixels). The
  arithmetic is integer and exact, which the C-simulation checks on real test images.
* ReuseFactor: from edgeprune's FPGA cost model (``auto_fold``): the FINN folding's weight-memory
  depth MW*MH/(PE*SIMD) is the number of cycles each multiplier is reused per output vector, which
  is hls4ml's ReuseFactor for the same multiplier count. hls4ml only accepts some reuse factors;
  we take the largest valid one not above the FINN figure (throughput never below the target).
* Strategy: ``Latency`` when the layer's weight matrix has at most `LATENCY_MAX_WEIGHTS` entries
  (weights become constants, so HLS removes every multiplier whose weight is 0), else hls4ml's
  ``Resource_Unrolled`` for a pruned layer (at least `UNROLLED_MIN_ZERO_FRACTION` zero weights:
  generated per-multiplier code that drops the multipliers of zero weights, which the plain
  ``Resource`` strategy cannot) and ``Resource`` otherwise (weights in memories, a loop; its
  C-simulation builds in seconds where the unrolled code of a large layer takes g++ minutes).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import EdgepruneError, first_line
from ..artifacts import write_json
from ..layergraph import OpKind
from ..quant.fpga_prepare import Prepared, quant_summary
from .fpga_common import fpga_export

REPO = Path(__file__).resolve().parents[2]
HLS_TEMPLATES = REPO / "hls"
PROJECT_NAME = "edgeprune_net"
# Above this many weights, hls4ml's Latency strategy (weights fully partitioned into registers,
# every product unrolled) is not synthesizable in practice: hls4ml's documentation recommends
# the Resource strategy for large layers, and Vivado/Vitis HLS stops unrolling at 4096
# (XFORM 203-504 "Stop unrolling loop ... exceeds the threshold"). Rule of thumb, not a
# measurement on this machine.
LATENCY_MAX_WEIGHTS = 4096
# Large layers use hls4ml's Resource_Unrolled kernel only where it pays: it differs from the plain
# Resource kernel by dropping the multipliers of zero weights (multiplier_limit = n_in*n_out/RF -
# n_zeros/RF in hls4ml's dense config), and it costs one generated C++ statement per non-zero
# weight (lenet300100's 784x300 layer: a 41 MB header whose g++ -O3 C-simulation build did not
# finish in 14 min here; benchmarks/results/fpga_zoo.md) plus hls4ml's own warning that the
# unrolled kernel "may have unexpected II in Vitis backend" (vitis/passes/feature_check.py).
# edgeprune's choice, not a measured optimum: Resource_Unrolled when zeros remove at least this
# fraction of the layer's multipliers (a pruned layer), else Resource. 1-bit weights are never 0.
UNROLLED_MIN_ZERO_FRACTION = 0.25
HLS_BACKEND = "Vitis"


class HlsExportError(EdgepruneError, RuntimeError):
    pass


@dataclass
class HlsLayerPlan:
    node: str               # layer-graph node
    onnx_name: str          # hls4ml config key (ONNX node name after channels-last)
    kind: str
    n_in: int
    n_out: int
    out_positions: int      # output pixels (1 for dense)
    in_positions: int
    finn_reuse: int         # MW*MH/(PE*SIMD) of the FINN folding
    reuse_factor: int
    strategy: str
    zero_weights: int
    weights: int

    @property
    def multipliers(self) -> int:
        return math.ceil(self.n_in * self.n_out / self.reuse_factor)

    @property
    def cycles(self) -> int:
        """Cycles per frame: io_stream emits one output position every ReuseFactor cycles
        (II = ReuseFactor) and spends one cycle on each input position that completes no window.
        edgeprune's estimate from hls4ml's pipelining, not a synthesis report."""
        return self.out_positions * self.reuse_factor + max(0, self.in_positions - self.out_positions)

    def to_dict(self) -> Dict[str, Any]:
        zero_dropped = self.strategy in ("Latency", "Resource_Unrolled")
        return {"node": self.node, "hls4ml_layer": self.onnx_name, "kind": self.kind,
                "n_in": self.n_in, "n_out": self.n_out, "reuse_factor": self.reuse_factor,
                "finn_equivalent_reuse": self.finn_reuse, "strategy": self.strategy,
                "multipliers": self.multipliers, "cycles": self.cycles,
                "weights": self.weights, "zero_weights": self.zero_weights,
                "zero_multipliers_removed_by_hls": zero_dropped}


def _valid_reuse(backend, n_in: int, n_out: int, want: int, strategy: str) -> int:
    valid = backend.get_valid_reuse_factors(n_in, n_out)
    if strategy == "Resource_Unrolled" and len(valid) > 1:
        valid = valid[:-1]   # hls4ml excludes the maximum RF for the unrolled codegen
    below = [r for r in valid if r <= want]
    return max(below) if below else min(valid)


def _hw_convs(prep: Prepared):
    """The quantized core's conv/linear modules in core (= ONNX export) order: each compute
    layer, and each average pool's summing all-ones depthwise convolution."""
    rows = [(l.index, l.node, l.kind, tuple(l.weight_shape), False) for l in prep.qnet.layers]
    for s in getattr(prep.qnet, "sum_pools", ()):
        w = prep.qnet.core[s.index].weight
        rows.append((s.index, s.node, OpKind.DWCONV2D, tuple(w.shape), True))
    return sorted(rows)


def _onnx_weight_dims(node, onnx_model) -> Optional[tuple]:
    """Sorted dimensions of a Conv/MatMul node's weight (an initializer, or one behind its
    Quant node); None if it cannot be found."""
    inits = {t.name: tuple(t.dims) for t in onnx_model.graph.initializer}
    producer = {o: n for n in onnx_model.graph.node for o in n.output}
    name = node.input[1]
    if name not in inits and name in producer:
        name = producer[name].input[0]
    return tuple(sorted(inits[name])) if name in inits else None


def _match_onnx_nodes(rows, onnx_nodes, onnx_model) -> list:
    """The ONNX Conv/MatMul node of each module row. The ONNX graph is topologically sorted,
    which need not be module order where the graph branches (ResNet-8's 1x1 shortcut conv can
    come before the block's first 3x3 conv), so each row takes the first unmatched node, in
    graph order, whose weight has the module's dimensions (in any order: MatMul weights are
    transposed); rows of the same shape keep their relative order (data dependence)."""
    dims = [_onnx_weight_dims(n, onnx_model) for n in onnx_nodes]
    if any(d is None for d in dims):
        return list(onnx_nodes)             # weights not found: module order, as exported
    free = list(range(len(onnx_nodes)))
    out = []
    for row in rows:
        want = tuple(sorted(int(d) for d in row[3]))
        j = next((j for j in free if dims[j] == want), None)
        if j is None:
            raise HlsExportError(f"no QONNX conv/matmul node has the weight shape of "
                                 f"'{row[1]}' {tuple(row[3])}")
        free.remove(j)
        out.append(onnx_nodes[j])
    return out


def choose_strategy(kind, n_in: int, n_out: int, finn_rf: int, zeros: int, weights: int) -> str:
    """hls4ml Strategy of one conv/linear layer (before the ReuseFactor check)."""
    if kind == OpKind.DWCONV2D:
        # Depthwise layers (and the summing convs) use the Latency strategy: the one edgeprune
        # has checked bit-exact in C-simulation for them (dscnn).
        return "Latency"
    if n_in * n_out <= LATENCY_MAX_WEIGHTS or finn_rf == 1:
        return "Latency"
    return "Resource_Unrolled" if zeros >= UNROLLED_MIN_ZERO_FRACTION * weights else "Resource"


def plan_layers(prep: Prepared, folding, onnx_model) -> List[HlsLayerPlan]:
    """One plan per conv/linear module, matching ONNX Conv/MatMul nodes to them in order."""
    import hls4ml

    backend = hls4ml.backends.get_backend(HLS_BACKEND)
    onnx_nodes = [n for n in onnx_model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    rows = _hw_convs(prep)
    if len(onnx_nodes) != len(rows):
        raise HlsExportError(f"QONNX has {len(onnx_nodes)} conv/matmul nodes, the model "
                             f"{len(rows)} conv/linear modules")
    plans = []
    for (index, node, kind, wshape, is_sum), on in zip(rows, _match_onnx_nodes(rows, onnx_nodes,
                                                                              onnx_model)):
        gnode = prep.graph[node]
        w = prep.qnet.core[index].weight.detach()
        zeros, total = int((w == 0).sum()), int(w.numel())
        if kind in (OpKind.CONV2D, OpKind.DWCONV2D):
            cout, cin_g, kh, kw = wshape
            cin = int(gnode.in_shape[0])
            # hls4ml's multiplier count for (depthwise) Conv2D: n_chan*kh*kw x n_filt
            # (FPGABackend.get_layer_mult_size).
            n_in, n_out = cin * kh * kw, cout
            out_pos = int(gnode.out_shape[1] * gnode.out_shape[2])
            in_pos = int(gnode.in_shape[1] * gnode.in_shape[2])
        else:
            n_out, n_in = wshape
            out_pos = in_pos = 1
        mv = [l for l in folding.for_node(node) if l.op_type in ("MVAU_hls", "VVAU_hls")]
        finn_rf = mv[0].hls4ml_reuse_factor if mv else 1
        strategy = choose_strategy(kind, n_in, n_out, finn_rf, zeros, total)
        rf = _valid_reuse(backend, n_in, n_out, finn_rf, strategy)
        if strategy in ("Resource_Unrolled", "Resource") and rf == 1:
            strategy = "Latency"
        plans.append(HlsLayerPlan(node + (":sum" if is_sum else ""), on.name, kind, n_in, n_out,
                                  out_pos, in_pos, finn_rf, rf, strategy, zeros, total))
    return plans


def _channels_last_batch(x: np.ndarray) -> np.ndarray:
    """NCHW images -> NHWC (what the channels-last hls4ml model takes); feature vectors as is."""
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)


def _channels_last(onnx_path: Path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    m, _ = bipolar_weights_to_int2(ModelWrapper(str(onnx_path)))
    m = cleanup_model(m)
    m = m.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
    m = m.transform(GemmToMatMul())
    return cleanup_model(m)


def bipolar_weights_to_int2(model):
    """Rewrite each BipolarQuant on a constant (1-bit weights) into the same +-1 values as
    2-bit narrow signed integers (a Quant with scale 1): bit-exact with QONNX, and hls4ml then
    multiplies with its `weight_ternary` / `data_binary` products, which give -1 for the weight
    +-1 exactly. Kept as 1-bit XNOR types, hls4ml's `both_binary` product returns the XNOR bit
    (0/1) and its dense accumulator sums those bits as 0/1 (popcount P instead of 2P - N), so
    the result would not equal the +-1 dot product. Activations stay BipolarQuant (hls4ml's
    binary_tanh: x >= 0 -> +1, as QONNX)."""
    from onnx import helper

    import onnx.numpy_helper as nph
    changed = 0
    for node in list(model.graph.node):
        if node.op_type != "BipolarQuant":
            continue
        w = model.get_initializer(node.input[0])
        scale = model.get_initializer(node.input[1])
        if w is None:
            continue
        if scale is None or not np.all(np.asarray(scale) == 1.0):
            raise HlsExportError(f"{node.name}: 1-bit weights need a constant scale of 1")
        signs = np.where(np.asarray(w) >= 0, 1.0, -1.0).astype(np.float32)
        base = node.input[0]
        model.set_initializer(base, signs)
        names = []
        for suffix, val in (("scale", np.float32(1.0)), ("zeropt", np.float32(0.0)),
                            ("bitwidth", np.float32(2.0))):
            t = f"{base}_int2_{suffix}"
            model.graph.initializer.append(nph.from_array(np.asarray(val), t))
            model.graph.value_info.append(helper.make_tensor_value_info(t, 1, []))  # FLOAT
            names.append(t)
        q = helper.make_node("Quant", [base] + names, list(node.output), name=node.name + "_int2",
                             domain="qonnx.custom_op.general", signed=1, narrow=1,
                             rounding_mode="ROUND")
        idx = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(idx, q)
        changed += 1
    return model, changed


def clone_precisions(model) -> Dict[str, str]:
    """hls4ml config precision for the ``Clone`` layers that hls4ml (io_stream) inserts where a
    tensor feeds several layers (residual shortcuts, concat branches).

    hls4ml 1.3's ``infer_precision_types`` never resolves an ``auto`` result type on a Clone
    inserted after a Quant merged into its producer: it re-applies to ``clone_<producer>`` forever
    (with ``inplace_stream_flatten``), so the conversion of any residual model hangs. Each Clone
    gets an explicit result type equal to the one hls4ml derives from the Quant node feeding it
    (power-of-two scale 2^e: ``fixed<bits, bits + e>``, hls4ml quant_opt.py), so the copy is
    exact. hls4ml names the Clone ``clone_`` + its producing layer, which is the Quant node or,
    once merged, the node before it (e.g. ``clone_Relu_0``); both names get the entry.
    """
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    uses: Dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    for o in model.graph.output:
        uses[o.name] = uses.get(o.name, 0) + 1
    out: Dict[str, str] = {}
    for tensor, n_uses in uses.items():
        q = producer.get(tensor)
        if n_uses < 2 or q is None or q.op_type != "Quant":
            continue
        if any(i not in inits for i in q.input[1:4]):
            continue
        scale = np.asarray(inits[q.input[1]], dtype=np.float64).ravel()
        bits = int(np.asarray(inits[q.input[3]]).ravel()[0])
        exps = {int(np.frexp(s)[1]) - 1 for s in scale}
        if len(exps) != 1 or any(np.frexp(s)[0] != 0.5 for s in scale):
            raise HlsExportError(f"Quant node '{q.name}' feeds several layers but its scale is "
                                 f"not one power of two; hls4ml cannot type its Clone")
        signed = next((a.i for a in q.attribute if a.name == "signed"), 1)
        prec = f"{'' if signed else 'u'}fixed<{bits},{bits + exps.pop()}>"
        names = [q.name]
        before = producer.get(q.input[0])
        if before is not None:
            names.append(before.name)
        for name in names:
            out["clone_" + name] = prec
    return out


def _wide_accumulator_type(model) -> str:
    """`fixed<32 + F, 32>`: 32 integer bits and F fractional bits, F = the most fractional bits
    of any Quant scale in the graph (every scale is a power of two 2^-F; an accumulator's scale is
    its input's scale times its weights' scale 1 at 1-bit weights, and its bias is quantized to
    that scale, so F fractional bits hold every sum exactly)."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    frac = 0
    for n in model.graph.node:
        if n.op_type not in ("Quant", "BipolarQuant") or n.input[1] not in inits:
            continue
        for sc in np.asarray(inits[n.input[1]], dtype=np.float64).ravel():
            mant, exp = np.frexp(sc)
            if mant != 0.5:
                raise HlsExportError(f"Quant node '{n.name}': scale {sc:g} is not a power of "
                                     f"two")
            frac = max(frac, 1 - int(exp))
    return f"fixed<{32 + frac},32>"


def build_hls4ml(prep: Prepared, folding, target, prj_dir: Path, *, tb_images: int = 10):
    """Convert the QONNX model with hls4ml into `prj_dir`; returns (hls_model, plans, config)."""
    import contextlib
    import io

    import hls4ml

    model = _channels_last(prep.onnx_path)
    plans = plan_layers(prep, folding, model)
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = hls4ml.utils.config.config_from_onnx_model(
            model, granularity="name", backend=HLS_BACKEND, default_precision="auto")
    names = cfg["LayerName"]
    in_name = model.graph.input[0].name
    # uint8 pixels; binarized +-1 pixels (1-bit input) in a 2-bit signed integer
    names.setdefault(in_name, {}).setdefault("Precision", {})["result"] = (
        "fixed<2,2>" if getattr(prep.qnet, "input_bits", 8) == 1 else "ufixed<8,8>")
    for p in plans:
        if p.onnx_name not in names:
            raise HlsExportError(f"hls4ml config has no layer '{p.onnx_name}'")
        names[p.onnx_name]["ReuseFactor"] = p.reuse_factor
        names[p.onnx_name]["Strategy"] = p.strategy
        if p.node.endswith(":sum"):
            # The summing convolution has no bias; hls4ml's depthwise conversion still declares
            # one (zeros) whose type 'auto' would stay unresolved.
            prec = names[p.onnx_name].setdefault("Precision", {})
            if not isinstance(prec, dict):
                prec = names[p.onnx_name]["Precision"] = {}
            prec["bias"] = "ap_int<2>"
    # Layers with 1-bit (bipolar) weights: hls4ml's infer_precision cannot type an accumulator
    # fed by its 1-bit XNOR data type and retries forever (hls4ml 1.x optimizer loop), so
    # they get an explicit accumulator, result and bias: 32 integer bits, wide enough for any sum
    # here (|sum| <= fan-in x 255 + a 16-bit bias < 2^31), and the fractional bits of the finest
    # power-of-two scale in the graph (W1A2 / W2A2: activations and biases at scale 2^-k, whose
    # sums a pure integer type would truncate; W1A1: none).
    acc_t = _wide_accumulator_type(model)
    for p in plans:
        if p.node.endswith(":sum"):
            continue
        layer = next(l for l in prep.qnet.layers if l.node == p.node)
        if layer.bits.w == 1:
            prec = names[p.onnx_name].setdefault("Precision", {})
            if not isinstance(prec, dict):
                prec = names[p.onnx_name]["Precision"] = {}
            # the bias (a 16-bit integer, Int16Bias) likewise: left 'auto' it stays unresolved
            prec["accum"] = prec["result"] = prec["bias"] = acc_t
    if any(l.bits.w == 1 for l in prep.qnet.layers):
        # A dense layer's bias Add followed by a sign activation: hls4ml turns the Add into a
        # BatchNormalization and merges it with the sign into BatchNormalizationQuantizedTanh
        # ("bn_" / "bnbt_bn_" + the Add's name, hls4ml vivado/passes/bn_quant.py), whose accum
        # type 'auto' is never resolved (conversion fails); integer sums, same 32-bit type.
        for n in model.graph.node:
            if n.op_type == "Add":
                names.setdefault("bnbt_bn_" + n.name, {})["Precision"] = {"accum": acc_t}
                names.setdefault("bn_" + n.name, {})["Precision"] = {
                    "result": acc_t, "accum": acc_t}
    for name, prec in clone_precisions(model).items():
        names.setdefault(name, {}).setdefault("Precision", {})["result"] = prec
    cfg["Model"]["Strategy"] = "Latency"
    # hls4ml's own testbench data: the first test images and the Brevitas outputs.
    tb_x = _channels_last_batch(prep.x_test[:tb_images])
    from ..quant.qonnx_io import brevitas_execute
    tb_y = brevitas_execute(prep.qnet, prep.x_test[:tb_images])
    prj_dir.mkdir(parents=True, exist_ok=True)
    np.save(prj_dir.parent / "tb_input.npy", tb_x)
    np.save(prj_dir.parent / "tb_output.npy", tb_y)
    with contextlib.redirect_stdout(io.StringIO()) as log:
        hm = hls4ml.converters.convert_from_onnx_model(
            model, output_dir=str(prj_dir), project_name=PROJECT_NAME, backend=HLS_BACKEND,
            io_type="io_stream", part=target.part, clock_period=round(1000.0 / target.clock_mhz, 3),
            hls_config=cfg, input_data_tb=str(prj_dir.parent / "tb_input.npy"),
            output_data_tb=str(prj_dir.parent / "tb_output.npy"))
    for p in plans:
        layer = next((l for l in hm.get_layers() if l.name.endswith(p.onnx_name)
                      and l.get_attr("reuse_factor") is not None), None)
        if layer is None:
            raise HlsExportError(f"hls4ml model has no layer for '{p.onnx_name}'")
        got = int(layer.get_attr("reuse_factor"))
        if got != p.reuse_factor:
            # hls4ml rewrites 1x1 convolutions as PointwiseConv2D and re-picks a ReuseFactor
            # valid for that kernel (backends/vivado/passes/pointwise.py); the report carries
            # the one the project really has. Any other change is a configuration bug.
            is_pointwise = "pointwise" in type(layer).__name__.lower()
            if not is_pointwise:
                raise HlsExportError(f"hls4ml changed ReuseFactor of {p.onnx_name} from "
                                     f"{p.reuse_factor} to {got}")
            p.reuse_factor = got
        p.strategy = {"latency": "Latency", "resource_unrolled": "Resource_Unrolled",
                      "resource": "Resource"}.get(str(layer.get_attr("strategy")).lower(), p.strategy)
    return hm, plans, cfg, log.getvalue()


@dataclass
class CsimResult:
    images: int
    exact_images: int
    mismatched_outputs: int
    max_abs_diff: float
    argmax_agreement: float
    accuracy_csim: Optional[float]
    compile_s: float
    predict_s: float
    gxx_opt: str = "O3"

    @property
    def bit_exact(self) -> bool:
        return self.exact_images == self.images

    def to_dict(self) -> Dict[str, Any]:
        return {"images": self.images, "exact_images": self.exact_images,
                "mismatched_outputs": self.mismatched_outputs, "bit_exact": self.bit_exact,
                "max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement,
                "accuracy_csim": self.accuracy_csim, "gxx_opt": "-" + self.gxx_opt,
                "compared": "integer-scaled outputs (output / output_scale) of the g++ "
                            "C-simulation vs the Brevitas model"}


# hls4ml's build_lib.sh compiles the C-simulation with this line (hls4ml 1.3,
# templates/vivado/build_lib.sh); `csim_opt` replaces its -O3.
_BUILD_LIB_CFLAGS = 'CFLAGS="-O3 -fPIC"'
CSIM_OPT_LEVELS = ("O0", "O1", "O2", "O3")


def _compile_csim(hm, opt: str) -> None:
    """hm.compile() with g++ at -`opt`. Resource_Unrolled layers are one C++ statement per
    non-zero weight, which g++ -O3 compiles very slowly; the C-simulation's arithmetic is ap_fixed
    integer arithmetic, so the optimisation level cannot change its outputs (and the comparison
    with Brevitas below checks every output anyway). The project keeps hls4ml's own script."""
    if opt not in CSIM_OPT_LEVELS:
        raise HlsExportError(f"csim_opt must be one of {', '.join(CSIM_OPT_LEVELS)}, not '{opt}'")
    if opt == "O3":
        hm.compile()
        return
    hm.write()
    script = Path(hm.config.get_output_dir()) / "build_lib.sh"
    text = script.read_text()
    if _BUILD_LIB_CFLAGS not in text:
        raise HlsExportError(f"hls4ml's build_lib.sh has no '{_BUILD_LIB_CFLAGS}' line to set "
                             f"-{opt} in (hls4ml version change?)")
    script.write_text(text.replace(_BUILD_LIB_CFLAGS, f'CFLAGS="-{opt} -fPIC"'))
    try:
        hm._compile()
    finally:
        script.write_text(text)


def run_csim(hm, prep: Prepared, n_images: int, opt: str = "O3") -> CsimResult:
    """Compile the hls4ml project with g++ (-`opt`) and compare it with Brevitas on test images."""
    import contextlib
    import io

    from ..quant.qonnx_io import brevitas_execute

    t0 = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            _compile_csim(hm, opt)
        except HlsExportError:
            raise
        except Exception as e:  # noqa: BLE001 - g++ failure is reported with its first line
            raise HlsExportError(f"hls4ml C-simulation build failed: "
                                 f"{first_line(e)}") from e
    t1 = time.time()
    n = len(prep.x_test) if n_images <= 0 else min(n_images, len(prep.x_test))
    x = prep.x_test[:n]
    ref = brevitas_execute(prep.qnet, x)
    got = np.asarray(hm.predict(_channels_last_batch(x))).reshape(ref.shape)
    t2 = time.time()
    scale = prep.qnet.output_scale()
    ri, gi = np.round(ref / scale), np.round(got / scale)
    # The reference really is integer-valued at that scale (else the comparison means nothing).
    if not np.all(np.abs(ref / scale - ri) < 1e-6):
        raise HlsExportError("Brevitas outputs are not integers at the output scale")
    eq = ri == gi
    return CsimResult(images=n, exact_images=int(np.all(eq, axis=1).sum()),
                      mismatched_outputs=int((~eq).sum()),
                      max_abs_diff=float(np.max(np.abs(ref - got))) if n else 0.0,
                      argmax_agreement=float(np.mean(ref.argmax(1) == got.argmax(1))) if n else 1.0,
                      accuracy_csim=float(np.mean(got.argmax(1) == prep.y_test[:n])) if n else None,
                      compile_s=t1 - t0, predict_s=t2 - t1, gxx_opt=opt)


# --------------------------------------------------------------------------------------------
# Vivado / Vitis HLS flow from hls/ templates

def _render(name: str, **values) -> str:
    text = (HLS_TEMPLATES / name).read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    if "{{" in text:
        i = text.index("{{")
        raise HlsExportError(f"hls/{name}: unfilled placeholder {text[i:i + 30]!r}")
    return text


def stream_info(hm) -> Dict[str, Any]:
    """Names and sizes of the hls4ml top function's streams, for the AXI wrapper."""
    inp = hm.get_input_variables()[0]
    out = hm.get_output_variables()[0]
    n_in = int(np.prod(inp.shape))
    n_out = int(np.prod(out.shape))
    c_in = int(inp.shape[-1])
    c_out = int(out.shape[-1])
    return {"INPUT_T": inp.type.name, "RESULT_T": out.type.name, "N_IN": n_in, "N_OUT": n_out,
            "C_IN": c_in, "C_OUT": c_out, "IN_PIXELS": n_in // c_in, "OUT_PIXELS": n_out // c_out}


def write_vivado_flow(dst: Path, hm, target, prep: Prepared, tb_images: int = 10) -> List[str]:
    """hls/ templates -> dst/vivado: AXI-stream wrapper, its testbench, Vitis HLS and Vivado tcl."""
    info = stream_info(hm)
    scale = prep.qnet.output_scale()
    ps = "zynq_ultra_ps_e" if str(target.part).lower().startswith(("xczu", "xck")) else \
        "processing_system7"
    values = dict(PROJECT=PROJECT_NAME, PART=target.part, CLOCK_NS=f"{1000.0 / target.clock_mhz:g}",
                  CLOCK_MHZ=f"{target.clock_mhz:g}", BOARD=target.name, PS_IP=ps,
                  BOARD_PART=target.get("board_part", ""), OUTPUT_SHIFT=-int(round(math.log2(scale))),
                  **info)
    vdir = dst / "vivado"
    vdir.mkdir(parents=True, exist_ok=True)
    files = {"edgeprune_axi.cpp": "edgeprune_axi.cpp.in", "edgeprune_axi.h": "edgeprune_axi.h.in",
             "edgeprune_axi_tb.cpp": "edgeprune_axi_tb.cpp.in",
             "build_ip.tcl": "build_ip.tcl.in", "block_design.tcl": "block_design.tcl.in",
             "run_vivado.sh": "run_vivado.sh.in"}
    for out_name, tpl in files.items():
        (vdir / out_name).write_text(_render(tpl, **values))
    os.chmod(vdir / "run_vivado.sh", 0o755)
    # Testbench data: pixels and the expected integer outputs (output / output_scale).
    from ..quant.qonnx_io import brevitas_execute
    x = prep.x_test[:tb_images]
    y = np.round(brevitas_execute(prep.qnet, x) / scale).astype(np.int64)
    (vdir / "tb_pixels.txt").write_text(
        "\n".join(" ".join(str(int(v)) for v in img.ravel())
                  for img in _channels_last_batch(x)) + "\n")
    (vdir / "tb_expected.txt").write_text("\n".join(" ".join(str(int(v)) for v in row)
                                                   for row in y) + "\n")
    return sorted(files) + ["tb_pixels.txt", "tb_expected.txt"]


def compile_axi_testbench(vdir: Path, prj_dir: Path, timeout: int = 600) -> Dict[str, Any]:
    """Build and run the AXI wrapper's C++ testbench with g++ (what Vitis HLS csim would run)."""
    exe = vdir / "tb_axi"
    fw = prj_dir / "firmware"
    cmd = ["g++", "-O1", "-std=c++17", f"-I{fw}", f"-I{fw / 'ap_types'}", f"-I{vdir}",
           f'-DWEIGHTS_DIR="{fw / "weights"}"', str(vdir / "edgeprune_axi.cpp"), str(vdir / "edgeprune_axi_tb.cpp"),
           str(prj_dir / "firmware" / f"{PROJECT_NAME}.cpp"), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise HlsExportError(f"AXI testbench does not compile: {(r.stderr.strip().splitlines() or ['?'])[0]}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, cwd=vdir, timeout=timeout)
    exe.unlink(missing_ok=True)
    return {"returncode": run.returncode, "stdout_tail": run.stdout.strip().splitlines()[-1:]}


# --------------------------------------------------------------------------------------------
# Public entry point

def export_hls(model, deployment, out, *, data, epochs: int = 2, lr: float = 1e-3,
               seed: int = 0, max_steps_per_epoch: Optional[int] = None,
               verify_images: int = 1000, csim_images: int = 1000, axi_testbench: bool = True,
               overwrite: bool = False, progress: bool = True,
               allow_overflow: bool = False, csim_opt: str = "O3",
               prepared=None) -> Dict[str, Any]:
    """Write the hls4ml project for `model` in an FPGA `deployment` (a Deployment, Target or
    target name) into `out`; QAT and verification use `data`. Returns report.json's dict, with
    this run's `csim.build_s` and `csim.predict_s` (seconds; not written: OUT stays
    deterministic).

    Raises HlsExportError if the C-simulation is not bit-exact (the project is not written).
    `csim_opt`: g++ optimisation level of the C-simulation build (hls4ml's default O3).
    `prepared`: an earlier `fpga_prepare.prepare` of `model` at these bits, used instead of a new
    QAT (see `fpga_export`).
    """
    with fpga_export(model, deployment, out, data=data, epochs=epochs, lr=lr, seed=seed,
                     max_steps_per_epoch=max_steps_per_epoch, verify_images=verify_images,
                     overwrite=overwrite, progress=progress, allow_overflow=allow_overflow,
                     prepared=prepared, what="the HLS export") as build:
        tmp, prep, folding, est = build.dir, build.prep, build.folding, build.estimate
        target = build.deployment.target
        prj = tmp / "hls4ml_prj"
        hm, plans, cfg, _ = build_hls4ml(prep, folding, target, prj)
        csim = run_csim(hm, prep, csim_images, csim_opt)
        if not csim.bit_exact:
            raise HlsExportError(
                f"C-simulation is not bit-exact: {csim.images - csim.exact_images} of "
                f"{csim.images} images differ ({csim.mismatched_outputs} outputs, max |diff| "
                f"{csim.max_abs_diff:.3g})")
        write_vivado_flow(tmp, hm, target, prep)
        tb = compile_axi_testbench(tmp / "vivado", prj) if axi_testbench else None
        if tb is not None and tb["returncode"] != 0:
            raise HlsExportError(f"AXI wrapper testbench failed: {tb['stdout_tail']}")
        # Compiled objects are build products of this machine, not part of the project.
        for so in prj.glob("firmware/*.so"):
            so.unlink()
        shutil.rmtree(prj / "__pycache__", ignore_errors=True)
        _make_reproducible(prj, tmp)
        report = _hls_report(prep, folding, est, plans, csim, build.deployment, cfg, tb)
        write_json(tmp / "report.json", report, sort_keys=True)
        write_json(tmp / "hls4ml_config.json", cfg, sort_keys=True)
    # This run's g++ build and C-simulation seconds: returned, not written (same command, same
    # bytes in OUT).
    return dict(report, csim=dict(report["csim"], build_s=round(csim.compile_s, 1),
                                  predict_s=round(csim.predict_s, 1)))


def _make_reproducible(prj: Path, staging: Path) -> None:
    """hls4ml writes the absolute (staging) output path and a random library stamp into its
    project; replace them with paths relative to OUT and a stamp derived from the project's own
    content, so the same export gives the same bytes wherever it is written."""
    import hashlib
    import re
    cfg_file, lib = prj / "hls4ml_config.yml", prj / "build_lib.sh"
    h = hashlib.sha256()
    for f in sorted(prj.rglob("*")):
        if f.is_file() and f not in (cfg_file, lib):
            h.update(str(f.relative_to(prj)).encode())
            h.update(f.read_bytes())
    stamp = h.hexdigest()[:8]
    if cfg_file.is_file():
        text = cfg_file.read_text().replace(str(staging), ".")
        cfg_file.write_text(re.sub(r"(?m)^Stamp: \S+$", f"Stamp: {stamp}", text))
    if lib.is_file():
        lib.write_text(re.sub(r"(?m)^LIB_STAMP=\S+$", f"LIB_STAMP={stamp}", lib.read_text()))


def _hls_report(prep, folding, est, plans, csim, deployment, cfg, tb) -> Dict[str, Any]:
    target = deployment.target
    f_hz = target.clock_mhz * 1e6
    # hls4ml io_stream layers run concurrently (DATAFLOW); the slowest sets the frame rate.
    layer_rows = [p.to_dict() for p in plans]
    ii = max(p.cycles for p in plans)
    lat = sum(p.cycles for p in plans)
    return {
        "export": "hls4ml", "backend": f"hls4ml {_hls4ml_version()} {HLS_BACKEND} io_stream",
        "target": {"name": target.name, "part": target.part, "clock_mhz": target.clock_mhz,
                   "capacity": target.capacity},
        "deployment": deployment.to_dict(),
        "requested_fps": deployment.fps,
        "quantization": quant_summary(prep),
        "csim": csim.to_dict(),
        "axi_testbench": tb,
        "hls4ml_layers": layer_rows,
        "hls4ml_throughput_estimate": {
            "ii_cycles": ii, "fps": f_hz / ii, "latency_cycles_upper_bound": lat,
            "latency_ms_upper_bound": lat / f_hz * 1e3,
            "source": "edgeprune: io_stream II = ReuseFactor per output position; not an HLS "
                      "synthesis report (run vivado/run_vivado.sh for that)"},
        "finn_style_estimate": est.to_dict(),
        "folding": folding.to_dict(),
        "which_model_applies": [
            "cycles: the FINN-style per-layer cycles use the same multiplier count (ReuseFactor "
            "= MW*MH/(PE*SIMD)), so they carry over to this design up to hls4ml's line-buffer "
            "overhead (see hls4ml_layers[].cycles).",
            "LUT/BRAM18/DSP in finn_style_estimate model FINN's MVAU/thresholds/SWG hardware and do "
            "NOT apply to this hls4ml design: hls4ml has no threshold memories (activations are "
            "ap_fixed rounding + saturation), keeps Latency-strategy weights in registers/LUTs, "
            "and drops multipliers whose weight is 0 (Latency and Resource_Unrolled). Use the "
            "Vitis HLS synthesis report (vivado/run_vivado.sh) for this design's resources.",
            "capacity/utilisation limits of the part apply to both exports."],
    }


def _hls4ml_version() -> str:
    import hls4ml
    return getattr(hls4ml, "__version__", "?")
