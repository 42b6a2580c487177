#!/usr/bin/env python
"""Every zoo model through both FPGA exports (issue 13), on this machine.

For each model: Brevitas twin of the layer graph at the given bits, one QAT run with the shared
Trainer, QONNX executed with qonnx's execute_onnx against Brevitas (`fpga_prepare.prepare`), then
`export finn` and `export hls` (their Python entry points) on that one prepared model for the
given target: FINN project (folding from the cost model, checked
against FINN's divisibility rules and build-config schema), hls4ml project with its g++
C-simulation compared bit for bit with the quantized model.

Data. 28x28x1 models (lenet5, lenet300100, vgg_small) use Fashion-MNIST (real). resnet8
(32x32x3 CIFAR-10), dscnn (49x10 MFCCs), mobilenetv1_025 (96x96x3 visual wake words) and
fc_autoencoder (640 log-mel features) have no real data set on this machine: they use SYNTHETIC
labelled data (`edgeprune.data.synthetic_dataset`: class templates + noise), and their accuracy
columns measure nothing about the real task - they are there to show QAT ran. Models are
trained from their random initialisation by the QAT epochs only (no float pre-training).

A model whose estimate does not fit the target is retried on --fallback-target (the export's
"does not fit" error is recorded in the row).

Writes rows into benchmarks/results/fpga_zoo.json (key: model, target, wbits, abits) and the
table benchmarks/results/fpga_zoo.md; also the LFC-W1A1-style MLP cost-model estimate against
BNN-PYNQ's published Pynq-Z1 figure (--lfc).

Example:
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/fpga_zoo.py --csim-images 1000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402

ZOO_ORDER = ("lenet5", "lenet300100", "vgg_small", "resnet8", "dscnn", "mobilenetv1_025",
             "fc_autoencoder")
REAL_DATA = {"lenet5": "fashion-mnist", "lenet300100": "fashion-mnist",
             "vgg_small": "fashion-mnist", "lfc": "fashion-mnist"}
SYNTHETIC_CLASSES = {"resnet8": 10, "dscnn": 12, "mobilenetv1_025": 2, "fc_autoencoder": 10}

# BNN-PYNQ's LFC-W1A1 overlay for Pynq-Z1/Z2 (xc7z020), folding from its generated config
# (github.com/Xilinx/BNN-PYNQ, bnn/src/network/lfcW1A1/hw/config.h, commit 65f21243): per layer
# (MW, MH, SIMD, PE) = (832, 1024, 64, 32), (1024, 1024, 32, 64), (1024, 1024, 64, 32),
# (1024, 64, 8, 16); every layer takes MW/SIMD * MH/PE = 416..512 cycles a frame, so the
# dataflow's frame rate is at most clock / 512 (a bound from the folding, not a measurement).
# The clock: the Pynq-Z1/Z2 block design connects the accelerator's ap_clk to FCLK_CLK0 set to
# 100 MHz (bnn/src/library/script/pynqZ1-Z2/make-vivado-proj.tcl, commit d84f6e88:
# PCW_FPGA0_PERIPHERAL_FREQMHZ 100); its HLS core is synthesized for a 5 ns clock
# (bnn/src/network/hls-syn.tcl, commit 0157398a: config_clkperiod 5).
BNN_PYNQ_LFC_FOLDING = ((832, 1024, 64, 32), (1024, 1024, 32, 64), (1024, 1024, 64, 32),
                        (1024, 64, 8, 16))
BNN_PYNQ_CLOCK_MHZ = 100.0
BNN_PYNQ_HLS_CLOCK_MHZ = 200.0
# Issue 13's "about 357k img/s at 98.4 % on MNIST": BNN-PYNQ's notebook
# notebooks/LFC-QNN_MNIST.ipynb (commit 10b2ab55), run on the board: LfcClassifier(
# NETWORK_LFCW1A1, "mnist", RUNTIME_HW).classify_mnists over the 10,000 MNIST test images printed
# "Inference took 28040.00 microseconds, 2.80 usec per image" / "Classification rate: 356633.39
# images per second", and its accuracy cell "Accuracy W1A1:  98.4". The rate is the host's
# wall clock around the batch (chrono in the host library), the board is not named in the
# notebook (the package supports Pynq-Z1, Pynq-Z2, Ultra96), and the W1A2 cell prints the same
# 356633.39.
BNN_PYNQ_LFC_MEASURED = {
    "fps": 356_633.39, "usec_per_image": 2.80, "accuracy_pct": 98.4, "images": 10_000,
    "source": "Xilinx/BNN-PYNQ notebooks/LFC-QNN_MNIST.ipynb (commit 10b2ab55), W1A1 cells: "
              "'Classification rate: 356633.39 images per second' (2.80 usec per image over "
              "the 10,000 MNIST test images), 'Accuracy W1A1: 98.4'"}
LFC_WIDTHS = (784, 1024, 1024, 1024, 10)
# FINN's MVAU template arguments by operand type (github.com/Xilinx/finn, commit 1b826a2c,
# src/finn/custom_op/fpgadataflow/hls/matrixvectoractivation_hls.py, get_template_param_values)
FINN_LOW_BIT_PATH = (
    "At W1A2 FINN's MVAU keeps the weights bipolar in 1 bit and multiplies them with the "
    "integer input as a sign (`TWeightI = Recast<Binary>`, `TSrcI = Slice<input type>`: each "
    "product is +x or -x), then thresholds the accumulator to the 2-bit activation "
    "(MultiThreshold); at W2A2 it is the ordinary integer MVAU (`Slice<...>` / `Identity`). "
    "Source: Xilinx/finn (commit 1b826a2c) src/finn/custom_op/fpgadataflow/hls/"
    "matrixvectoractivation_hls.py, get_template_param_values.")
# a row's key in fpga_zoo.json (input_bits: absent = uint8 pixels; qat_lr: absent = QAT_LR)
KEY = ("model", "target", "wbits", "abits", "input_bits", "data", "qat_lr")
QAT_LR = 1e-3           # edgeprune.quant.fpga_prepare.prepare's default


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(ZOO_ORDER),
                   help="zoo models, or 'lfc' (FINN's 784-1024x3-10 MLP, for --wbits 1 --abits 1)")
    p.add_argument("--target", default="pynq-z2")
    p.add_argument("--fallback-target", default="zcu104")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--input-bits", type=int, default=8, choices=[8, 1],
                   help="network input: 8 = uint8 pixels, 1 = pixels binarized on the host "
                        "(pixel >= 128 -> +1, else -1), as BNN-PYNQ's LFC")
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-lr", type=float, default=QAT_LR, help="Adam learning rate of the QAT")
    p.add_argument("--max-steps", type=int, default=50, help="QAT steps per epoch (0 = all)")
    p.add_argument("--train-images", type=int, default=4096,
                   help="training images used, 0 = the whole training split (synthetic sets "
                        "are generated at this size)")
    p.add_argument("--data", default="",
                   help="a real data set for every model of the run (e.g. mnist-10k: its "
                        "8,000 / 2,000 split); default: fashion-mnist for the 28x28 models, "
                        "synthetic data for the others")
    p.add_argument("--progress", action="store_true", help="a line per QAT epoch")
    p.add_argument("--verify-images", type=int, default=1000)
    p.add_argument("--csim-images", type=int, default=1000)
    p.add_argument("--csim-opt", default="O3", choices=["O0", "O1", "O2", "O3"],
                   help="g++ optimisation level of the hls4ml C-simulation build (hls4ml's "
                        "default O3; the C-sim is integer ap_fixed arithmetic, checked bit-exact "
                        "either way)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="/tmp/edgeprune_fpga_zoo")
    p.add_argument("--no-lfc", action="store_true", help="skip the LFC-W1A1 estimate row")
    p.add_argument("--rows-from-reports", metavar="OUT_DIR", default=None,
                   help="write rows (FINN side only, C-sim marked not finished) from the "
                        "finn/report.json of earlier runs under OUT_DIR/<model>/ whose hls stage "
                        "did not finish; --run-command names the run that made them")
    p.add_argument("--run-command", default="",
                   help="with --rows-from-reports: the command that produced the reports")
    p.add_argument("--hls-note", default="",
                   help="with --rows-from-reports: why the hls4ml C-simulation did not finish")
    return p.parse_args(argv)


def dataset_for(name, model, args):
    from edgeprune.data import load_dataset, synthetic_dataset
    if args.data or name in REAL_DATA:
        spec = args.data or REAL_DATA[name]
        ds = load_dataset(spec)
        # the QAT accuracy is measured on the whole test split; the exports check its first
        # --verify-images / --csim-images images
        ds = ds.subset(args.train_images or None, None)
        return ds, spec + " (real)"
    shape = tuple(model.input_shape)
    n_test = max(args.verify_images, args.csim_images, 1)
    ds = synthetic_dataset(shape, SYNTHETIC_CLASSES[name], args.train_images, n_test,
                           seed=args.seed)
    return ds, f"{ds.name} (SYNTHETIC: no real data set here)"


def run_model(name, args):
    import torch
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.finn import export_finn
    from edgeprune.export.fpga_common import check_fits
    from edgeprune.export.hls import export_hls
    from edgeprune.models import build
    from edgeprune.quant.fpga_prepare import prepare
    from edgeprune.targets import load_target

    import dataclasses

    torch.manual_seed(args.seed)
    model = (lfc_model() if name == "lfc" else build(name)).eval()
    ds, data_label = dataset_for(name, model, args)
    row = {"model": name, "wbits": args.wbits, "abits": args.abits, "data": data_label,
           "qat_epochs": args.qat_epochs, "qat_steps_per_epoch": args.max_steps or None,
           "train_images": int(len(ds.x_train)), "test_images": int(len(ds.x_test)),
           "command": command_line()}
    if args.input_bits != 8:          # rows without the field: uint8 pixel input
        row["input_bits"] = args.input_bits
    if args.qat_lr != QAT_LR:         # rows without the field: the default learning rate
        row["qat_lr"] = args.qat_lr
    from edgeprune.deploy import Deployment
    out = Path(args.out_dir) / name
    shutil.rmtree(out, ignore_errors=True)

    def deployment(target):
        return dataclasses.replace(Deployment.for_target(load_target(target), wbits=args.wbits,
                                                         abits=args.abits),
                                   input_bits=args.input_bits)

    target = args.target
    dep = deployment(target)
    try:
        check_fits(model, dep)
    except EdgepruneError as e:
        if "does not fit" not in str(e):
            raise
        row["does_not_fit"] = {"target": target, "error": str(e)}
        target = args.fallback_target
        dep = deployment(target)
    # One QAT run, shared by both exports: the FINN and hls4ml projects get the same model.onnx
    # bytes, and the row's QONNX = Brevitas figure is this run's check on --verify-images.
    t0 = time.time()
    prep = prepare(model, dep, out / "prepared" / "model.onnx", data=ds, epochs=args.qat_epochs,
                   lr=args.qat_lr, seed=args.seed, max_steps_per_epoch=args.max_steps or None,
                   verify_images=args.verify_images, progress=args.progress)
    row["prepare_s"] = round(time.time() - t0, 1)
    t1 = time.time()
    finn = export_finn(model, dep, out / "finn", data=ds, model_name=name, prepared=prep,
                       progress=False)
    row["finn_s"] = round(time.time() - t1, 1)
    t2 = time.time()
    hls = export_hls(model, dep, out / "hls", data=ds, csim_images=args.csim_images,
                     csim_opt=args.csim_opt, prepared=prep, progress=False)
    row["hls_s"] = round(time.time() - t2, 1)
    tot = finn["estimate"]["totals"]
    q = finn["quantization"]
    row.update({
        "target": target,
        "fps_estimate": round(tot["fps"], 1), "lut": tot["lut"], "bram18": tot["bram18"],
        "dsp": tot["dsp"], "utilisation_pct": tot["utilisation_pct"], "fits": tot["fits"],
        "accuracy_quant": q["accuracy_quant"],
        "qonnx_vs_brevitas": q["qonnx_vs_brevitas"],
        "finn_layers": sorted({l["op_type"] for l in finn["folding"]["layers"]}),
        "csim": hls["csim"],
        "same_model_onnx_in_both_exports": (out / "finn" / "model.onnx").read_bytes() ==
        (out / "hls" / "model.onnx").read_bytes(),
        "hls4ml_fps_estimate": round(hls["hls4ml_throughput_estimate"]["fps"], 1),
        "hls4ml_strategies": sorted({l["strategy"] for l in hls["hls4ml_layers"]}),
        "axi_testbench_ok": bool(hls["axi_testbench"]) and hls["axi_testbench"]["returncode"] == 0,
    })
    return row


def bnn_pynq_lfc_fps() -> float:
    """Frame-rate bound of BNN-PYNQ's LFC-W1A1 folding: clock / slowest layer's cycles."""
    cycles = max((mw // simd) * (mh // pe) for mw, mh, simd, pe in BNN_PYNQ_LFC_FOLDING)
    return BNN_PYNQ_CLOCK_MHZ * 1e6 / cycles


def row_from_finn_report(name, args):
    """A row from an earlier run's FINN report (its hls4ml stage did not finish)."""
    rep = json.loads((Path(args.rows_from_reports) / name / "finn" / "report.json").read_text())
    tot, q = rep["estimate"]["totals"], rep["quantization"]
    return {"model": name, "wbits": q["wbits"], "abits": q["abits"], "data": q["dataset"] +
            (" (real)" if name in REAL_DATA else " (SYNTHETIC: no real data set here)"),
            "qat_epochs": q["qat_epochs"], "qat_steps_per_epoch": args.max_steps or None,
            "target": rep["target"]["name"],
            "fps_estimate": round(tot["fps"], 1), "lut": tot["lut"], "bram18": tot["bram18"],
            "dsp": tot["dsp"], "utilisation_pct": tot["utilisation_pct"], "fits": tot["fits"],
            "accuracy_quant": q["accuracy_quant"], "qonnx_vs_brevitas": q["qonnx_vs_brevitas"],
            "finn_layers": sorted({l["op_type"] for l in rep["folding"]["layers"]}),
            "csim": None, "csim_note": args.hls_note,
            "command": args.run_command, "row_written_by": command_line()}


