"""`edgeprune export tflm MODEL --target T -o OUT`: argparse only; the work is in
edgeprune/export/tflm.py."""
from __future__ import annotations

import argparse

from .common import deployment_from_args, non_negative_float, non_negative_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Quantize MODEL to int8, convert it to a TFLite-Micro flatbuffer "
                          "(LUT-compressed where it pays), verify it in the TFLM and LiteRT "
                          "interpreters, and write model.tflite, C sources, build snippets, "
                          "README.md and report.json into OUT.")
    parser.add_argument("model", metavar="MODEL",
                        help="zoo name, .pt2 program, edgeprune output dir, or pickled module")
    parser.add_argument("--target", "-t", required=True,
                        help="MCU target name (edgeprune targets) or path to a .toml")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    parser.add_argument("--weights", metavar="W", help="state_dict file for a zoo MODEL")
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
                        help="LUT-compress clustered weights: auto = only where flash + arena bytes "
                             "shrink together (decoded weights live in the arena); flash = wherever "
                             "the file shrinks and the arena still fits RAM; off = never [auto]")
    parser.add_argument("--no-compress", dest="compress", action="store_const", const="off",
                        help="same as --compress off")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--allow-overflow", action="store_true",
                        help="write the files even if the model does not fit the target's flash "
                             "or RAM (otherwise that is an error)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUT (files edgeprune did not write are kept)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading a pickled module (runs code from the file)")


def run(args: argparse.Namespace) -> int:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..export.tflm import export_tflm
    from ..models.loading import load_model

    dep = deployment_from_args(args)
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
          f"(estimate {r['arena_bytes_estimate']}), allocated {r['arena_bytes_allocated']} B; "
          f"TFLM vs LiteRT max {r['max_abs_diff_lsb_vs_litert']} LSB{acc}; ops "
          f"{', '.join(r['ops'])}")
    if r["compressed_layers"]:
        print(f"LUT-compressed: {', '.join(r['compressed_layers'])}")
    if fit.get("overflow"):
        print(f"warning: written with --allow-overflow; does not fit {r['target']}: "
              f"{'; '.join(fit['overflow'])}")
    return 0
