"""C code generation: the program (``lower``), one weight encoding per layer (``variants``), the
arena plan (``planner``) -> the C sources of a model.

Output (all in one folder, plain C99, no runtime library):
- ``edgeprune_model.h``: ``int edgeprune_invoke(const int8_t *in, int8_t *out)`` and the I/O
  sizes and quantization;
- ``edgeprune_model.c``: the weights and per-layer parameters (``static const``: flash), the arena
  (one ``static`` array: RAM), and the invoke function, one kernel call per layer, bracketed by
  ``EP_LAYER_BEGIN(i)`` / ``EP_LAYER_END(i)`` (empty unless defined, e.g. by a profiler);
- ``ep_config.h`` and the kernel sources the model uses, copied from ``kernels/``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from . import costs, fuse, planner
from .ir import CModelError, Graph
from .lower import Buffer, Program, Step, lower
from .quant import RQ_ACC_LIMIT, add_tables, rq_records
from .variants import Encoding, candidates, choose

KERNELS = Path(__file__).resolve().parent / "kernels"

# Cortex-M cores (targets/mcu/*.toml 'core') and whether they have the DSP extension (SMLAD,
# SXTB16): Armv7E-M (M4, M7), Armv8-M Mainline with DSP (M33 as configured by ST and GCC's
# default -mcpu=cortex-m33), Armv8.1-M (M55). The M0+ (Armv6-M) has not.
CORE_DSP = {"cortex-m0plus": False, "cortex-m0": False, "cortex-m3": False, "cortex-m4": True,
            "cortex-m7": True, "cortex-m33": True, "cortex-m55": True}

HEADERS = ("ep_common.h", "ep_kernels.h", "ep_im2col.h")


@dataclass
class LayerReport:
    index: int
    layer: str
    op: str
    kernel: str
    variant: str
    macs: int
    weights: int                   # int8 weights of the layer
    nonzero_weights: int
    weight_bytes: int              # bytes of its encoding (flash)
    instructions_estimate: float
    folded: List[str] = field(default_factory=list)
    alternatives: Dict[str, dict] = field(default_factory=dict)


@dataclass
class Generated:
    files: Dict[str, str]
    program: Program
    arena_bytes: int
    arena_bytes_tflm_greedy: int
    layers: List[LayerReport]
    core: str


def _ident(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", s)


def _comment(s: str) -> str:
    return s.replace("*/", "* /")


def _array(ctype: str, name: str, a: np.ndarray, per_line: int = 16) -> str:
    a = np.asarray(a).reshape(-1)
    if ctype == "uint32_t":
        items = [f"0x{int(v):08x}u" for v in a]
        per_line = 8
    elif ctype == "int32_t":
        items = [("(-2147483647 - 1)" if int(v) == -2**31 else str(int(v))) for v in a]
        per_line = 10
    else:
        items = [str(int(v)) for v in a]
    if not items:
        items = ["0"]  # C forbids empty arrays; never read
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n  ".join(lines)
    return f"static const {ctype} {name}[{max(len(a), 1)}] = {{\n  {body}\n}};\n"


def _int32(v) -> str:
    return "(-2147483647 - 1)" if int(v) == -2**31 else str(int(v))


def _rq_array(name: str, recs: np.ndarray) -> str:
    items = [f"{{{_int32(m)}, {_int32(r)}, {_int32(w)}}}" for m, r, w in recs]
    lines = [", ".join(items[i:i + 4]) for i in range(0, len(items), 4)]
    return f"static const ep_rq {name}[{len(items)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


_FAMILY = {"conv": "conv", "dwconv": "dw", "fc": "fc"}


def acc_bound(st: Step) -> int:
    """Largest |accumulator| a weighted step can reach: |folded bias| + 128 * sum |w| per
    output channel (raw int8 inputs, |x| <= 128)."""
    wq = st.weighted
    aw = np.abs(wq.w.astype(np.int64))
    per_c = aw.sum(axis=0) if st.kind == "dwconv" else aw.reshape(aw.shape[0], -1).sum(axis=1)
    return int((np.abs(np.asarray(wq.bias, dtype=np.int64)).reshape(-1) + 128 * per_c).max())


def rq_fast(prog: Program) -> bool:
    """Whether every weighted step can requantize with ep_rq records (EP_RQ_FAST): shifts <= 0
    and accumulators below RQ_ACC_LIMIT."""
    for st in prog.steps:
        if st.weighted is None:
            continue
        if np.any(np.asarray(st.weighted.shift) > 0) or acc_bound(st) >= RQ_ACC_LIMIT:
            return False
    return True


_CTYPE = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t",
          np.dtype(np.uint32): "uint32_t", np.dtype(np.int32): "int32_t"}


def _scratch_bytes(step: Step, enc: Encoding) -> int:
    if step.kind == "dwconv":
        g = step.params["g"]
        return costs.dwconv_scratch(g) if enc.variant == "dense-dsp" and costs.dwconv_3x3(g) else 0
    if step.kind != "conv":
        return 0
    g = step.params["g"]
    k = g["k_h"] * g["k_w"] * g["in_c"]
    if enc.variant == "dense-dsp":
        return 5 * ((k + 3) // 4 * 4)
    if enc.variant in ("dense-plain", "clustered"):
        return k
    return 0


def generate(graph: Graph, core: str, objective: str = "cycles", force: Optional[str] = None,
             per_layer: Optional[Dict[str, str]] = None, model_name: str = "model",
             rounding: str = "tflm", fusion: str = "cost") -> Generated:
    """C sources for `graph` on `core`. force: variant family for every weighted layer where
    it applies; per_layer: {layer name: family} overrides; rounding: 'tflm' (bit-exact with
    TFLM and CMSIS-NN) or 'litert' (bit-exact with LiteRT's reference kernels); fusion: where
    a sparse convolution and its max pooling become one call (backends/c/fuse.py): 'cost'
    (where the estimate says it pays), 'always' (every exact pair: the calibration and the
    tests) or 'never'."""
    if core not in CORE_DSP:
        raise CModelError(f"core '{core}' is not supported by the C runtime "
                          f"(supported: {', '.join(CORE_DSP)})")
    dsp = CORE_DSP[core]
    prog = lower(graph, rounding)
    per_layer = dict(per_layer or {})
    unknown = set(per_layer) - {st.layer for st in prog.steps if st.weighted is not None}
    if unknown:
        raise CModelError(f"--variant-per-layer names no weighted layer: {', '.join(sorted(unknown))}")
    layers: List[LayerReport] = []
    alternatives = {}
    for st in prog.steps:
        if st.weighted is None:
            continue
        alternatives[st.index] = {e.family: {"weight_bytes": e.flash_bytes,
                                             "instructions_estimate": round(e.instructions)}
                                  for e in candidates(st, dsp, core)}
        st.params["encoding"] = choose(st, dsp, objective, per_layer.get(st.layer, force), core)
    unfused = {id(st): st.index for st in prog.steps}
    def cost(st: Step) -> float:
        if st.weighted is not None:
            return costs.estimate_instructions(st, st.params["encoding"], dsp, core)
        e = costs.estimate_step(st, None, core)
        return e[0] if e is not None else 0.0

    if fusion not in ("cost", "always", "never"):
        raise CModelError(f"fusion must be cost, always or never, not '{fusion}'")
    if fusion != "never" and fuse.fuse_sparse_maxpool(prog, cost if fusion == "cost" else None):
        for st in prog.steps:
            if "pool" in st.params:
                enc = st.params["encoding"]
                enc.instructions = costs.estimate_instructions(st, enc, dsp, core)
    for st in prog.steps:
        if st.weighted is None:
            continue
        enc = st.params["encoding"]
        alts = alternatives[unfused[id(st)]]
        sb = _scratch_bytes(st, enc)
        if (st.kind == "dwconv" and sb) or (st.kind == "conv" and enc.family == "sparse"):
            st.overlaps = []     # written channel by channel (kernels/ep_dwconv.c's 3x3 path,
            #                      kernels/ep_conv_sparse.c): the output cannot overlay the input
        if sb:
            name = f"scratch{st.index}"
            prog.buffers[name] = Buffer(name, sb, "scratch", st.index, st.index)
            st.scratch = name
        w = st.weighted.w
        layers.append(LayerReport(st.index, st.layer, st.opcode, _kernel_name(st, enc), enc.family,
                                  st.macs, int(w.size), int(np.count_nonzero(w)), enc.flash_bytes,
                                  round(enc.instructions), st.folded, alts))
    arena = planner.plan(prog)
    planner.verify(prog)
    tflm_greedy = planner.plan(prog, overlaps=False, orders=("size",), apply=False)
    files = _emit(prog, arena, core, model_name)
    return Generated(files, prog, arena, tflm_greedy, layers, core)


def _kernel_name(st: Step, enc: Optional[Encoding]) -> str:
    if st.kind == "conv":
        if "pool" in st.params:
            return "ep_conv_sparse_maxpool"
        return {"dense-dsp": "ep_conv_dense_dsp", "dense-plain": "ep_conv_dense_plain",
                "sparse": "ep_conv_sparse", "clustered": "ep_conv_clustered"}[enc.variant]
    if st.kind == "dwconv":
        return "ep_dwconv_dsp" if enc.variant == "dense-dsp" else "ep_dwconv_plain"
    if st.kind == "fc":
        return {"dense-dsp": "ep_fc_dense_dsp", "dense-plain": "ep_fc_dense_plain",
                "sparse": "ep_fc_sparse", "clustered": "ep_fc_clustered"}[enc.variant]
    return {"maxpool": "ep_maxpool", "avgpool": "ep_avgpool", "add": "ep_add", "pad": "ep_pad",
            "concat": "ep_concat", "softmax": "ep_softmax", "relu": "ep_relu"}[st.kind]


_SOURCE_OF = {  # kernel function -> source file
    "ep_conv_dense_dsp": "ep_conv.c", "ep_conv_dense_plain": "ep_conv.c",
    "ep_conv_sparse": "ep_conv_sparse.c", "ep_conv_sparse_maxpool": "ep_conv_sparse_pool.c",
    "ep_conv_clustered": "ep_conv_clustered.c",
    "ep_dwconv_dsp": "ep_dwconv.c", "ep_dwconv_plain": "ep_dwconv.c",
    "ep_fc_dense_dsp": "ep_fc.c", "ep_fc_dense_plain": "ep_fc.c", "ep_fc_sparse": "ep_fc_sparse.c",
    "ep_fc_clustered": "ep_fc_clustered.c", "ep_maxpool": "ep_pool.c", "ep_avgpool": "ep_pool.c",
    "ep_add": "ep_add.c", "ep_pad": "ep_pad.c", "ep_concat": "ep_concat.c",
    "ep_softmax": "ep_softmax.c", "ep_relu": "ep_relu.c",
}


def _g_init(g: dict) -> str:
    keys = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
            "stride_w", "dil_h", "dil_w", "pad_top", "pad_left")
    return "{" + ", ".join(str(int(g[k])) for k in keys) + "}"


def _emit(prog: Program, arena: int, core: str, model_name: str) -> Dict[str, str]:
    decl: List[str] = []
    body: List[str] = []
    used: List[str] = []
    cluster_bits = set()
    buf = prog.buffers
    from .quant import ROUNDINGS
    single = ROUNDINGS[prog.rounding]
    fast = rq_fast(prog)

    def A(name: str) -> str:
        return f"EP_A({buf[name].offset})"

    for st in prog.steps:
        enc: Optional[Encoding] = st.params.get("encoding")
        kname = _kernel_name(st, enc)
        if _SOURCE_OF[kname] not in used:
            used.append(_SOURCE_OF[kname])
        p = f"L{st.index}_"
        folded = f" (+ folded {', '.join(st.folded)})" if st.folded else ""
        decl.append(f"/* layer {st.index}: {_comment(st.layer)}{folded}, {st.opcode}, "
                    f"{kname}{'' if enc is None else ', ' + enc.variant} */\n")
        x = A(st.inputs[0])
        y = A(st.output)
        if st.weighted is not None:
            wq = st.weighted
            decl.append(_array("int32_t", p + "bias", wq.bias))
            if fast:
                recs = rq_records(wq.mult, wq.shift, _FAMILY[st.kind] in single)
                decl.append(_rq_array(p + "rq", recs))
                decl.append(f"static const ep_requant {p}q = {{{p}bias, 0, 0, {wq.in_zp}, "
                            f"{wq.out_zp}, {wq.act_min}, {wq.act_max}, {p}rq}};\n")
            else:
                decl.append(_array("int32_t", p + "mult", wq.mult))
                decl.append(_array("int8_t", p + "shift", wq.shift))
                decl.append(f"static const ep_requant {p}q = {{{p}bias, {p}mult, {p}shift, {wq.in_zp}, "
                            f"{wq.out_zp}, {wq.act_min}, {wq.act_max}, 0}};\n")
            for role, arr in enc.arrays.items():
                decl.append(_array(_CTYPE[arr.dtype], p + role, arr))
        if st.kind in ("conv", "dwconv", "maxpool", "avgpool"):
            decl.append(f"static const ep_window {p}g = {_g_init(st.params['g'])};\n")
        if st.kind == "conv":
            if enc.variant == "dense-dsp":
                call = f"{kname}(&{p}g, &{p}q, {p}w, {x}, {y}, ep_arena + {buf[st.scratch].offset // 4})"
            elif enc.variant == "dense-plain":
                call = f"{kname}(&{p}g, &{p}q, {p}w, {x}, {y}, {A(st.scratch)})"
            elif enc.variant == "sparse":
                tap = f"{p}tap" if "tap" in enc.arrays else "0"
                decl.append(f"static const ep_sparse {p}s = {{{p}count, {p}pos, {p}value, {tap}}};\n")
                pool = st.params.get("pool")
                if pool:                # fused with the max pooling after it (backends/c/fuse.py)
                    decl.append(f"static const ep_window {p}pg = {_g_init(pool['g'])};\n")
                    call = (f"{kname}(&{p}g, &{p}q, &{p}s, &{p}pg, {pool['act_min']}, "
                            f"{pool['act_max']}, {x}, {y})")
                else:
                    call = f"{kname}(&{p}g, &{p}q, &{p}s, {x}, {y})"
            else:
                cluster_bits.add(enc.scalars["bits"])
                decl.append(f"static const ep_clustered {p}c = {{{p}index, {p}codebook, "
                            f"{enc.scalars['bits']}, {enc.scalars['row_words']}}};\n")
                call = f"{kname}(&{p}g, &{p}q, &{p}c, {x}, {y}, {A(st.scratch)})"
        elif st.kind == "dwconv":
            if enc.variant == "dense-dsp":
                scr = f"ep_arena + {buf[st.scratch].offset // 4}" if st.scratch else "0"
                call = f"{kname}(&{p}g, &{p}q, {p}w, {x}, {y}, {scr})"
            else:
                call = f"{kname}(&{p}g, &{p}q, {p}w, {x}, {y})"
        elif st.kind == "fc":
            dims = f"{st.params['batches']}, {st.params['in_n']}, {st.params['out_n']}"
            if enc.family == "dense":
                call = f"{kname}({dims}, &{p}q, {p}w, {x}, {y})"
            elif enc.variant == "sparse":
                decl.append(f"static const ep_sparse {p}s = {{{p}count, {p}pos, {p}value, 0}};\n")
                call = f"{kname}({dims}, &{p}q, &{p}s, {x}, {y})"
            else:
                cluster_bits.add(enc.scalars["bits"])
                decl.append(f"static const ep_clustered {p}c = {{{p}index, {p}codebook, "
                            f"{enc.scalars['bits']}, {enc.scalars['row_words']}}};\n")
                call = f"{kname}({dims}, &{p}q, &{p}c, {x}, {y})"
        elif st.kind in ("maxpool", "avgpool"):
            call = f"{kname}(&{p}g, {st.params['act_min']}, {st.params['act_max']}, {x}, {y})"
        elif st.kind == "add":
            q = st.params
            add_single = "add" in single
            t1, t2 = add_tables(q, add_single)
            decl.append(_array("int32_t", p + "t1", t1))
            decl.append(_array("int32_t", p + "t2", t2))
            add_fast = (int(q["out_shift"]) <= 0
                        and int(np.abs(t1).max()) + int(np.abs(t2).max()) < RQ_ACC_LIMIT)
            rec = (rq_records([q["out_mult"]], [q["out_shift"]], add_single)[0] if add_fast
                   else np.zeros(3, dtype=np.int32))
            decl.append(f"static const ep_add_params {p}p = {{{p}t1, {p}t2, "
                        f"{{{', '.join(_int32(v) for v in rec)}}}, {int(add_fast)}, "
                        + ", ".join(str(int(q[f])) for f in ("out_mult", "out_shift", "out_zp",
                                                              "act_min", "act_max")) + "};\n")
            call = f"{kname}(&{p}p, {q['n']}, {x}, {A(st.inputs[1])}, {y})"
        elif st.kind == "pad":
            q = st.params
            decl.append(f"static const ep_pad_params {p}p = {{{{{', '.join(map(str, q['in_dims']))}}}, "
                        f"{{{', '.join(map(str, q['before']))}}}, {{{', '.join(map(str, q['out_dims']))}}}, "
                        f"{q['value']}}};\n")
            call = f"{kname}(&{p}p, {x}, {y})"
        elif st.kind == "concat":
            q = st.params
            decl.append(_array("uint32_t", p + "inner", np.array(q["inner"], dtype=np.uint32)))
            ins = ", ".join(A(b) for b in st.inputs)
            call = (f"{{\n    const int8_t *const in_{st.index}[{len(st.inputs)}] = {{{ins}}};\n"
                    f"    {kname}({q['outer']}, {len(st.inputs)}, in_{st.index}, {p}inner, {y});\n  }}")
        elif st.kind == "softmax":
            q = st.params
            decl.append(f"static const ep_softmax_params {p}p = {{{q['input_multiplier']}, "
                        f"{q['input_left_shift']}, {q['diff_min']}}};\n")
            call = f"{kname}(&{p}p, {q['rows']}, {q['depth']}, {x}, {y})"
        elif st.kind == "relu":
            q = st.params
            decl.append(f"static const ep_relu_params {p}p = {{{q['in_zp']}, {q['out_zp']}, "
                        f"{q['mult']}, {q['shift']}, {q['act_min']}, {q['act_max']}}};\n")
            call = f"{kname}(&{p}p, {q['n']}, {x}, {y})"
        else:  # pragma: no cover
            raise CModelError(f"no kernel for {st.kind}")
        if not call.endswith("}"):
            call += ";"
        body.append(f"  EP_LAYER_BEGIN({st.index});\n  {call}\n  EP_LAYER_END({st.index});\n")

    inb, outb = buf[prog.input], buf[prog.output]
    in_bytes = int(np.prod(prog.input_shape))
    out_bytes = int(np.prod(prog.output_shape))
    files: Dict[str, str] = {}
    files["edgeprune_model.h"] = _HEADER.format(
        model=_comment(model_name), core=core, in_bytes=in_bytes, out_bytes=out_bytes,
        arena=arena, in_shape=" x ".join(map(str, prog.input_shape)),
        out_shape=" x ".join(map(str, prog.output_shape)),
        in_scale=_float(prog.input_scale), in_zp=prog.input_zero_point,
        out_scale=_float(prog.output_scale), out_zp=prog.output_zero_point,
        n_layers=len(prog.steps))
    files["edgeprune_model.c"] = _SOURCE.format(
        model=_comment(model_name), core=core, arena=arena, arena_words=(arena + 3) // 4,
        decl="\n".join(decl), body="".join(body), in_off=inb.offset, out_off=outb.offset)
    cfg = f"/* requantization rounding of {'LiteRT' if prog.rounding == 'litert' else 'TFLM / CMSIS-NN'} (ep_common.h) */\n"
    cfg += "".join(f"#define EP_{fam.upper()}_SINGLE_ROUNDING {int(fam in single)}\n"
                   for fam in ("conv", "dw", "fc", "add", "softmax", "relu"))
    cfg += ("/* per-channel requantization records (ep_rq): every weighted layer has shifts <= 0 "
            "and accumulators below 2^30 */\n" if fast else
            "/* requantization from multiplier and shift: a weighted layer has a left shift or "
            "accumulators that may reach 2^30 */\n")
    cfg += f"#define EP_RQ_FAST {int(fast)}\n"
    act127 = all(st.weighted.act_max == 127 for st in prog.steps if st.weighted is not None)
    cfg += ("/* every weighted layer clamps its output to [act_min, 127]: SSAT + one compare */\n"
            f"#define EP_ACT_MAX_127 {int(act127)}\n")
    cfg += "".join(f"#define EP_CLUSTER_BITS_{b} 1\n" for b in sorted(cluster_bits))
    files["ep_config.h"] = ("/* edgeprune-c configuration of this model: requantization rounding "
                            "per op and the clustered weight widths it uses. */\n#ifndef EP_CONFIG_H\n"
                            "#define EP_CONFIG_H\n" + cfg + "#endif\n")
    for h in HEADERS + (("ep_clustered.h",) if cluster_bits else ()):
        files[h] = (KERNELS / h).read_text()
    for src in used:
        files[src] = (KERNELS / src).read_text()
    return files


def _float(x: float) -> str:
    return f"{float(np.float32(x)):.9g}f"


_HEADER = """\
/* edgeprune-c model "{model}" for {core}: generated by `edgeprune export c`. Plain C99, no
 * runtime library. {n_layers} kernel calls; activations in one static arena of {arena} bytes.
 */
#ifndef EDGEPRUNE_MODEL_H
#define EDGEPRUNE_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define EDGEPRUNE_INPUT_BYTES {in_bytes}      /* int8, {in_shape} (NHWC) */
#define EDGEPRUNE_OUTPUT_BYTES {out_bytes}    /* int8, {out_shape} */
#define EDGEPRUNE_ARENA_BYTES {arena}
/* real = scale * (q - zero_point) */
#define EDGEPRUNE_INPUT_SCALE {in_scale}
#define EDGEPRUNE_INPUT_ZERO_POINT {in_zp}
#define EDGEPRUNE_OUTPUT_SCALE {out_scale}
#define EDGEPRUNE_OUTPUT_ZERO_POINT {out_zp}

/* Runs the model on `in` (EDGEPRUNE_INPUT_BYTES), writes `out` (EDGEPRUNE_OUTPUT_BYTES).
 * Returns 0. `in` is copied into the arena first unless it is edgeprune_input(); `out` is
 * copied from the arena unless it is edgeprune_output(). The arena input is overwritten. */
int edgeprune_invoke(const int8_t *in, int8_t *out);

/* The input and output buffers inside the arena (to fill and read without copies). */
int8_t *edgeprune_input(void);
int8_t *edgeprune_output(void);

#ifdef __cplusplus
}}
#endif

