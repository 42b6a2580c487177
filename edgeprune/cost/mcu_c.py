"""Cost of a model in edgeprune's own C runtime (`edgeprune export c`), without exporting it:
`edgeprune estimate MODEL --target T --runtime edgeprune-c [--what-if]`.

The layer graph is lowered to the TFLite op plan the exporter would convert
(``backends.tflm.plan.lower``), then to the C generator's graph with synthetic quantization
(seeded random int8 weights, per-channel scales; no TensorFlow): the generator lowers it, picks
each weighted layer's kernel variant (dense / sparse / clustered, ``backends.c.variants``) and
plans the arena exactly as the export does. Its cycles are the calibrated kernel model of the
export (``backends.c.costs.estimate_program``: constants fitted on synthetic layers measured
under QEMU, benchmarks/c_runtime_calibrate.py). What the weights change is modelled through
their structure only:
- ``weight_density`` {layer: fraction of non-zero weights}: scattered zeros, which the sparse
  kernels skip and do not store;
- ``lut`` {layer: bits}: weights clustered to 2^bits values per output channel, which the
  clustered kernels store as packed indices.
Flash = the model's constant arrays (weights in their encoding, biases, requantization records,
tables), byte for byte as the generator writes them, plus the kernels' code and the invoke glue
from a per-core table measured on synthetic models (backends/c/code_size.py); RAM = the planned
activation arena. The stack is not counted (`edgeprune export c` measures it).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import numpy as np

from ..deploy import Deployment
from ..layergraph import OpKind
from .report import CostReport

RUNTIME = "edgeprune-c"
ACT_SCALE, ACT_ZP = 0.05, 0        # synthetic activation quantization (every tensor)
W_SCALE = (0.002, 0.006)          # per-channel weight scales drawn in this range
MCU_METRICS = ("cycles", "latency_ms", "flash_bytes", "ram_bytes")
CLUSTER_BITS_WHAT_IF = 3          # the what-if's clustering: 8 values per output channel
_CBYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4,
           "ep_rq": 12}
_ARRAY = re.compile(r"static const (\w+) L(\d+)_\w+\[(\d+)\]")


def _weights(rng, shape, density: float, bits: Optional[int], axis: int) -> np.ndarray:
    """Non-zero int8 weights, a fraction 1 - density of them zeroed at random positions (the
    same draws at every density, so a what-if's sparser layer drops exactly the weights it
    counts); with
    bits, each output channel (along `axis`) takes 2^bits distinct values."""
    w = rng.integers(1, 128, size=shape) * rng.choice([-1, 1], size=shape)
    if bits:
        levels = 1 << int(bits)
        moved = np.moveaxis(w, axis, 0).reshape(shape[axis], -1)
        for c in range(moved.shape[0]):
            book = rng.choice(np.r_[-127:0, 1:128], size=levels, replace=False)
            moved[c] = book[rng.integers(0, levels, size=moved.shape[1])]
        w = np.moveaxis(moved.reshape(np.moveaxis(w, axis, 0).shape), 0, axis)
    if density < 1.0:   # exactly round(density * size) non-zeros, nested as density falls
        r = rng.random(shape).reshape(-1)
        keep = np.zeros(r.size, dtype=bool)
        keep[np.argsort(r, kind="stable")[:int(round(density * r.size))]] = True
        w = np.where(keep.reshape(shape), w, 0)
    return w.astype(np.int8)


def c_graph(graph, plan=None, weight_density: Optional[Dict[str, float]] = None,
            lut: Optional[Dict[str, Any]] = None, seed: int = 0):
    """The C generator's graph (``backends.c.ir.Graph``) of `graph`'s TFLite plan, with
    synthetic quantization and weights of the given structure."""
    from ..backends.c.ir import Graph, Op, Tensor
    from ..backends.tflm import plan as tflm_plan
    plan = plan or tflm_plan.lower(graph)
    dens = dict(weight_density or {})
    bits = {k: (v["bits"] if isinstance(v, dict) else v) for k, v in (lut or {}).items()}
    rng = np.random.default_rng(seed)
    full: List[Optional[Tensor]] = [None] * len(plan.tensors)
    for t in plan.tensors:
        shape = tuple(int(d) for d in t.shape)
        if t.role in ("weights", "bias", "paddings"):
            continue                                    # filled with their op below
        if t.dtype == "int8":
            full[t.index] = Tensor(t.index, shape, "int8", np.array([ACT_SCALE], np.float32),
                                   np.array([ACT_ZP], np.int64), 0, None)
        else:
            full[t.index] = Tensor(t.index, shape, t.dtype, np.zeros(0, np.float32),
                                   np.zeros(0, np.int64), 0,
                                   np.zeros(shape, np.int32) if t.role == "shape" else None)
    ops: List[Op] = []
    for i, op in enumerate(plan.ops):
        o = op.options
        opts: Dict[str, Any] = {"activation": o.get("fused_activation", "NONE")}
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            s, d = o.get("stride", (1, 1)), o.get("dilation", (1, 1))
            s = (s, s) if isinstance(s, int) else tuple(s)
            d = (d, d) if isinstance(d, int) else tuple(d)
            opts.update(padding=o.get("padding", "VALID"), stride_h=s[0], stride_w=s[1],
                        dilation_h=d[0], dilation_w=d[1])
            wt, bt = plan.tensors[op.inputs[1]], plan.tensors[op.inputs[2]]
            axis = 0 if op.opcode == "CONV_2D" else 3
            if op.opcode == "DEPTHWISE_CONV_2D":
                cin = plan.tensors[op.inputs[0]].shape[-1]
                opts["depth_multiplier"] = int(wt.shape[3]) // int(cin)
        elif op.opcode == "FULLY_CONNECTED":
            opts.update(weights_format=0, keep_num_dims=False)
            wt, bt = plan.tensors[op.inputs[1]], (plan.tensors[op.inputs[2]]
                                                   if len(op.inputs) > 2 and op.inputs[2] >= 0 else None)
            axis = 0
        elif op.opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            k, s = o.get("filter", (1, 1)), o.get("stride", (1, 1))
            opts.update(padding=o.get("padding", "VALID"), filter_h=k[0], filter_w=k[1],
                        stride_h=s[0], stride_w=s[1])
            wt = None
        elif op.opcode == "PAD":
            pads = op.attrs.get("pads", (0, 0, 0, 0))
            pt = plan.tensors[op.inputs[1]]
            full[pt.index] = Tensor(pt.index, (4, 2), "int32", np.zeros(0, np.float32),
                                    np.zeros(0, np.int64), 0,
                                    np.array([[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]],
                                             np.int32))
            wt = None
        else:
            if op.opcode == "SOFTMAX":
                opts["beta"] = float(o.get("beta", 1.0))
                out = full[op.outputs[0]]
                out.scale, out.zero_point = np.array([1 / 256], np.float32), np.array([-128], np.int64)
            if op.opcode == "CONCATENATION":
                opts["axis"] = int(o.get("axis", 3))
            wt = None
        if wt is not None:
            shape = tuple(int(v) for v in wt.shape)
            n_out = shape[axis]
            sc = rng.uniform(*W_SCALE, n_out).astype(np.float32)
            w = _weights(rng, shape, float(dens.get(op.node, 1.0)), bits.get(op.node), axis)
            full[wt.index] = Tensor(wt.index, shape, "int8", sc, np.zeros(n_out, np.int64), axis, w)
            if bt is not None:
                full[bt.index] = Tensor(bt.index, (n_out,), "int32", sc * ACT_SCALE,
                                        np.zeros(n_out, np.int64), 0,
                                        rng.integers(-2000, 2000, n_out).astype(np.int32))
        ops.append(Op(i, op.opcode, list(op.inputs), list(op.outputs), opts, op.node))
    for t in plan.tensors:                       # unused constants (never read)
        if full[t.index] is None:
            full[t.index] = Tensor(t.index, tuple(t.shape), t.dtype, np.zeros(0, np.float32),
                                   np.zeros(0, np.int64), 0, np.zeros(tuple(t.shape), np.int8))
    return Graph(full, ops, list(plan.inputs), list(plan.outputs))


def _array_bytes(source: str) -> Dict[int, int]:
    """Bytes of each step's constant arrays in the generated model source."""
    out: Dict[int, int] = {}
    for ctype, idx, n in _ARRAY.findall(source):
        out[int(idx)] = out.get(int(idx), 0) + _CBYTES.get(ctype, 4) * int(n)
    return out


