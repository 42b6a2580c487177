#!/usr/bin/env python3
"""Render benchmarks/results/c_runtime_host.md from c_runtime_zoo.json and c_runtime_lenet5.json
(written by benchmarks/c_runtime_zoo.py and benchmarks/c_runtime_lenet5.py; each row keeps the
command that produced it).

Run from the repo root:  .venv/bin/python benchmarks/c_runtime_report.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line  # noqa: E402


def _load(name):
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else []


def main() -> int:
    zoo = _load("c_runtime_zoo.json")
    lenet = _load("c_runtime_lenet5.json")
    out = ["# edgeprune-c results", "", f"Rendered by `{command_line()}`.", ""]
    if zoo:
        out += ["## Bit-exactness, arena, flash and RAM on every zoo model",
                "", "Seeded random weights; real images (see `benchmarks/c_runtime_zoo.py`). "
                "'==' means every output byte identical. RAM = .data + .bss + stack of the "
                "cross-compiled model code (arm-none-eabi-gcc -O2); TFLM arena: "
                "print_allocations() of the tflite-micro Python runtime (64-bit host, persistent "
                "structures included).", "",
                "| model | images | builds == TFLM (tflm rounding) | == LiteRT ref (litert rounding) | "
                "arena B | TFLM greedy plan, same buffers B | TFLM arena (host) B | M4 flash B | "
                "M4 RAM B | M0+ flash B | M0+ RAM B |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        keys = []
        for r in zoo:
            k = (r["model"], r["data"])
            if k not in keys:
                keys.append(k)
        for model, data in keys:
            rows = [r for r in zoo if (r["model"], r["data"]) == (model, data)]
            tf = [r for r in rows if r["rounding"] == "tflm"]
            lr = [r for r in rows if r["rounding"] == "litert"]
            auto = [r for r in tf if r["variant"] == "auto"][0]
            ok_tf = sum(r["identical_vs_tflm"] for r in tf)
            ok_lr = sum(r["identical_vs_litert_reference"] for r in lr)
            out.append(
                f"| {model} | {data}, {auto['samples']} | {ok_tf}/{len(tf)} "
                f"({', '.join(r['variant'] for r in tf)}) | {ok_lr}/{len(lr)} | "
                f"{auto['arena_bytes']} | {auto['arena_bytes_tflm_greedy_plan']} | "
                f"{auto['tflm_arena_bytes_host']} | {auto.get('cortex-m4_flash_bytes', 'n/a')} | "
                f"{auto.get('cortex-m4_ram_bytes', 'n/a')} | {auto.get('cortex-m0plus_flash_bytes', 'n/a')} | "
                f"{auto.get('cortex-m0plus_ram_bytes', 'n/a')} |")
        cmds = sorted({r["command"] for r in zoo})
        out += ["", "Commands: " + "; ".join(f"`{c}`" for c in cmds), ""]
    if lenet:
        out += ["## Trained LeNet-5: dense, pruned, pruned + clustered",
                "", "Accuracy of the C build on the whole test split. Instructions: the cost "
                "model's estimate (measured inner loops, the rest not calibrated yet), not a "
                "measurement.", "",
                "| model | core | variant (objective) | kernels | accuracy float / C | == TFLM | "
                "non-zero weights | weight B | flash B | RAM B | est. instructions |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in lenet:
            kern = ", ".join(f"{k}={v}" for k, v in r["layers"].items())
            out.append(
                f"| {r['stage']} | {r['core']} | {r['variant']} ({r['objective']}) | {kern} | "
                f"{100 * r['accuracy_float']:.2f} / {100 * r['accuracy_int8_c']:.2f} % "
                f"({r['test_images']} images) | {r['identical_vs_tflm']} | {r['nonzero_weights']} / "
                f"{r['weights']} | {r['weight_bytes']} | {r['flash_bytes']} | {r['ram_bytes']} | "
                f"{r['instructions_estimate'] / 1e6:.2f} M |")
        cmds = sorted({r["command"] for r in lenet})
        out += ["", "Commands: " + "; ".join(f"`{c}`" for c in cmds), ""]
    (RESULTS / "c_runtime_host.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
