"""`edgeprune demo`: `edgeprune run recipes/demo.toml` (what `make demo` runs).

The demo recipe runs the whole flow on Fashion-MNIST + LeNet-5 for a Cortex-M4 (STM32L4R5) and
a Pynq-Z2 at 4-bit weights and activations:

  estimate   what the dense model costs on each target
  train      the dense model, 4 epochs
  prune      statistical pruning by channels, oriented by the M4's cost model, until its
             latency is under 25 ms; channels removed physically (shrink)
  quantize   4-bit weight clusters (M4 exports); W4A4 quantization-aware training (FPGA exports)
  export     TFLite-Micro and plain C for the M4; hls4ml and FINN projects for the Pynq-Z2
  verify     every artefact executed on the full test set (TFLM + LiteRT, the C host build,
             QONNX, the HLS C-simulation)
  report     OUT/report.html, figures/*.png, report.json
"""
from __future__ import annotations

from pathlib import Path

DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.toml"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run recipes/demo.toml: the whole flow on Fashion-MNIST + LeNet-5",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="runs/demo", help="output directory [runs/demo]")
    p.add_argument("--resume", action="store_true",
                   help="continue or refresh an earlier demo in OUT (unchanged stages are reused)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..flow.recipe import RecipeError
    from . import run as run_cmd
    if not DEMO_RECIPE.is_file():
        raise RecipeError(f"{DEMO_RECIPE}: the demo recipe is missing (it ships in the source tree; "
                          f"run 'edgeprune run RECIPE.toml' with your own recipe)")
    args.recipe = str(DEMO_RECIPE)
    return run_cmd.run(args)