def lfc_model():
    """FINN's LFC topology: 784-1024-1024-1024-10 with BatchNorm + ReLU (a sign at 1 bit)."""
    import torch.nn as nn

    layers = [nn.Flatten()]
    for a, b in zip(LFC_WIDTHS[:-1], LFC_WIDTHS[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    model = nn.Sequential(*layers[:-2])
    model.input_shape = (1, 28, 28)
    return model


def lfc_row(args):
    """The LFC topology (784-1024-1024-1024-10) at W1A1 through the FPGA cost model, with uint8
    pixel input (what edgeprune's exports take) and with 1-bit input (BNN-PYNQ binarizes the
    pixels, so its first layer is XNOR-popcount too)."""
    import dataclasses

    from edgeprune.cost.fpga import estimate_fpga
    from edgeprune.deploy import Deployment
    from edgeprune.graph import extract
    from edgeprune.targets import load_target

    g = extract(lfc_model(), (1, 28, 28))
    dep = Deployment.for_target(load_target(args.target), wbits=1, abits=1)
    t = estimate_fpga(g, dep).totals
    t1 = estimate_fpga(g, dataclasses.replace(dep, input_bits=1)).totals
    ref = bnn_pynq_lfc_fps()
    return {"model": "lfc_mlp_784-1024x3-10", "target": args.target, "wbits": 1, "abits": 1,
            "fps_estimate": round(t["fps"], 1), "lut": t["lut"], "bram18": t["bram18"],
            "dsp": t["dsp"], "fits": t["fits"],
            "input_1bit": {"fps_estimate": round(t1["fps"], 1), "lut": t1["lut"],
                           "bram18": t1["bram18"], "dsp": t1["dsp"], "fits": t1["fits"]},
            "published": {"fps_bound": round(ref, 1), "board": "Pynq-Z1/Z2 (xc7z020), 100 MHz",
                          "source": "BNN-PYNQ lfcW1A1 folding (bnn/src/network/lfcW1A1/hw/"
                                    "config.h): 512 cycles per frame in its slowest layers",
                          "fps_bound_at_hls_clock": round(ref * BNN_PYNQ_HLS_CLOCK_MHZ /
                                                          BNN_PYNQ_CLOCK_MHZ, 1),
                          "measured": BNN_PYNQ_LFC_MEASURED},
            "estimate_over_published": round(t1["fps"] / ref, 3),
            "estimate_over_measured": round(t1["fps"] / BNN_PYNQ_LFC_MEASURED["fps"], 3),
            "measured_over_bound": round(BNN_PYNQ_LFC_MEASURED["fps"] / ref, 3),
            "note": "cost-model estimates (W1A1 layers priced as XNOR-popcount where weights and "
                    "inputs are both 1-bit)",
            "command": command_line()}


def qat_schedule(r) -> str:
    """'2 ep. x all steps, 60,000 train images' (rows before train_images: without it)."""
    txt = f"{r.get('qat_epochs')} ep. x {r.get('qat_steps_per_epoch') or 'all'} steps"
    if r.get("qat_lr"):
        txt += f", lr {r['qat_lr']:g}"
    if r.get("train_images"):
        txt += f", {r['train_images']:,} train images"
    return txt


def is_full_qat(r) -> bool:
    """A QAT accuracy worth quoting: real data, whole epochs (not the capped smoke rows)."""
    return "csim" in r and r["data"].endswith("(real)") and not r.get("qat_steps_per_epoch")


def accuracy_lines(rows):
    full = [r for r in rows if is_full_qat(r)]
    if not full:
        return []
    out = ["", "## QAT accuracy on real data (whole epochs)", "",
           "Rows of the table above trained for whole epochs on a real data set (the others are "
           "capped at 50 steps per epoch: they show that QAT runs, not what it reaches). Each "
           "model is trained from its random initialisation by QAT alone (no float "
           "pre-training), Adam (lr 1e-3 unless the row says), batch 128, with the shared Trainer "
           "(`edgeprune.quant.qat`), one QAT run per row shared by both exports; accuracy on "
           "the whole test split (fashion-mnist: 10,000 images; mnist-10k: its last 2,000). "
           "The exports of these trained models are the ones verified in the row (QONNX = "
           "Brevitas, C-sim).", "",
           "| model | W/A | data | train images | epochs | QAT acc. | QONNX=Brevitas | C-sim "
           "bit-exact | command |", "|---|---|---|---|---|---|---|---|---|"]
    for r in full:
        q, c = r["qonnx_vs_brevitas"], r["csim"]
        out.append(
            f"| {r['model']} | W{r['wbits']}A{r['abits']}"
            f"{' (1-bit input)' if r.get('input_bits') == 1 else ''} | {r['data']} | "
            f"{r.get('train_images', 0):,} | {r['qat_epochs']}"
            f"{' (lr %g)' % r['qat_lr'] if r.get('qat_lr') else ''} | "
            f"**{100 * r['accuracy_quant']:.2f} %** | {q['max_abs_diff']:g} on {q['images']} | "
            f"{c['exact_images']}/{c['images']} | `{r['command']}` |")
    for r in full:
        same = [x for x in full if x is not r and x.get("qat_lr") and not r.get("qat_lr")
                and all(x.get(k) == r.get(k) for k in ("model", "wbits", "abits", "data",
                                                      "input_bits", "qat_epochs"))]
        for x in same:
            out += ["", f"{r['model']} W{r['wbits']}A{r['abits']}, {r['qat_epochs']} epochs: "
                    f"{100 * r['accuracy_quant']:.2f} % at the default lr {QAT_LR:g}, "
                    f"{100 * x['accuracy_quant']:.2f} % at lr {x['qat_lr']:g} (every other "
                    f"row: the default). One learning rate does not suit every model here: "
                    f"the rows are what these runs reached, not tuned results."]
    mn = [r for r in full if r["model"] == "lfc" and r["data"].startswith("mnist-10k")]
    if mn:
        r, m = mn[0], BNN_PYNQ_LFC_MEASURED
        out += ["", f"LFC W1A1 on MNIST: **{100 * r['accuracy_quant']:.2f} %** here, trained on "
                f"{r.get('train_images', 0):,} images (the first 8,000 of the official MNIST "
                f"test set, the only MNIST on this machine; tested on its last 2,000), "
                f"{r['qat_epochs']} epochs; BNN-PYNQ's LFC-W1A1 reaches {m['accuracy_pct']} % on "
                f"the 10,000 test images trained on the 60,000-image MNIST training set "
                f"({m['source']}). Not like for like: 7.5x fewer training images, fewer epochs, "
                f"and a different test set."]
    return out


def lfc_lines(r, rows):
    p, i1 = r["published"], r.get("input_1bit")
    if i1 is None or "fps_bound" not in p:     # a row from before the XNOR cost form
        return [f"784-1024-1024-1024-10 at W1A1 on {r['target']}: estimate "
                f"{r['fps_estimate']:,.0f} img/s. Command: `{r['command']}`."]
    out = [
        f"784-1024-1024-1024-10 at W1A1 on {r['target']} (cost model, XNOR-popcount layers): "
        f"**{r['fps_estimate']:,.0f} img/s** with uint8 pixel input ({r['lut']:,} LUT, "
        f"{r['bram18']} BRAM18), **{i1['fps_estimate']:,.0f} img/s** with 1-bit input as "
        f"BNN-PYNQ's LFC ({i1['lut']:,} LUT, {i1['bram18']} BRAM18). {r['note']}. Command: "
        f"`{r['command']}`."]
    m = p.get("measured")
    if m:
        out += ["", "The 357k img/s of issue 13 is BNN-PYNQ's own measurement: " + m["source"] +
                f". BNN-PYNQ's LFC-W1A1 folding ({p['source']}) bounds its dataflow at "
                f"{p['fps_bound']:,.0f} img/s at the 100 MHz that its Pynq-Z1/Z2 block-design "
                f"script gives the accelerator (FCLK_CLK0; bnn/src/library/script/pynqZ1-Z2/"
                f"make-vivado-proj.tcl), and edgeprune's estimate for the same folding at "
                f"pynq-z2's 100 MHz is the same: ratio {r['estimate_over_published']}. The "
                f"measured {m['fps']:,.0f} img/s is {r['measured_over_bound']}x that bound "
                f"(2.80 us = 280 cycles at 100 MHz, fewer than the 512 cycles its slowest "
                f"layers need per image), so the overlay that was measured cannot have run "
                f"this folding at 100 MHz. The sources do not say which clock or folding it "
                f"had; its HLS core is synthesized for a 5 ns clock (bnn/src/network/"
                f"hls-syn.tcl), at which the bound is {p['fps_bound_at_hls_clock']:,.0f} img/s "
                f"and the measurement would be {m['fps'] / p['fps_bound_at_hls_clock']:.0%} of "
                f"it - consistent with a 200 MHz overlay, not shown by any source found. So "
                f"edgeprune's {i1['fps_estimate']:,.0f} img/s is {r['estimate_over_measured']}x "
                f"the measured rate: the estimate models the folding at the target's 100 MHz "
                f"clock (`targets/pynq-z2.toml`), and the gap is the clock (a 2x faster clock "
                f"gives 2x the bound), not the per-layer cycle count."]
    else:
        out += ["", f"BNN-PYNQ's own LFC-W1A1 folding ({p['source']}) bounds its overlay at "
                f"{p['fps_bound']:,.0f} img/s on {p['board']}: ratio "
                f"{r['estimate_over_published']}."]
    ex = [x for x in rows if x["model"] == "lfc" and x.get("input_bits") == 1 and x.get("csim")]
    for x in ex:
        out += ["", f"The 1-bit-input LFC exported on {x['data']} (row `lfc` W1A1 (1-bit input) "
                f"above: pixels binarized on the host, the first layer XNOR-popcount too, FINN "
                f"project generated and schema-checked): {x['fps_estimate']:,.0f} img/s est. "
                f"from the folding of the exported design ({x['lut']:,} LUT, {x['bram18']} "
                f"BRAM18), QONNX = Brevitas max |diff| "
                f"{x['qonnx_vs_brevitas']['max_abs_diff']:g} on "
                f"{x['qonnx_vs_brevitas']['images']}, C-sim {x['csim']['exact_images']}/"
                f"{x['csim']['images']}, QAT accuracy {100 * x['accuracy_quant']:.2f} % "
                f"({qat_schedule(x)}). Command: `{x['command']}`."]
    return out


def zoo_ops_unsupported():
    """{column: [(model, layer, op kind)]} of the zoo's layers that the FPGA columns of the
    support matrix (`edgeprune ops`) do not support."""
    import torch
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.support_matrix import table

    torch.manual_seed(0)
    graphs = {m: extract(build(m)) for m in ZOO_ORDER}
    ops = sorted({n.op.value for g in graphs.values() for n in g.nodes})
    bad = {c: [(m, n.name, n.op.value) for m, g in graphs.items() for n in g.nodes
               if not table(c)[n.op].supported] for c in ("fpga-export", "fpga-cost")}
    return ops, bad


def overflow_of(error: str) -> str:
    """The overflowing resources of an export's "does not fit" error."""
    import re
    m = re.search(r"does not fit (\S+).*?fully folded: (.*?) \(", error)
    return f"does not fit {m.group(1)}: {m.group(2)}" if m else error


def audit_lines(rows):
    """Issue 13's "Done means", item by item, from the rows above and the support matrix."""
    out = ["", "## Issue 13 \"Done means\", item by item", ""]
    zoo = {}
    for r in rows:
        if r["model"] in ZOO_ORDER and "csim" in r and (r["wbits"], r["abits"]) == (4, 4):
            zoo.setdefault(r["model"], r)
    ok = [m for m, r in zoo.items() if r.get("csim") and r["csim"]["bit_exact"]
          and r["qonnx_vs_brevitas"]["max_abs_diff"] == 0 and r["fits"]]
    on_part = sorted({zoo[m]["target"] for m in ok})
    out.append(
        f"1. *`export finn` and `export hls` succeed on all seven zoo models on pynq-z2 (or "
        f"report \"does not fit\")*: **{'met' if len(ok) == len(ZOO_ORDER) else 'not met'}** - "
        f"{len(ok)}/{len(ZOO_ORDER)} zoo models have a W4A4 row on {', '.join(on_part)} that "
        f"fits the part, with a FINN project generated and schema-checked and an hls4ml "
        f"project whose C-simulation is bit-exact ({', '.join(ok)}). The rows call "
        f"`export_finn` / `export_hls`, the functions `edgeprune export finn|hls` run "
        f"(`edgeprune/cli/export_finn.py`, `export_hls.py`). \"Does not fit\" is exercised too: "
        + "; ".join(f"{r['model']} W{r['wbits']}A{r['abits']} on {r['does_not_fit']['target']}:"
                    f" \"{overflow_of(r['does_not_fit']['error'])}\", built on {r['target']}"
                    for r in rows if r.get("does_not_fit")) + ".")
    table_rows = [r for r in rows if "csim" in r]
    exact = [r for r in table_rows if r.get("csim") and r["csim"]["bit_exact"]
             and r["qonnx_vs_brevitas"]["max_abs_diff"] == 0]
    out.append(
        f"2. *Each export verified, in tests with tiny weights and in a committed benchmark "
        f"table (model, W/A, FPS and LUT/BRAM/DSP estimates, QONNX = Brevitas, C-sim "
        f"bit-exact)*: **{'met' if len(exact) == len(table_rows) else 'not met'}** - "
        f"{len(exact)}/{len(table_rows)} rows of the table above have QONNX = Brevitas max "
        f"|diff| 0 and a bit-exact C-sim on "
        f"{min(r['csim']['images'] for r in exact) if exact else 0:,}+ images; tiny-weight "
        f"tests: `tests/test_fpga_zoo.py` (every zoo model's twin, QAT, QONNX = Brevitas, FINN "
        f"folding legal on pynq-z2), `tests/test_fpga_hls.py` (C-sim of the toy graph with "
        f"every zoo op), `tests/test_fpga_bipolar.py` (W1A1/W1A2/W2A2), "
        f"`tests/test_fpga_finn.py`.")
    ops, bad = zoo_ops_unsupported()
    from edgeprune.support_matrix import table
    rtl = [k.value for k, v in table("rtl-export").items() if k.value in ops and not v.supported]
    n_bad = sum(len(v) for v in bad.values())
    out.append(
        f"3. *The FPGA support matrix has no \"unsupported\" row for any op the zoo uses*: "
        f"**{'met' if not n_bad else 'not met'}** - the zoo's layers hold the op kinds "
        f"{', '.join(ops)}; every one is supported in the `fpga-export` column (the "
        f"Brevitas/QONNX twin that export finn and export hls share) and the `fpga-cost` "
        f"column (FINN-style layers, folding) of `edgeprune ops`"
        + ("" if not n_bad else f"; unsupported: {bad}") +
        " (checked here and by `tests/test_fpga_zoo.py::"
        "test_no_zoo_op_is_unsupported_by_the_fpga_export`)."
        + (f" The `rtl-export` column (the Verilog exporter, not FINN/hls4ml) still has "
           f"unsupported rows for zoo ops: {', '.join(rtl)}." if rtl else ""))
    full = [r for r in rows if is_full_qat(r)]
    out.append(
        f"4. *Build item 5: QAT with the shared Trainer, tiny epochs in tests, real accuracy "
        f"figures in benchmarks/*: **{'met' if full else 'not met'}** - {len(full)} rows "
        f"trained for whole epochs on real data (section \"QAT accuracy on real data\"); "
        f"resnet8, dscnn, mobilenetv1_025 and fc_autoencoder have no real data set here and "
        f"run on SYNTHETIC data (accuracy meaningless, said in their rows).")
    return out


def write_md(rows):
    lines = ["# FPGA exports of the zoo (`benchmarks/fpga_zoo.py`)", "",
             "Rows from `benchmarks/results/fpga_zoo.json`; the command is in each row. FPS/LUT/"
             "BRAM18/DSP: edgeprune's FINN-style estimate of the folded FINN design (not a "
             "synthesis report). QONNX = Brevitas: qonnx `execute_onnx` vs Brevitas on the "
             "verify images (max |diff|). C-sim: hls4ml's g++ C-simulation, images whose "
             "integer outputs equal the Brevitas model's. Data marked SYNTHETIC: no real data "
             "set on this machine, accuracy meaningless. QAT acc.: rows that name their "
             "training images are evaluated on the whole test split; the rows that do not come "
             "from this script before it recorded them (4,096 training images, accuracy on the "
             "first 1,000 test images; their command now evaluates on the whole split).", "",
             "| model | data | target | W/A | FPS est. | LUT | BRAM18 | DSP | QONNX=Brevitas "
             "(max diff, images) | C-sim bit-exact | QAT acc. |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "csim" not in r:
            continue
        q, c = r["qonnx_vs_brevitas"], r["csim"]
        if c:
            opt = c.get("gxx_opt", "-O3")
            build = f", build {c['build_s']:.0f} s" if c.get("build_s") is not None else ""
            if r.get("hls4ml_strategies"):
                build += "; " + "+".join(r["hls4ml_strategies"])
            cs = f"{c['exact_images']}/{c['images']} (g++ {opt}{build})"
        else:
            cs = f"not finished ({r.get('csim_note')})"
        lines.append(
            f"| {r['model']} | {r['data']} | {r['target']}"
            f"{' (does not fit ' + r['does_not_fit']['target'] + ')' if r.get('does_not_fit') else ''}"
            f" | W{r['wbits']}A{r['abits']}{' (1-bit input)' if r.get('input_bits') == 1 else ''}"
            f" | {r['fps_estimate']:,.0f} | {r['lut']:,} | "
            f"{r['bram18']} | {r['dsp']} | {q['max_abs_diff']:g} on {q['images']} | "
            f"{cs} | {100 * r['accuracy_quant']:.1f} % ({qat_schedule(r)}) |")
    lines += ["", "C-sim build: seconds of hls4ml's g++ build (`build_lib.sh`) of the row's run, "
              "and the hls4ml kernels of its conv/dense layers. A row without a build time is "
              "from a run before the export returned it (`f0f9178`). Before the kernel choice "
              "of `edgeprune/export/hls.py` (`choose_strategy`), "
              "large layers used hls4ml's `Resource_Unrolled` kernel, one generated C++ "
              "statement per non-zero weight in one function (lenet300100: a 41 MB "
              "`nnet_code_gen.h`), whose g++ build did not finish within their runs' timeouts "
              "at -O3, nor in 565 s at -O0 (`g++ -O0 -fPIC -std=c++23 -Ifirmware/ap_types/ -c "
              "firmware/edgeprune_net.cpp` in that project, killed). Now `Resource_Unrolled` is "
              "kept for pruned layers (>= 25 % zero weights) and large dense layers use "
              "`Resource`" + "".join(
                  f": {r['model']}'s build now takes {r['csim']['build_s']:.0f} s at "
                  f"{r['csim']['gxx_opt']} (its row)" for r in rows
                  if r["model"] == "lenet300100" and (r.get("csim") or {}).get("build_s")) +
              "."]
    low = [r for r in rows if "csim" in r and (r["wbits"], r["abits"]) in ((1, 2), (2, 2))]
    if low:
        lines += ["", "## W1A2 and W2A2: which FINN path", "",
                  "FINN's XNOR-popcount datapath (`Recast<XnorMul>`) is used only where both the "
                  "weights and the layer's input are bipolar (W1A1). " + FINN_LOW_BIT_PATH +
                  " edgeprune's cost model prices them so (XNOR-popcount only at 1-bit weights "
                  "and 1-bit input, `backends/finn/layers.py` `is_xnor`); the hls4ml export keeps "
                  "1-bit weights as +-1 in 2-bit integers and sets the accumulator type "
                  "(`export/hls.py` `_wide_accumulator_type`). Rows: " + "; ".join(
                      f"{r['model']} W{r['wbits']}A{r['abits']}: FINN layers "
                      f"{', '.join(r['finn_layers'])}" for r in low) + "."]
    lines += accuracy_lines(rows)
    lfc = [r for r in rows if r["model"].startswith("lfc_mlp")]
    if lfc:
        lines += ["", "## LFC-W1A1-style MLP: cost model vs BNN-PYNQ", ""] + lfc_lines(lfc[0], rows)
    lines += audit_lines(rows)
    (RESULTS / "fpga_zoo.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = []
    if args.rows_from_reports:
        rows = [row_from_finn_report(m, args) for m in args.models.split(",") if m]
        write_md(upsert_rows("fpga_zoo.json", rows, KEY))
        return
    if not args.no_lfc:
        rows.append(lfc_row(args))
        print(json.dumps(rows[-1]), flush=True)
    for name in [m for m in args.models.split(",") if m]:
        row = run_model(name, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
        table = upsert_rows("fpga_zoo.json", rows, KEY)
        write_md(table)
    table = upsert_rows("fpga_zoo.json", rows, KEY)
    write_md(table)


if __name__ == "__main__":
    main()
