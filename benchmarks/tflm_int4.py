#!/usr/bin/env python3
"""int4 weights on TFLite-Micro + CMSIS-NN: a 4-bit LeNet-5 exported as dense int8
(`--compress off`), with every weight tensor int4 (`--compress flash`), and with `--compress
auto` on the 2 MB-flash STM32L4R5 and on the same part with 256 KB of flash; built against a
TFLM tree and run on QEMU's Cortex-M4 (`edgeprune verify --qemu cortex-m4`).

    .venv/bin/python benchmarks/tflm_int4.py --tflm-root DIR [--cache DIR]

The 4-bit LeNet-5: the zoo's lenet5 with seeded random weights, each conv / linear weight
rounded to 15 symmetric levels (-7..7) x one step per layer (max |w| / 7), the form 4-bit
quantization-aware training leaves; quantized on Fashion-MNIST images. Measured per variant:
weight bytes in the .tflite (the conv / FC filter buffers), file size, arena_used_bytes() on
the target and its arm32 estimate, instructions and TRM cycles per invoke, and whether the
QEMU outputs equal TFLM's host interpreter's on the same inputs.
Writes benchmarks/results/tflm_int4.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from common import RESULTS, command_line  # noqa: E402


def four_bit_lenet5(seed: int):
    import torch
    from edgeprune.models import build
    torch.manual_seed(seed)
    m = build("lenet5").eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                step = mod.weight.abs().max() / 7
                mod.weight.copy_(torch.clamp(torch.round(mod.weight / step), -7, 7) * step)
    return m


def weight_bytes(tflite: bytes) -> dict:
    """Bytes of the conv / depthwise / FC filter buffers, and their tensor types."""
    from edgeprune.backends.tflm.flatbuffer import _fb
    fb = _fb()
    m = fb.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = m.subgraphs[0]
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    total, kinds = 0, []
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        if names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode)) in (
                "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            t = sg.tensors[int(op.inputs[1])]
            total += len(m.buffers[t.buffer].data)
            kinds.append(types[t.type])
    return {"weight_bytes": total, "weight_types": kinds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflm-root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "tflm-cache")
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    from c_runtime_zoo import datasets
    from edgeprune.deploy import Deployment
    from edgeprune.export.keras_mirror import to_nhwc
    from edgeprune.export.tflm import export_tflm, quantize_input, samples
    from edgeprune.graph import extract
    from edgeprune.verify.tflm_runtime import verify_tflm
    model = four_bit_lenet5(args.seed)
    graph = extract(model)
    ds = datasets("lenet5", graph.input_shape, args.inputs)[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tflm-int4-") as d:
        import dataclasses
        from edgeprune.targets import load_target
        m4 = load_target("stm32l4r5-m4")
        small = dataclasses.replace(m4, name="stm32l4r5-m4 with 256 KB flash", flash_kb=256)
        variants = (("int8", "off", m4, True), ("int4 (--compress flash)", "flash", m4, True),
                    ("--compress auto, 2 MB flash", "auto", m4, False),
                    ("--compress auto, 256 KB flash", "auto", small, True))
        for variant, policy, target, on_qemu in variants:
            dep = Deployment.for_target(target, runtime="tflm-cmsis-nn", compression=policy)
            out = Path(d) / f"v{len(rows)}"
            t0 = time.time()
            rep = export_tflm(model, dep, out, ds, n_eval=args.inputs, seed=args.seed,
                              allow_overflow=True)
            t_export = time.time() - t0
            if not on_qemu:
                rows.append({"variant": variant, "compress": policy, "target": target.name,
                             "flash_kb": target.flash_kb, "int4_layers": rep["int4_layers"],
                             "int4_eligible_kept_int8": rep["int4_eligible_kept_int8_fits_flash"],
                             "tflite_bytes": rep["flash_bytes_actual"], "on_qemu": False,
                             "command": command_line()})
                print(json.dumps(rows[-1]), flush=True)
                continue
            _, ev, _, _ = samples(model, graph, ds, 256, args.inputs, args.seed)
            io = rep["io"]
            x = quantize_input(to_nhwc(ev), io["input_scale"], io["input_zero_point"])
            res, _, _ = verify_tflm(out, "cortex-m4", x, args.tflm_root, args.cache)
            tfl = (out / "model.tflite").read_bytes()
            row = {"variant": variant, "compress": policy, "model": "lenet5 (4-bit weights)",
                   "target": target.name, "flash_kb": target.flash_kb, "on_qemu": True,
                   "core": "cortex-m4", "board": res["board"],
                   "int4_layers": rep.get("int4_layers", []),
                   "int4_eligible_kept_int8": rep.get("int4_eligible_kept_int8_fits_flash", []),
                   "lut_layers": sorted(rep["compressed_layers"]),
                   **weight_bytes(tfl), "tflite_bytes": len(tfl),
                   "flash_bytes_estimate": rep["flash_bytes_estimate"],
                   "arena_measured_target": res["arena_used_bytes"],
                   "arena_estimate_target": rep["arena_bytes_target_estimate"],
                   "arena_allocated": rep["arena_bytes_allocated"],
                   "arena_host_64bit_min": rep["arena_bytes_measured"],
                   "instructions_per_invoke": res["instructions_per_invoke"],
                   "cycles_trm": res.get("cycles_trm"),
                   "operators": res.get("operators"),
                   "identical_qemu_vs_host_interpreter": res["outputs_vs_host"]["tflm_host"]["identical"],
                   "max_abs_diff_lsb_vs_litert_int8": rep["max_abs_diff_lsb_vs_litert"],
                   "accuracy_int8_host": rep["accuracy_int8"],
                   "inputs": res["inputs"]["count"], "export_seconds": round(t_export, 1),
                   "command": command_line()}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "operators"}), flush=True)
    base = rows[0]
    for r in rows:
        if not r["on_qemu"]:
            continue
        r["weight_bytes_vs_int8"] = round(r["weight_bytes"] / base["weight_bytes"], 4)
        r["tflite_bytes_vs_int8"] = round(r["tflite_bytes"] / base["tflite_bytes"], 4)
        r["arena_vs_int8"] = r["arena_measured_target"] - base["arena_measured_target"]
        r["cycles_vs_int8"] = (round(r["cycles_trm"] / base["cycles_trm"], 4)
                               if r.get("cycles_trm") and base.get("cycles_trm") else None)
    (RESULTS / "tflm_int4.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    lines = ["# int4 weights: 4-bit LeNet-5 on TFLM + CMSIS-NN (QEMU Cortex-M4)", "",
             "Same model exported dense int8 (`--compress off`), all int4 (`--compress flash`) "
             "and with `--compress auto` (int4 chosen per tensor). Weight bytes = conv / FC filter buffers in model.tflite; arena = "
             "arena_used_bytes() on the target (estimate: estimate_arena(abi='arm32')); cycles = "
             "the invoke's instruction stream through the Cortex-M4 TRM table; bit-exact = QEMU "
             "outputs equal TFLM's host interpreter's on the same inputs.", "",
             "| variant | filter types | weight bytes | x int8 | .tflite bytes | x int8 | arena target "
             "(est.) | arena vs int8 | cycles | x int8 | bit-exact QEMU vs host |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if not r["on_qemu"]:
            continue
        lines.append(f"| {r['variant']} | {', '.join(sorted(set(r['weight_types'])))} | "
                     f"{r['weight_bytes']} | {r['weight_bytes_vs_int8']:.3f} | {r['tflite_bytes']} | "
                     f"{r['tflite_bytes_vs_int8']:.3f} | {r['arena_measured_target']} "
                     f"({r['arena_estimate_target']}) | {r['arena_vs_int8']:+d} | {r['cycles_trm']} | "
                     f"{r['cycles_vs_int8']} | {r['identical_qemu_vs_host_interpreter']} |")
    lines += ["", "Per operator, TRM cycles (int8 / int4 with --compress flash):", "",
              "| op | int8 | int4 | x |", "|---|---:|---:|---:|"]
    for a, b in zip(rows[0]["operators"] or [], rows[1]["operators"] or []):
        lines.append(f"| {a['op']} | {a['cycles_trm']} | {b['cycles_trm']} | "
                     f"{b['cycles_trm'] / a['cycles_trm']:.3f} |")
    lines += ["", "`--compress auto` per target (int4 costs cycles, so auto keeps int8 while the "
              "file fits the flash):", ""]
    for r in rows:
        if r["compress"] == "auto":
            lines.append(f"- {r['target']} ({r['flash_kb']} KB flash): int4 layers "
                         f"{r['int4_layers'] or 'none'}, .tflite {r['tflite_bytes']} B")
    lines += ["", "Produced by: `" + rows[0]["command"] + "`", ""]
    (RESULTS / "tflm_int4.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
