"""`edgeprune export rtl`: synthesizable Verilog for the quantized (pruned) model as a FINN-style
streaming dataflow, simulated bit-exact with Verilator, and for iCE40 targets a bitstream.

Pipeline: float model -> Brevitas QAT -> QONNX verified (export/fpga_common.py, as for finn/hls)
-> the integer network (quant/integer_net.py, checked bit for bit against Brevitas) -> the RTL
plan with the PE/SIMD of the FPGA cost model's folding (backends/finn/folding.py) and, per MVU,
folded or unrolled (`style`) -> Verilog (backends/rtl/verilog.py) -> Verilator on real test
images: bit-exact against the integer reference, II and latency equal to the cycle model ->
for an iCE40 target, yosys synth_ice40 + nextpnr-ice40 + icepack with the UART wrapper and the
iCEBreaker PCF; for a 7-series target, yosys synth_xilinx cell counts (no vendor tools needed).
A design that does not place is an error (nothing written) unless `allow_overflow`; so is one
whose RTL cost-model estimate is at least SKIP_FACTOR times a resource of the part (checked before
Verilator, and for a folded design before the training).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..artifacts import write_json
from ..errors import EdgepruneError
from ..quant.fpga_prepare import quant_summary
from .fpga_common import FpgaExportError, fpga_export

STYLE_CHOICES = ("folded", "unrolled", "auto")


class RtlExportError(EdgepruneError, RuntimeError):
    pass


def family_of(target) -> str:
    fam = target.get("family")
    if fam in ("ice40", "xc7"):
        return fam
    if str(target.part).lower().startswith("xc7"):
        return "xc7"
    raise RtlExportError(f"target '{target.name}' ({target.part}) is neither an iCE40 nor a "
                         f"7-series part: the RTL export supports ice40-up5k and xc7 targets")


def rtl_estimates(plan, family: str, build) -> Dict[str, Any]:
    """The RTL cost model's {lut, ff, cells, bram, dsp} of this design (iCE40: with the UART
    wrapper): 'plan' from the units
    as built (actual accumulator widths and weights), 'budget' from the layer graph and the
    cost model's folding, as `edgeprune prune --budget lut=...` checks it on iCE40
    (backends/rtl/cost.py); compare with report['hardware']."""
    from ..backends.rtl.cost import graph_resources, plan_resources
    out: Dict[str, Any] = {"plan": plan_resources(plan, family, wrapper=family == "ice40")}
    try:
        out["budget"] = graph_resources(build.prep.graph, build.deployment,
                                        build.estimate.layers)
    except EdgepruneError as e:
        out["budget"] = {"error": str(e)}
    return out


# A design whose RTL cost-model estimate is at least this many times a resource's capacity is
# reported as not fitting without running Verilator and place and route / synthesis (which on a
# model of that size take hours). 2x is far outside the model's error on its held-out layers
# (benchmarks/results/rtl_yosys.md: LUT within 15 %, FF within 60 %, BRAM and DSP exact).
SKIP_FACTOR = 2.0


def over_capacity(est: Dict[str, int], target, family: str) -> list:
    """'RESOURCE estimate > capacity' for each resource the estimate exceeds SKIP_FACTOR times.
    On iCE40 each LUT4 and each DFF needs a logic cell of its own at the least, so both are
    checked against the cells on their own (their sum is only an upper bound)."""
    if family == "ice40":
        checks = (("LUT4", est["lut"], target.lut), ("DFF", est["ff"], target.ff),
                  ("EBR", est["bram"], target.get("ebr") or 0))
    else:
        checks = (("LUT", est["lut"], target.lut), ("FF", est["ff"], target.ff),
                  ("RAMB18", est["bram"], target.bram18), ("DSP", est["dsp"], target.dsp))
    return [f"{name} {v:,} > {cap:,}" for name, v, cap in checks
            if cap and v >= SKIP_FACTOR * cap]


def _refuse_over_capacity(est, target, family: str, unrolled: bool, allow_overflow: bool,
                          where: str) -> None:
    over = over_capacity(est, target, family)
    if over and not allow_overflow:
        raise FpgaExportError(
            f"does not fit {target.name}: RTL cost model estimate{where} {'; '.join(over)} (at "
            f"least {SKIP_FACTOR:g}x the capacity; Verilator and "
            f"{'place and route' if family == 'ice40' else 'synthesis'} skipped, nothing "
            f"written; more pruning or fewer bits{', or --style folded' if unrolled else ''})")


def mvu_folding(folding) -> Dict[str, tuple]:
    """{layer: (PE, SIMD)} of the cost model's MVAU layers."""
    return {l.node: (int(l.pe), int(l.simd)) for l in folding.layers if l.op_type == "MVAU_hls"}


