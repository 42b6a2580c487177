"""`edgeprune demo`: the main job end to end on the built-in default (Fashion-MNIST + LeNet-5).

It runs the same subcommands a user would type, printing each one first, so the demo doubles as
a worked example:

  1. estimate   what LeNet-5 costs on a Cortex-M4 (STM32L4R5) and on a Pynq-Z2, before pruning
  2. prune      statistical pruning while training, channel granularity, oriented by the M4's
                cost model until a latency budget is met; channels are removed physically
                (a dense baseline with the same seed and epochs is trained alongside)
  3. cluster    4-bit sparsity-preserving weight sharing, centroids fine-tuned
  4. export     tflm: int8 .tflite + C sources, verified in TFLM and LiteRT, arena measured
                hls:  hls4ml dataflow project, C-simulated bit-exactly against the W4A4 model
                finn: FINN build project (QONNX + folding + build.py) for the docker recipe
  5. summary    one table of what each step achieved, read back from the files it wrote
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from .common import positive_float, positive_int

MCU_TARGET = "stm32l4r5-m4"
FPGA_TARGET = "pynq-z2"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on Fashion-MNIST + LeNet-5",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="runs/demo", help="output directory [runs/demo]")
    p.add_argument("--epochs", type=positive_int, default=4, help="pruning epochs [4]")
    p.add_argument("--latency-ms", type=positive_float, default=25.0,
                   help="latency budget on the Cortex-M4 target in ms [25; dense LeNet-5: ~66]")
    p.add_argument("--data", default="fashion-mnist", help="dataset [fashion-mnist]")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run on a data subset (minutes less; figures not meaningful)")
    p.add_argument("--skip-fpga", action="store_true", help="skip the FINN and HLS exports")
    p.set_defaults(func=run)


def _step(title: str, argv: list) -> None:
    from . import main
    print(f"\n=== {title}\n$ edgeprune {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    t0 = time.time()
    rc = main(argv)
    if rc:
        from ..errors import EdgepruneError
        raise EdgepruneError(f"demo step '{title}' failed (exit {rc})")
    print(f"--- {title}: {time.time() - t0:.0f} s", flush=True)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = ["--n-train", "2000", "--n-test", "500"] if args.quick else []
    epochs = "1" if args.quick else str(args.epochs)
    t0 = time.time()

    _step("1a. estimate on an MCU", ["estimate", "lenet5", "--target", MCU_TARGET])
    _step("1b. estimate on an FPGA (W4A4)", ["estimate", "lenet5", "--target", FPGA_TARGET])
    _step("2. prune while training", [
        "prune", "lenet5", "--data", args.data, "--method", "statistical", "--granularity", "channel",
        "--orientation", "target", "--target", MCU_TARGET, "--budget", f"latency_ms={args.latency_ms:g}",
        "--epochs", epochs, *quick,
        "--overwrite", "-o", str(out / "prune")])
    _step("3. cluster-quantize (4 bit)", [
        "cluster", str(out / "prune"), "--data", args.data, "--bits", "4",
        "--epochs", "1", "--overwrite", "-o", str(out / "cluster")])
    _step("4a. export for TFLite-Micro", [
        "export", "tflm", str(out / "cluster"), "--target", MCU_TARGET, "--data", args.data,
        "--overwrite", "-o", str(out / "tflm")])
    if not args.skip_fpga:
        _step("4b. export an HLS dataflow project (C-simulated)", [
            "export", "hls", str(out / "prune"), "--target", FPGA_TARGET, "--data", args.data,
            "--epochs", "1", "--csim-images", "1000", "--overwrite", "-o", str(out / "hls")])
        _step("4c. export a FINN build project", [
            "export", "finn", str(out / "prune"), "--target", FPGA_TARGET, "--data", args.data,
            "--epochs", "1", "--overwrite", "-o", str(out / "finn")])
    _summary(out, time.time() - t0)
    return 0


def _summary(out: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table
    prune = _read(out / "prune" / "summary.json")
    cluster = _read(out / "cluster" / "summary.json")
    tflm = _read(out / "tflm" / "report.json")
    hls = _read(out / "hls" / "report.json")
    table = Table(title=f"edgeprune demo: LeNet-5 on {prune.get('dataset', 'fashion-mnist')} "
                        f"({seconds / 60:.1f} min)")
    table.add_column("step")
    table.add_column("result")

    def pct(v):
        return f"{100 * v:.2f} %" if isinstance(v, (int, float)) else "-"

    if prune:
        table.add_row("prune", f"accuracy {pct(prune.get('acc_dense'))} dense -> "
                               f"{pct(prune.get('acc_pruned'))} pruned; params "
                               f"{prune.get('params_dense')} -> {prune.get('params_nonzero')} "
                               f"({prune.get('params_compression', 0):.1f}x); MACs "
                               f"{prune.get('macs_reduction', 0):.1f}x fewer")
        before, after = prune.get("cost_dense") or {}, prune.get("cost_pruned") or {}
        if before and after:
            table.add_row(f"on {MCU_TARGET}",
                          f"latency {before['latency_ms']:.1f} -> {after['latency_ms']:.1f} ms; flash "
                          f"{before['flash_kb']:.1f} -> {after['flash_kb']:.1f} KB; RAM "
                          f"{before['ram_kb']:.1f} -> {after['ram_kb']:.1f} KB (cost model); "
                          f"budgets met: {prune.get('budgets_met')}")
    if cluster:
        table.add_row("cluster", f"accuracy {pct(cluster.get('acc_finetuned'))} after fine-tuning; "
                                 f"{cluster.get('bits_compression', 0):.1f}x fewer bits than dense "
                                 f"float32 (full accounting: indices, codebooks, sparse index, biases)")
    if tflm:
        table.add_row("tflm", f"flash {tflm.get('flash_bytes_actual')} B (estimate "
                              f"{tflm.get('flash_bytes_estimate')}); arena measured "
                              f"{tflm.get('arena_bytes_measured')} B (estimate "
                              f"{tflm.get('arena_bytes_estimate')}); int8 accuracy "
                              f"{pct(tflm.get('accuracy_int8'))} vs float {pct(tflm.get('accuracy_float'))}; "
                              f"max diff vs LiteRT {tflm.get('max_abs_diff_lsb_vs_litert')} LSB")
    if hls:
        cs = hls.get("csim", {})
        est = hls.get("finn_style_estimate", {}).get("totals", {})
        table.add_row("hls", f"C-sim bit-exact: {cs.get('bit_exact')} ({cs.get('exact_images')}/"
                             f"{cs.get('images')} images, accuracy {pct(cs.get('accuracy_csim'))}); "
                             f"hls4ml II estimate {hls.get('hls4ml_throughput_estimate', {}).get('fps', 0):.0f} FPS; "
                             f"FINN-style {est.get('fps', 0):.0f} FPS, LUT {est.get('lut')}")
    if (out / "finn" / "build.py").is_file():
        table.add_row("finn", f"project in {out / 'finn'}; with Vivado: "
                              f"{out / 'finn' / 'docker' / 'run_finn_build.sh'} {out / 'finn'}")
    table.add_row("files", str(out))
    Console().print(table)