def code_bytes(gen, core: str) -> Optional[int]:
    """Kernel code + invoke glue of a generated model on `core` from the measured table
    (backends/c/code_size.py, benchmarks/c_code_size.py), or None when it lacks the core."""
    try:
        from ..backends.c import code_size
    except ImportError:
        return None
    kb, glue = code_size.KERNEL_BYTES.get(core), code_size.GLUE.get(core)
    if kb is None or glue is None:
        return None
    srcs = [f for f in gen.files if f.endswith(".c") and f != "edgeprune_model.c"]
    if any(f not in kb for f in srcs):
        return None
    return int(round(sum(kb[f] for f in srcs) + glue["base"] + glue["per_step"] * len(gen.program.steps)))


def estimate_c(graph, deployment: Deployment, *, weight_density=None, lut=None, plan=None,
               objective: Optional[str] = None, seed: int = 0) -> CostReport:
    """Per-layer cycles / latency / flash / RAM of `graph` run by the generated C runtime.
    objective: what the per-layer kernel choice minimises, as `edgeprune export c --objective`
    (default: 'flash' when the deployment's compression policy is 'flash', else 'cycles')."""
    objective = objective or ("flash" if deployment.compression == "flash" else "cycles")
    from ..backends.c import costs
    from ..backends.c.codegen import generate
    from .mcu import McuCostError
    target = deployment.target
    core = target.core
    if not costs.calibrated(core):
        raise McuCostError(f"target '{target.name}': the edgeprune-c cost model is not calibrated "
                           f"for core '{core}' (benchmarks/c_runtime_calibrate.py --cores {core})")
    from ..backends.tflm import plan as tflm_plan
    plan = plan or tflm_plan.lower(graph)
    gen = generate(c_graph(graph, plan, weight_density, lut, seed), core, objective=objective,
                   model_name=getattr(graph, "name", "model") or "model")
    est = costs.estimate_program(gen.program, core)
    clock_khz = float(target.clock_mhz) * 1e3
    arrays = _array_bytes(gen.files["edgeprune_model.c"])
    variant = {l.index: l.variant for l in gen.layers}
    by_node: Dict[str, Dict[str, Any]] = {}
    for st, (ins, cyc) in zip(gen.program.steps, est["steps"]):
        names = [st.layer] + [f for f in st.folded if f != "PAD"]
        row = by_node.setdefault(st.layer, {"cycles": 0.0, "instructions": 0.0, "flash": 0,
                                            "kernels": []})
        row["cycles"] += cyc
        row["instructions"] += ins
        row["flash"] += arrays.get(st.index, 0)
        row["kernels"].append(st.opcode + (f" ({variant[st.index]})" if st.index in variant else ""))
        for f in names[1:]:
            by_node.setdefault(f, {"fused_into": st.layer})
    for op in plan.ops:
        for f in op.folded:
            by_node.setdefault(f, {"fused_into": op.node})
    rows: List[Dict[str, Any]] = []
    for n in graph.nodes:
        if n.op in (OpKind.INPUT, OpKind.OUTPUT):
            continue
        r = by_node.get(n.name, {})
        cycles = float(r.get("cycles", 0.0))
        rows.append({
            "name": n.name, "op": n.op,
            "tflite_op": ("+".join(r["kernels"]) if r.get("kernels") else
                          f"fused into {r['fused_into']}" if r.get("fused_into") else "none"),
            "out_shape": list(n.out_shape), "params": n.params if n.op.is_compute else 0,
            "macs": n.macs, "intensity": round(n.intensity, 3),
            "cycles": int(round(cycles)), "instructions": int(round(r.get("instructions", 0.0))),
            "latency_ms": cycles / clock_khz, "flash_bytes": int(r.get("flash", 0)),
            "ram_bytes": 0})
    flash = sum(arrays.values())
    code = code_bytes(gen, core)
    if code is not None:
        flash += code
    totals = {"params": graph.compute_params, "macs": graph.total_macs,
              "cycles": int(round(est["cycles"])), "instructions": int(round(est["instructions"])),
              "latency_ms": est["cycles"] / clock_khz, "flash_bytes": int(flash),
              "ram_bytes": int(gen.arena_bytes),
              "flash_budget_bytes": int(target.flash_kb) * 1024,
              "ram_budget_bytes": int(target.ram_kb) * 1024}
    totals["fits_flash"] = totals["flash_bytes"] <= totals["flash_budget_bytes"]
    totals["fits_ram"] = totals["ram_bytes"] <= totals["ram_budget_bytes"]
    notes: List[str] = []
    if not totals["fits_flash"]:
        notes.append(f"does NOT fit flash: {flash / 1024:.1f} KB of model data > {target.flash_kb} KB")
    if not totals["fits_ram"]:
        notes.append(f"does NOT fit RAM: {gen.arena_bytes / 1024:.1f} KB arena > {target.ram_kb} KB")
    chosen = sorted({l.variant for l in gen.layers})
    notes.append(f"cycles: edgeprune-c kernels on {core} (the export's calibrated model, fitted on "
                 f"synthetic layers under QEMU with the {core} TRM timings); kernel variants "
                 f"chosen for {objective}: {', '.join(chosen) or 'none'}")
    if code is not None:
        totals["flash_code_bytes"] = code
        notes.append("flash = the generated constant arrays (weights in their encoding, biases, "
                     "requantization records, tables) + the kernels' code and the invoke glue "
                     "(measured per core on synthetic models, benchmarks/c_code_size.py); RAM = "
                     "the planned activation arena, stack not counted (`edgeprune export c` "
                     "measures both)")
    else:
        notes.append("flash = the generated constant arrays (weights in their encoding, biases, "
                     "requantization records, tables); RAM = the planned activation arena; kernel "
                     "code and stack not counted (`edgeprune export c` reports them measured)")
    return CostReport(target.name, "mcu", rows, totals, notes)


