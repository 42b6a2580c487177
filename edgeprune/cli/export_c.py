"""`edgeprune export c MODEL --target T -o OUT`: argparse only; the work is in
edgeprune/export/c.py."""
from __future__ import annotations

import argparse

from .common import add_export_inputs, add_export_safety, non_negative_int


def _layer_variants(text: str) -> dict:
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected LAYER=VARIANT, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Quantize MODEL to int8 (as 'export tflm' does) and generate plain-C "
                          "inference code for it (the edgeprune-c runtime: one static arena, "
                          "dense / sparse / clustered kernels chosen per layer), check it bit for "
                          "bit against TFLM and LiteRT on the host, cross-compile it for the "
                          "target core, and write the sources, README.md and report.json into OUT.")
    add_export_inputs(parser, "MCU")
    parser.add_argument("--data", metavar="DATA", default=None,
                        help="fashion-mnist | mnist-10k | PATH: calibration (training split) and "
                             "verification (test split) images; default: random inputs, no accuracy")
    parser.add_argument("--eval-samples", type=non_negative_int, default=1000, metavar="N",
                        help="test inputs run through the C build, TFLM and LiteRT (0 = all; "
                             "default 1000)")
    parser.add_argument("--objective", choices=("cycles", "flash"), default="cycles",
                        help="what the per-layer kernel choice minimises [cycles]")
    parser.add_argument("--variant", choices=("auto", "dense", "sparse", "clustered"), default="auto",
                        help="use this weight encoding for every weighted layer that allows it "
                             "[auto: chosen per layer for --objective]")
    parser.add_argument("--variant-per-layer", type=_layer_variants, default=None,
                        metavar="LAYER=V[,LAYER=V]", help="per-layer override, e.g. fc1=sparse")
    parser.add_argument("--rounding", choices=("tflm", "litert"), default="tflm",
                        help="requantization rounding to reproduce bit for bit: TFLM / CMSIS-NN "
                             "(double rounding) or LiteRT (its fully-connected layers round once) "
                             "[tflm]")
    add_export_safety(parser, "write the files even if the build does not fit the target's flash "
                               "or RAM (otherwise that is an error)")


def run(args: argparse.Namespace) -> int:
    from ..deploy import Deployment
    from ..export.c import export_c
    from ..models.loading import load_model

    dep = Deployment.for_target(args.target)
    model = load_model(args.model, weights=args.weights, trust_pickle=args.trust_pickle,
                       seed=args.seed)
    r = export_c(model, dep, args.output, args.data, n_eval=args.eval_samples,
                 objective=args.objective, variant=None if args.variant == "auto" else args.variant,
                 variant_per_layer=args.variant_per_layer, rounding=args.rounding, seed=args.seed,
                 overwrite=args.overwrite, allow_overflow=args.allow_overflow)
    ver = r["verification"]
    cross = r.get("cross") or {}
    acc = ""
    if r.get("accuracy_int8_c") is not None:
        acc = (f", accuracy float {100 * r['accuracy_float']:.2f} % / int8 C "
               f"{100 * r['accuracy_int8_c']:.2f} %")
    check = ("not run (no host C compiler)" if not ver.get("host_build") else
             f"identical to TFLM: {ver['identical_vs_tflm']}, to LiteRT reference: "
             f"{ver['identical_vs_litert_reference']} on {ver['samples']} inputs")
    print(f"wrote {args.output}: flash {cross.get('flash_bytes', 'n/a')} B, RAM "
          f"{cross.get('ram_bytes', 'n/a')} B (arena {r['arena_bytes']} B, TFLM's plan of the "
          f"same buffers {r['arena_bytes_tflm_greedy_plan']} B); {check}{acc}")
    print("kernels: " + ", ".join(f"{l['layer']}={l['variant']}" for l in r["layers"]))
    fit = r.get("fits_target") or {}
    if fit.get("overflow"):
        print(f"warning: written with --allow-overflow; does not fit {r['target']}: "
              f"{'; '.join(fit['overflow'])}")
    return 0
