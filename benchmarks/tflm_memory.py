"""TFLM flash and arena: cost model (edgeprune.backends.tflm) vs the real export, per model.

    .venv/bin/python benchmarks/tflm_memory.py                 # zoo models that fit an M4
    .venv/bin/python benchmarks/tflm_memory.py --calibrate     # measure the persistent constants

Default mode exports every zoo model that fits the STM32L4R5 (2 MB flash, 640 KB RAM) with
random weights (BN statistics randomised so folding is exercised) and random inputs, and writes
benchmarks/results/tflm_memory.json and .md. Figures do not depend on the weight values except
through LUT compression, which the clustered row exercises.

--calibrate exports small synthetic (non-zoo) models, one op kind at a time, and prints the
allocation categories TFLM's RecordingMicroAllocator reports; edgeprune/backends/tflm/memory.py's
PERSISTENT / OP_PERSISTENT constants come from this output. The zoo models are never used to
calibrate, so the table checks the model on data it was not fitted to.

These are the 64-bit host's figures. The arena on the 32-bit target (struct sizes probed on
QEMU M4, the same calibration models) is benchmarks/tflm_target.py --probe.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402

CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes "
                      r"for (\d+) ")


def parse_allocations(text: str) -> dict:
    out = {"total": int(re.search(r"allocation total (\d+)", text).group(1)),
           "head": int(re.search(r"allocation head (\d+)", text).group(1)),
           "tail": int(re.search(r"allocation tail (\d+)", text).group(1))}
    for name, used, req, count in CATEGORY.findall(text):
        out[name] = {"used": int(used), "requested": int(req), "count": int(count)}
    return out


class _Seq(nn.Sequential):
    def __init__(self, input_shape, *layers):
        super().__init__(*layers)
        self.input_shape = input_shape


class _AddNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_shape = (c, 6, 6)
        self.a = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.a(x) + x


class _CatNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_shape = (c, 6, 6)
        self.a = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return torch.cat([self.a(x), x], 1)


def calibration_cases():
    for c in (4, 5, 16, 40):
        yield f"conv_c{c}", _Seq((3, 8, 8), nn.Conv2d(3, c, 3))
        yield f"dwconv_c{c}", _Seq((c, 8, 8), nn.Conv2d(c, c, 3, groups=c))
        yield f"linear_c{c}", _Seq((24,), nn.Linear(24, c))
    yield "conv_conv", _Seq((3, 8, 8), nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    yield "linear_linear", _Seq((24,), nn.Linear(24, 4), nn.Linear(4, 4))
    yield "linear_relu_linear", _Seq((24,), nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 4))
    yield "maxpool_maxpool", _Seq((4, 8, 8), nn.MaxPool2d(2), nn.MaxPool2d(2))
    for n in (2, 8):   # small activations: the init-time temporaries set the minimum
        layers = []
        for _ in range(n):
            layers += [nn.Linear(64, 64), nn.ReLU()]
        yield f"mlp{n}", _Seq((64,), *layers)
    yield "maxpool", _Seq((4, 8, 8), nn.MaxPool2d(2))
    yield "avgpool", _Seq((4, 8, 8), nn.AvgPool2d(2))
    yield "reshape", _Seq((4, 3, 3), nn.MaxPool2d(1), nn.Flatten(), nn.Linear(36, 5))
    yield "softmax", _Seq((24,), nn.Linear(24, 8), nn.Softmax(dim=1))
    yield "relu", _Seq((4, 8, 8), nn.MaxPool2d(2), nn.ReLU())
    yield "relu6", _Seq((4, 8, 8), nn.MaxPool2d(2), nn.ReLU6())
    yield "sigmoid", _Seq((24,), nn.Linear(24, 8), nn.Sigmoid())
    yield "tanh", _Seq((24,), nn.Linear(24, 8), nn.Tanh())
    yield "pad", _Seq((4, 8, 8), nn.Conv2d(4, 4, 3, stride=2, padding=1))
    yield "add_c8", _AddNet(8)
    yield "concat_c8", _CatNet(8)


def calibrate() -> None:
    from edgeprune.backends.tflm import flatbuffer as tflm_flatbuffer
    from edgeprune.backends.tflm import memory as tflm_memory
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.export import tflm as ex
    from edgeprune.export.keras_mirror import build_keras_mirror, to_nhwc
    from edgeprune.graph import extract
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    for name, model in calibration_cases():
        model.eval()
        g = extract(model)
        plan = tflm_plan.lower(g)
        cal = rng.random((32,) + tuple(g.input_shape), dtype=np.float32)
        b = tflm_flatbuffer.canonicalize(ex.convert_int8(build_keras_mirror(model, g, plan), to_nhwc(cal)))
        q = ex.io_quant(b)
        x = ex.quantize_input(to_nhwc(cal[:1]), q["input_scale"], q["input_zero_point"])
        _, total, text = ex.run_tflm(b, x)
        a = parse_allocations(text)
        lo, hi = total - 1, total
        while not ex.tflm_runs_with(b, hi, x):
            lo, hi = hi, hi + 1024
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ex.tflm_runs_with(b, mid, x) else (mid, hi)
        a["minimum"] = hi
        est = tflm_memory.estimate_arena(g, plan=plan, abi="host64")
        known = sum(v["used"] for k, v in a.items() if isinstance(v, dict))
        ops = [op.opcode for op in plan.ops]
        row = {"case": name, "ops": ops, "tensors": len(plan.tensors), "total": a["total"],
               "minimum": a["minimum"],
               "head": a["head"], "tail": a["tail"], "uncategorised": a["tail"] - known,
               "categories": {k: v for k, v in a.items() if isinstance(v, dict)},
               "estimate_total": est["total_bytes"], "flash": len(b),
               "flash_estimate": tflm_memory.estimate_flash(g, plan=plan)["total_bytes"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (RESULTS / "tflm_calibration.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--markdown-only", action="store_true",
                    help="re-render tflm_memory.md from tflm_memory.json")
    args = ap.parse_args()
    if args.calibrate:
        calibrate()
        return
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "tflm_memory.json").read_text()))
        return
    table(args.models)


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
    return model.eval()


def _cluster(model: nn.Module, k: int) -> nn.Module:
    """Per-layer weight sharing with k evenly spaced values (exercises LUT compression)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                levels = torch.linspace(w.min().item(), w.max().item(), k)
                w.copy_(levels[(w.unsqueeze(-1) - levels).abs().argmin(-1)])
    return model


