"""`edgeprune export hls MODEL --target T -o OUT`: argparse only; the work is in
edgeprune/export/hls.py."""
from __future__ import annotations

import argparse

from .common import non_negative_int
from .export_finn import add_fpga_arguments, common_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Quantize MODEL with Brevitas (QAT, pruned weights kept at zero), export QONNX, generate "
        "an hls4ml io_stream project (precision from the quantization, ReuseFactor/strategy from "
        "edgeprune's FPGA cost model), check the g++ C-simulation is bit-exact on test images, "
        "and write the Vitis HLS / Vivado flow (vivado/run_vivado.sh) to a bitstream.")
    add_fpga_arguments(parser)
    parser.add_argument("--csim-images", type=non_negative_int, default=1000, metavar="N",
                        help="test images run through the C-simulation (0 = all; default 1000)")
    parser.add_argument("--csim-opt", default="O3", choices=["O0", "O1", "O2", "O3"],
                        help="g++ optimisation level of the C-simulation build (default hls4ml's "
                             "O3; outputs are compared bit for bit at any level)")
    parser.add_argument("--no-axi-testbench", action="store_true",
                        help="skip compiling and running the AXI wrapper's C++ testbench")


def run(args: argparse.Namespace) -> int:
    from ..export.hls import export_hls

    dep, model = common_inputs(args)
    r = export_hls(model, dep, args.output, data=args.data, epochs=args.epochs, lr=args.lr,
                   seed=args.seed, max_steps_per_epoch=args.max_steps,
                   verify_images=args.verify_images, csim_images=args.csim_images,
                   axi_testbench=not args.no_axi_testbench, overwrite=args.overwrite,
                   allow_overflow=args.allow_overflow, csim_opt=args.csim_opt)
    q, c, h = r["quantization"], r["csim"], r["hls4ml_throughput_estimate"]
    print(f"wrote {args.output}: hls4ml project (W{q['wbits']}A{q['abits']}, accuracy "
          f"{100 * q['accuracy_quant']:.2f} %); C-simulation bit-exact on {c['exact_images']}/"
          f"{c['images']} test images (g++ {c['gxx_opt']}, build {c['build_s']:.0f} s)")
    print(f"estimate: {h['fps']:,.0f} FPS at {r['target']['clock_mhz']:g} MHz; layers: " +
          ", ".join(f"{l['node']} RF {l['reuse_factor']} {l['strategy']}"
                    for l in r["hls4ml_layers"]))
    print(f"next: cd {args.output}/vivado && ./run_vivado.sh   (Vitis HLS + Vivado on PATH)")
    return 0
