"""`edgeprune export rtl MODEL --target ice40-up5k|<xc7 target> -o OUT`: argparse only; the
work is in edgeprune/export/rtl.py."""
from __future__ import annotations

import argparse

from .common import non_negative_int
from .export_finn import add_fpga_arguments, common_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Quantize MODEL with Brevitas (QAT, pruned weights kept at zero), build its integer "
        "network, and write a Verilog streaming dataflow (sliding-window units, folded or "
        "unrolled MVUs with PE/SIMD from edgeprune's FPGA cost model, requantization, max "
        "pooling); check it in Verilator bit-exact and cycle-exact on test images; for iCE40 "
        "targets build a bitstream (yosys, nextpnr-ice40, icepack) with a UART wrapper for the "
        "iCEBreaker; for 7-series targets report yosys synth_xilinx cell counts.")
    add_fpga_arguments(parser)
    parser.add_argument("--style", choices=("folded", "unrolled", "auto"), default="folded",
                        help="MVU variant per layer: folded (weights in ROM, PE x SIMD "
                             "multipliers), unrolled (constant weights, LUTs scale with the "
                             "non-zero weights), auto (fewer estimated LUTs per layer)")
    parser.add_argument("--sim-images", type=non_negative_int, default=1000, metavar="N",
                        help="test images run through the Verilator simulation (0 = all; "
                             "default 1000)")
    parser.add_argument("--no-bitstream", action="store_true",
                        help="iCE40: skip place and route and the bitstream")


def run(args: argparse.Namespace) -> int:
    from ..export.rtl import export_rtl

    dep, model = common_inputs(args)
    r = export_rtl(model, dep, args.output, data=args.data, epochs=args.epochs, lr=args.lr,
                   seed=args.seed, max_steps_per_epoch=args.max_steps,
                   verify_images=args.verify_images, sim_images=args.sim_images,
                   style=args.style, bitstream=not args.no_bitstream, overwrite=args.overwrite,
                   allow_overflow=args.allow_overflow)
    v, c, q = r["verilator"], r["cycles"], r["quantization"]
    print(f"wrote {args.output}: RTL dataflow (W{q['wbits']}A{q['abits']}, "
          f"{len(r['units'])} units); Verilator bit-exact on {v['exact_images']}/{v['images']} "
          f"test images (accuracy {100 * r['accuracy_rtl']:.2f} %), II {c['ii_model']} cycles "
          f"= {c['fps_at_target_clock']:,.0f} FPS at {r['target']['clock_mhz']:g} MHz")
    hw = r["hardware"]
    if "placed" in hw:
        lc = hw["placed"]["lc"]
        print(f"bitstream {args.output}/rtl/edgeprune.bin: {lc.get('used')}/{lc.get('available')}"
              f" logic cells, {hw['synth']['lut']} LUT4, {hw['synth']['ff']} DFF, "
              f"{hw['synth']['bram']} EBR, {hw['synth']['dsp']} DSP, Fmax "
              f"{hw['fmax_mhz']} MHz")
    elif "synth" in hw:
        s = hw["synth"]
        print(f"yosys synth_xilinx: {s['lut']} LUT, {s['ff']} FF, {s['bram']} RAMB18, "
              f"{s['dsp']} DSP")
    elif "synth_error" in hw:
        print(f"warning: no resource counts (the design is written and verified): "
              f"{hw['synth_error']}")
    return 0