#endif /* EDGEPRUNE_MODEL_H */
"""

_SOURCE = """\
/* edgeprune-c model "{model}" for {core}: generated by `edgeprune export c`.
 * Weights and layer parameters are static const (flash); activations and kernel scratch
 * share one static arena (RAM) laid out by edgeprune's planner. */
#include <string.h>

#include "edgeprune_model.h"
#include "ep_config.h"
#include "ep_kernels.h"

/* Per-layer hooks (e.g. a cycle counter read); empty by default. */
#ifndef EP_LAYER_BEGIN
#define EP_LAYER_BEGIN(i) ((void)0)
#endif
#ifndef EP_LAYER_END
#define EP_LAYER_END(i) ((void)0)
#endif

static uint32_t ep_arena[{arena_words}];   /* {arena} bytes */
#define EP_A(off) ((int8_t *)ep_arena + (off))

{decl}
int8_t *edgeprune_input(void) {{ return EP_A({in_off}); }}
int8_t *edgeprune_output(void) {{ return EP_A({out_off}); }}

int edgeprune_invoke(const int8_t *in, int8_t *out) {{
  if (in != EP_A({in_off})) memcpy(EP_A({in_off}), in, EDGEPRUNE_INPUT_BYTES);
{body}  if (out != EP_A({out_off})) memcpy(out, EP_A({out_off}), EDGEPRUNE_OUTPUT_BYTES);
  return 0;
}}
"""