def what_if_c(graph, deployment: Deployment, fraction: float = 0.1, *,
              weight_density=None, lut=None) -> List[Dict[str, Any]]:
    """Savings from removing `fraction` of each compute layer's weights (scattered zeros, which
    the sparse kernels skip) or of its output channels (its coupled group). Positive = cheaper."""
    from .mcu import _channel_group_of
    dens = dict(weight_density or {})
    base = estimate_c(graph, deployment, weight_density=dens, lut=lut)
    memo: Dict[str, CostReport] = {}

    def base_flash() -> CostReport:
        if "r" not in memo:
            memo["r"] = estimate_c(graph, deployment, weight_density=dens, lut=lut, objective="flash")
        return memo["r"]

    rows: List[Dict[str, Any]] = []
    cache: Dict[int, Dict[str, float]] = {}
    for n in graph.compute_nodes():
        d0 = float(dens.get(n.name, 1.0))
        nw = int(round(fraction * d0 * n.weight_count))
        sparser = estimate_c(graph, deployment, weight_density={**dens, n.name: d0 * (1 - fraction)},
                             lut=lut)
        row: Dict[str, Any] = {"name": n.name, "op": n.op, "group": None, "group_size": None,
                               "prunable": False, "weights_removed": nw, "channels_removed": 0,
                               "weights": {m: base.totals[m] - sparser.totals[m] for m in MCU_METRICS},
                               "channels": {}, "note": ""}
        layer = next((r for r in sparser.layers if r["name"] == n.name), {})
        row["note"] = f"with the zeros: {layer.get('tflite_op', '')}"
        if CLUSTER_BITS_WHAT_IF not in (None, (lut or {}).get(n.name)):
            flash_base = base_flash()
            cl = estimate_c(graph, deployment, weight_density=dens,
                            lut={**(lut or {}), n.name: CLUSTER_BITS_WHAT_IF}, objective="flash")
            row["clustered"] = {"bits": CLUSTER_BITS_WHAT_IF,
                                **{m: flash_base.totals[m] - cl.totals[m] for m in MCU_METRICS}}
            row["note"] += (f"; {CLUSTER_BITS_WHAT_IF}-bit clustering (objective flash): flash "
                            f"{row['clustered']['flash_bytes']:+,} B saved, cycles "
                            f"{row['clustered']['cycles']:+,} saved")
        g = _channel_group_of(graph, n)
        if g is None or not g.prunable:
            row["note"] += "; channels not prunable" if g is not None else "; no channel group"
            if g is not None:
                row["group"], row["group_size"] = g.id, g.size
            rows.append(row)
            continue
        row["group"], row["group_size"] = g.id, g.size
        nc = max(1, int(round(fraction * g.size)))
        if nc >= g.size:
            row["note"] += f"; group of {g.size} channels too small to remove {nc}"
            rows.append(row)
            continue
        if g.id not in cache:
            smaller = estimate_c(graph.with_group_sizes({g.id: g.size - nc}), deployment,
                                 weight_density=dens, lut=lut)
            cache[g.id] = {m: base.totals[m] - smaller.totals[m] for m in MCU_METRICS}
        row.update(prunable=True, channels_removed=nc, channels=dict(cache[g.id]))
        rows.append(row)
    return rows