def table(models=None) -> None:
    import tempfile
    from edgeprune.backends.tflm import memory as tflm_memory
    from edgeprune.export.tflm import export_tflm
    from edgeprune.graph import extract
    from edgeprune.models import ZOO, build
    from edgeprune.targets import load_target
    target = load_target("stm32l4r5-m4")
    cases = [(n, None) for n in (models or sorted(ZOO))]
    if not models:
        cases.append(("lenet5", 16))   # clustered to 16 values per layer -> LUT compressed
    rows = []
    for name, k in cases:
        torch.manual_seed(0)
        model = _randomize_bn(build(name), 0)
        if k:
            model = _cluster(model, k)
        g = extract(model)
        fe = tflm_memory.estimate_flash(g)["total_bytes"]
        ae = tflm_memory.estimate_arena(g, abi="host64")["total_bytes"]
        label = name + (f" (clustered k={k})" if k else "")
        if fe > target.flash_kb * 1024 or ae > target.ram_kb * 1024:
            print(f"{label}: does not fit {target.name} by the estimate "
                  f"(flash {fe} B, arena {ae} B); skipped", flush=True)
            continue
        t0 = time.time()
        with tempfile.TemporaryDirectory() as d:
            r = export_tflm(model, target, Path(d) / "out", None, n_eval=8, compress="flash")
        row = {"model": label, "target": target.name,
               "ops": r["ops"], "compressed_layers": sorted(r["compressed_layers"]),
               "flash_bytes_estimate": r["flash_bytes_estimate"],
               "flash_bytes_actual": r["flash_bytes_actual"],
               "flash_error_pct": r["flash_error_pct"],
               "arena_bytes_estimate": r["arena_bytes_estimate"],
               "arena_bytes_measured": r["arena_bytes_measured"],
               "arena_error_pct": r["arena_error_pct"],
               "max_abs_diff_lsb_vs_litert": r["max_abs_diff_lsb_vs_litert"],
               "lut_bit_exact_vs_uncompressed": r["lut_bit_exact_vs_uncompressed"],
               "seconds": round(time.time() - t0, 1),
               "command": command_line()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    all_rows = upsert_rows("tflm_memory.json", rows, key=("model", "target"))
    write_markdown(all_rows)


def write_markdown(rows) -> None:
    lines = ["# TFLM flash and arena: cost model vs measured",
             "",
             "Target STM32L4R5 (Cortex-M4, 2 MB flash, 640 KB RAM). Flash = size of the exported "
             "`model.tflite`; arena = smallest `arena_size` with which `tflite_micro.runtime` "
             "(64-bit host, reference kernels) allocates and invokes the model, found by "
             "bisection to the byte. Estimates from "
             "`edgeprune.backends.tflm` (constants calibrated on synthetic single-op models "
             "only, `benchmarks/tflm_memory.py --calibrate`). Random weights, BN statistics "
             "randomised; `max LSB` = largest |TFLM - LiteRT (reference kernels)| output "
             "difference on 8 random inputs.",
             "",
             "| model | ops | flash est. | flash real | err % | arena est. | arena measured | "
             "err % | max LSB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ops = ", ".join(r["ops"])
        if r.get("compressed_layers"):
            ops += f" (LUT: {', '.join(r['compressed_layers'])})"
        lines.append(f"| {r['model']} | {ops} | {r['flash_bytes_estimate']} | "
                     f"{r['flash_bytes_actual']} | {r['flash_error_pct']:+.3f} | "
                     f"{r['arena_bytes_estimate']} | {r['arena_bytes_measured']} | "
                     f"{r['arena_error_pct']:+.3f} | {r['max_abs_diff_lsb_vs_litert']} |")
    cmds = sorted({r["command"] for r in rows})
    lines += ["", "Produced by: " + "; ".join(f"`{c}`" for c in cmds), ""]
    (RESULTS / "tflm_memory.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
