"""`edgeprune export finn MODEL --target T -o OUT`: argparse only; the work is in
edgeprune/export/finn.py."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import (add_deployment_arguments, add_export_inputs, add_export_safety,
                     deployment_from_args, non_negative_int,
                     positive_float, positive_int)


def add_fpga_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by the FINN and hls4ml exporters."""
    add_export_inputs(parser, "FPGA")
    add_deployment_arguments(parser, fpga_only=True)
    parser.add_argument("--data", default=None, metavar="DATA",
                        help="fashion-mnist | mnist-10k | synthetic:CxHxW[:classes] | PATH: QAT data and verification images "
                             "(required)")
    parser.add_argument("--epochs", type=non_negative_int, default=2,
                        help="quantization-aware fine-tuning epochs (default 2; 0 = calibrate only)")
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                        help="cap on QAT steps per epoch (quick runs)")
    parser.add_argument("--verify-images", type=non_negative_int, default=1000, metavar="N",
                        help="test images run through QONNX vs Brevitas (0 = all; default 1000)")
    add_export_safety(parser, "write the project even if the design does not fit the part "
                               "(otherwise that is an error)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Quantize MODEL with Brevitas (QAT, pruned weights kept at zero), export QONNX verified "
        "against Brevitas, fold it for the target with edgeprune's FPGA cost model, and write a "
        "FINN build project: model.onnx, folding_config.json, specialize_layers_config.json, "
        "build.py, estimates.json, report.json and docker/ (run docker/run_finn_build.sh with "
        "Vivado to get a bitstream).")
    add_fpga_arguments(parser)


def common_inputs(args: argparse.Namespace):
    """(deployment, model) of an FPGA export. Bits not given on the command line come from the
    deployment a prune output recorded for the same target, so the export builds what the
    budgets were checked on; otherwise the FPGA default (W4A4)."""
    from ..artifacts import ModelDir
    from ..models.loading import load_model
    from ..targets import load_target

    target = load_target(args.target)
    recorded = {}
    if ModelDir.is_model_dir(args.model):
        dep = ModelDir(Path(args.model)).summary().get("deployment") or {}
        if dep.get("target") == target.name and dep.get("kind") == "fpga":
            recorded = {k: dep.get(k) for k in ("wbits", "abits", "fps")}
            if dep.get("bits_per_layer"):
                recorded["bits_per_layer"] = dep["bits_per_layer"]
    deployment = deployment_from_args(args, target=target, **recorded)
    model = load_model(args.model, weights=args.weights, trust_pickle=args.trust_pickle,
                       seed=args.seed)
    return deployment, model


def run(args: argparse.Namespace) -> int:
    from ..export.finn import export_finn

    dep, model = common_inputs(args)
    r = export_finn(model, dep, args.output, data=args.data,
                    model_name=Path(str(args.model)).name, epochs=args.epochs, lr=args.lr,
                    seed=args.seed, max_steps_per_epoch=args.max_steps,
                    verify_images=args.verify_images, overwrite=args.overwrite,
                    allow_overflow=args.allow_overflow)
    q, t = r["quantization"], r["estimate"]["totals"]
    acc = q["accuracy_quant"]
    print(f"wrote {args.output}: FINN project for {r['target']['finn_board']} "
          f"(W{q['wbits']}A{q['abits']}, accuracy {100 * acc:.2f} %); QONNX = Brevitas on "
          f"{q['qonnx_vs_brevitas']['images']} images (max |diff| "
          f"{q['qonnx_vs_brevitas']['max_abs_diff']:.2g})")
    print(f"estimate: {t['fps']:,.0f} FPS, latency {t['latency_ms']:.3f} ms, LUT {t['lut']}, "
          f"BRAM18 {t['bram18']}, DSP {t['dsp']}")
    if not t["fits"]:
        print(f"warning: written with --allow-overflow; the design does not fit "
              f"{r['target']['name']}, so a FINN build of it would fail placement")
        return 0
    print(f"next: FINN_XILINX_PATH=/tools/Xilinx FINN_XILINX_VERSION=2022.2 "
          f"{args.output}/docker/run_finn_build.sh {args.output}")
    return 0