def export_rtl(model, deployment, out, *, data, epochs: int = 2, lr: float = 1e-3,
               seed: int = 0, max_steps_per_epoch: Optional[int] = None,
               verify_images: int = 1000, sim_images: int = 1000, style: str = "folded",
               bitstream: bool = True, overwrite: bool = False, progress: bool = True,
               allow_overflow: bool = False, synth_timeout: int = 1800) -> Dict[str, Any]:
    """Write OUT/rtl/*.v (+ OUT/rtl/edgeprune.bin on iCE40) and OUT/report.json. On a 7-series
    target a yosys synth_xilinx that runs past `synth_timeout` seconds leaves the export valid
    (Verilog written and verified in Verilator) without resource counts: report.json says so
    under hardware.synth_error."""
    from ..backends.rtl.ir import RtlError, reference
    from ..backends.rtl.plan import build_plan, choose_styles, cycle_model
    from ..backends.rtl.sim import simulate
    from ..backends.rtl.synth import bitstream_ice40, synthesize, uart_wrapper
    from ..backends.rtl.verilog import TOP, generate, verilog_sources
    from ..quant.integer_net import check_integer_net, to_integer_net

    if style not in STYLE_CHOICES:
        raise RtlExportError(f"style must be one of {', '.join(STYLE_CHOICES)}")
    timings: Dict[str, float] = {}
    from ..graph import extract
    from ..targets import require_kind
    from ..deploy import as_deployment
    dep = as_deployment(deployment)
    require_kind(dep.target, "fpga", "the RTL export", "use 'edgeprune export tflm' for MCU targets")
    family_of(dep.target)
    if dep.input_bits != 8:
        raise RtlExportError(f"the RTL export takes uint8 pixels (input bits 8), not "
                             f"{dep.input_bits}")
    from ..backends.rtl.plan import check_graph
    check_graph(extract(model), attributes=True)
    if style == "folded" and not allow_overflow:
        # a folded design needs no weights for its estimate: refuse a far too large one
        # before the quantization-aware training
        from ..backends.rtl.cost import graph_resources
        from ..cost.fpga import estimate_fpga
        graph = extract(model)
        try:
            est = graph_resources(graph, dep, estimate_fpga(graph, dep).layers)
        except EdgepruneError:
            est = None                   # the export below reports it with its context
        if est is not None:
            _refuse_over_capacity(est, dep.target, family_of(dep.target), False, False,
                                  " (from the layer graph, before training)")
    # The FINN-style estimate is not the RTL design's cost: fit is decided by place and route.
    with fpga_export(model, deployment, out, data=data, epochs=epochs, lr=lr, seed=seed,
                     max_steps_per_epoch=max_steps_per_epoch, verify_images=verify_images,
                     overwrite=overwrite, progress=progress, allow_overflow=True,
                     what="the RTL export") as build:
        tmp, prep, folding = build.dir, build.prep, build.folding
        target = build.deployment.target
        family = family_of(target)
        net = to_integer_net(prep.qnet)
        n_check = min(len(prep.x_test), verify_images if verify_images > 0 else len(prep.x_test))
        ref_check = check_integer_net(prep.qnet, net, prep.x_test[:n_check])
        if not ref_check["bit_exact"]:
            raise RtlExportError(f"integer reference differs from Brevitas on "
                                 f"{ref_check['images'] - ref_check['exact_images']} of "
                                 f"{ref_check['images']} images")
        fold = mvu_folding(folding)
        styles = choose_styles(net, fold, style, family)
        plan = build_plan(net, fold, styles)
        timing = cycle_model(plan)
        from ..backends.rtl.cost import plan_resources
        _refuse_over_capacity(plan_resources(plan, family, wrapper=family == "ice40"), target,
                              family, any(u.p.get("style") == "unrolled" for u in plan.units),
                              allow_overflow, "")
        rtl = tmp / "rtl"
        rtl.mkdir()
        generated = generate(plan)
        for name, text in generated.items():
            (rtl / name).write_text(text)
        files = verilog_sources(generated)       # the ROM .hex files come with them
        # Verilator: bit-exact and cycle-exact on real test images
        t0 = time.time()
        n_sim = min(len(prep.x_test), sim_images if sim_images > 0 else len(prep.x_test))
        x = prep.x_test[:n_sim]
        with tempfile.TemporaryDirectory(prefix="edgeprune-vl-") as wd:
            sim = simulate(plan, x, reference(net, x), workdir=Path(wd))
        timings["verilator_s"] = round(time.time() - t0, 1)
        if not sim.bit_exact:
            raise RtlExportError(f"Verilator simulation is not bit-exact: "
                                 f"{sim.images - sim.exact_images} of {sim.images} images differ")
        if sim.latency_cycles != timing.latency_cycles or (
                sim.ii_cycles is not None and (sim.ii_min != timing.ii_cycles
                                               or sim.ii_max != timing.ii_cycles)):
            raise RtlExportError(f"Verilator cycles differ from the cycle model: II "
                                 f"{sim.ii_min}..{sim.ii_max} vs {timing.ii_cycles}, latency "
                                 f"{sim.latency_cycles} vs {timing.latency_cycles}")
        hw: Dict[str, Any] = {}
        t0 = time.time()
        if family == "ice40" and bitstream:
            (rtl / "edgeprune_uart_top.v").write_text(uart_wrapper(plan, target.clock_mhz))
            try:
                hw = bitstream_ice40(rtl, files + ["edgeprune_uart_top.v"],
                                     device=str(target.get("nextpnr_device") or "up5k"),
                                     package=str(target.get("package") or "sg48"),
                                     clock_mhz=target.clock_mhz)
            except EdgepruneError as e:
                if not allow_overflow:
                    raise FpgaExportError(f"does not fit {target.name}: {e} (nothing written; "
                                          f"more pruning, fewer bits, --style folded, or "
                                          f"--allow-overflow)") from None
                hw = {"error": str(e)}
        elif family == "xc7":
            try:
                syn = synthesize(rtl, files, TOP, "xc7", timeout=synth_timeout)
            except RtlError as e:
                if "took longer than" not in str(e):
                    raise
                syn = None               # no counts; the design itself is built and verified
                hw = {"synth_error": str(e)}
            if syn is not None:
                hw = {"synth": {k: v for k, v in syn.items() if k != "cells"},
                      "cells": syn["cells"]}
            over = [f"{r} {hw['synth'][k]:,} > {cap:,}" for r, k, cap in
                    (("LUT", "lut", target.lut), ("FF", "ff", target.ff),
                     ("RAMB18", "bram", target.bram18), ("DSP", "dsp", target.dsp))
                    if syn is not None and hw["synth"][k] > cap]
            if over and not allow_overflow:
                raise FpgaExportError(f"does not fit {target.name} ({target.part}): "
                                      f"{'; '.join(over)} (yosys synth_xilinx; nothing written)")
        timings["synthesis_s"] = round(time.time() - t0, 1)
        f_hz = target.clock_mhz * 1e6
        report = {
            "export": "rtl", "family": family,
            "target": {"name": target.name, "part": target.part, "clock_mhz": target.clock_mhz,
                       "capacity": target.capacity},
            "deployment": build.deployment.to_dict(),
            "quantization": quant_summary(prep),
            "integer_reference_vs_brevitas": ref_check,
            "units": [u.summary() for u in plan.units],
            "cycles": {"ii_model": timing.ii_cycles, "latency_model": timing.latency_cycles,
                       "ii_slowest_unit": plan.ii_cycles,
                       "fps_at_target_clock": f_hz / timing.ii_cycles},
            "verilator": sim.to_dict(),
            "accuracy_rtl": float(np.mean(sim.outputs.argmax(1) == prep.y_test[:n_sim])),
            "hardware": hw,
            "rtl_estimate": rtl_estimates(plan, family, build),
            "finn_style_estimate": build.estimate.to_dict(),
            "timings_s": timings,
            "files": sorted(files) + (["edgeprune_uart_top.v", "icebreaker.pcf",
                                       "edgeprune.bin"] if family == "ice40" and bitstream
                                      and "error" not in hw else []),
        }
        write_json(tmp / "report.json", report, sort_keys=True)
    return report
