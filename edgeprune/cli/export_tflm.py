"""`edgeprune export tflm MODEL --target T -o OUT`: argparse only; the work is in
edgeprune/export/tflm.py."""
from __future__ import annotations

import argparse

from .common import (add_export_inputs, add_export_safety, deployment_from_args,
                     non_negative_float, non_negative_int)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Quantize MODEL to int8, convert it to a TFLite-Micro flatbuffer "
                          "(LUT-compressed where it pays), verify it in the TFLM and LiteRT "
                          "interpreters, and write model.tflite, C sources, build snippets, "
                          "README.md and report.json into OUT.")
    add_export_inputs(parser, "MCU")
    parser.add_argument("--data", metavar="DATA", default=None,
                        help="fashion-mnist | mnist-10k | PATH: calibration (training split) and "
                             "verification (test split) images; default: random inputs, no "
                             "accuracy")
    parser.add_argument("--arena-margin", type=non_negative_float, default=0.1, metavar="F",
                        help="arena = measured minimum * (1 + F) (default 0.1)")
    parser.add_argument("--eval-samples", type=non_negative_int, default=1000, metavar="N",
                        help="test images verified in both interpreters (0 = all; default 1000)")
    parser.add_argument("--runtime", default=None,
                        help="tflm-cmsis-nn | tflm-reference [the target's]")
    parser.add_argument("--compress", choices=("auto", "flash", "off"), default=None,
                        help="compress weights per tensor: int4 (<= 16 uniform levels, packed two "
                             "per byte, run directly by CMSIS-NN) or a LUT (clustered weights, "
                             "decoded into the arena). auto = int4 where it applies, LUT only where "
                             "flash + arena bytes shrink together; flash = whichever file is "
                             "smallest while the arena fits RAM; off = never [auto]")
    parser.add_argument("--no-compress", dest="compress", action="store_const", const="off",
                        help="same as --compress off")
    add_export_safety(parser, "write the files even if the model does not fit the target's flash "
                               "or RAM (otherwise that is an error)")


def run(args: argparse.Namespace) -> int:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..export.tflm import export_tflm, gc_paused
    from ..models.loading import load_model

    dep = deployment_from_args(args)
    with gc_paused():          # torch's import too (see gc_paused)
        model = load_model(args.model, weights=args.weights, trust_pickle=args.trust_pickle,
                           seed=args.seed)
        r = export_tflm(model, dep, args.output, args.data, arena_margin=args.arena_margin,
                        n_eval=args.eval_samples, seed=args.seed, overwrite=args.overwrite,
                        allow_overflow=args.allow_overflow)
    acc = ""
    if r["accuracy_float"] is not None:
        acc = (f", accuracy float {100 * r['accuracy_float']:.2f} % / int8 "
               f"{100 * r['accuracy_int8']:.2f} %")
    fit = r["fits_target"]
    print(f"wrote {args.output}: model.tflite {r['flash_bytes_actual']} B (estimate "
          f"{r['flash_bytes_estimate']}), arena {r['arena_bytes_measured']} B measured "
          f"on the 64-bit host (estimate {r['arena_bytes_estimate']}), allocated "
          f"{r['arena_bytes_allocated']} B, about {r.get('arena_bytes_target_estimate', 'n/a')} B "
          f"used on the 32-bit target (TFLM + CMSIS-NN estimate); "
          f"TFLM vs LiteRT max {r['max_abs_diff_lsb_vs_litert']} LSB{acc}; ops "
          f"{', '.join(r['ops'])}")
    if r["compressed_layers"]:
        print(f"LUT-compressed: {', '.join(r['compressed_layers'])}")
    if r.get("int4_layers"):
        print(f"int4 weights: {', '.join(r['int4_layers'])} (the arena is sized for TFLM + "
              f"CMSIS-NN; TFLM's reference kernels unpack int4 into a larger arena)")
    if fit.get("overflow"):
        print(f"warning: written with --allow-overflow; does not fit {r['target']}: "
              f"{'; '.join(fit['overflow'])}")
    return 0
