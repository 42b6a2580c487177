#!/usr/bin/env python3
"""Calibrating the MCU cost model's TFLite-Micro runtime on the real TFLM + CMSIS-NN kernels.

Two steps:

  measure  small synthetic chain networks (a grid of shapes per op kind, none of them a zoo
           model) exported with `edgeprune export tflm` (random weights, random inputs, dense
           int8), built against a TFLM tree and run on the emulated core (QEMU, exact
           instruction counts, per-operator split from the execution trace, cycles through the
           core's TRM timings: edgeprune/verify/tflm_runtime.py). Each operator's TFLite shape
           (edgeprune.cost.mcu_terms.tflm_op_shape) and its measured instructions and cycles are
           written to benchmarks/results/tflm_cycle_calibration.json (rows keyed by case, core,
           runtime; rerunning a case replaces its row).
  fit      per CMSIS-NN kernel variant, a least-squares fit (non-negative, relative error) of
           the measured cycles on the work terms of edgeprune.cost.mcu_terms.tflm_kernel (the
           kernel's loop structure), and of the interpreter's own cycles on invokes and
           operators; writes the generated module edgeprune/cost/tflm_constants.py. No QEMU.

The zoo is never used here: benchmarks/tflm_qemu.py validates the fit on the zoo's exports.
(benchmarks/results/tflm_calibration.json is the arena calibration of benchmarks/tflm_memory.py,
a different measurement; it is left as it is.)

Run from the repo root:
  .venv/bin/python benchmarks/tflm_calibrate.py measure --tflm-root DIR [--cache DIR] [--cases ...]
      [--runtime tflm-cmsis-nn|tflm-reference]
  .venv/bin/python benchmarks/tflm_calibrate.py fit
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "1")
from common import command_line  # noqa: E402

OUT = HERE / "results" / "tflm_cycle_calibration.json"
CONSTANTS = REPO / "edgeprune" / "cost" / "tflm_constants.py"
KEY = ("case", "core", "runtime")
TARGET = {"cortex-m4": "stm32l4r5-m4", "cortex-m7": "stm32h7a3-m7", "cortex-m33": "stm32u585-m33",
          "cortex-m0plus": "rp2040-m0plus",
          "cortex-m55": "alif-e3-m55"}

# --------------------------------------------------------------------------------------------
# (Linear -> Linear without an activation trips the Keras mirror check: a ReLU, fused, goes
# between two "fc")
# The synthetic networks: (name, input CHW, layers). Layer specs:
#   ("conv", out_c, k, stride, pad)   CONV_2D (+ ReLU fused); k an int or (kh, kw); an explicit
#                                     padding TFLite's SAME cannot express becomes a PAD op
#   ("dw", k, stride, pad)            DEPTHWISE_CONV_2D (+ ReLU)
#   ("res",)                          x + conv1x1(x): a CONV_2D and an ADD
#   ("max", k, s) / ("avg", k, s) / ("gap",)   pooling
#   ("flat",) ("fc", units) ("softmax",)    (an fc followed by an fc gets a fused ReLU)
CASES = [
    ("c3_16_a", (3, 16, 16), [("conv", 8, 3, 1, 1), ("dw", 3, 1, 1), ("conv", 12, 1, 1, 0),
                              ("max", 2, 2), ("conv", 16, 3, 2, 1), ("res",), ("avg", 2, 2),
                              ("flat",), ("fc", 10), ("softmax",)]),
    ("c1_20x12", (1, 20, 12), [("conv", 10, (5, 3), 2, 0), ("dw", 3, 1, 1), ("conv", 20, 1, 1, 0),
                               ("res",), ("gap",), ("flat",), ("fc", 6)]),
    ("c4_12", (4, 12, 12), [("conv", 5, 3, 1, 0), ("dw", 3, 2, 1), ("conv", 7, 1, 1, 0),
                            ("conv", 9, 3, 1, 1), ("max", 3, 1), ("flat",), ("fc", 13)]),
    ("c3_24_b", (3, 24, 24), [("conv", 16, 3, 2, 1), ("dw", 3, 1, 1), ("conv", 24, 1, 1, 0),
                              ("dw", 3, 2, 1), ("conv", 32, 1, 1, 0), ("avg", 3, 3), ("flat",),
                              ("fc", 20), ("softmax",)]),
    ("c8_10", (8, 10, 10), [("conv", 32, 3, 1, 1), ("conv", 32, 3, 1, 1), ("res",),
                            ("conv", 20, 1, 2, 0), ("max", 2, 2), ("flat",), ("fc", 16)]),
    ("c16_8", (16, 8, 8), [("conv", 48, 3, 1, 0), ("dw", 3, 1, 1), ("conv", 40, 1, 1, 0),
                           ("dw", 5, 1, 2), ("conv", 27, 3, 1, 1), ("gap",), ("flat",), ("fc", 5)]),
    ("c2_31", (2, 31, 31), [("conv", 6, 5, 2, 2), ("dw", 3, 1, 0), ("conv", 11, 3, 1, 0),
                            ("avg", 2, 2), ("res",), ("flat",), ("fc", 9)]),
    ("c12_14", (12, 14, 14), [("conv", 18, 1, 1, 0), ("dw", 3, 1, 1), ("conv", 36, 1, 1, 0),
                              ("conv", 36, 3, 2, 1), ("dw", 3, 1, 1), ("dw", 5, 1, 2), ("conv", 64, 1, 1, 0),
                              ("gap",), ("flat",), ("fc", 12), ("softmax",)]),
    ("c1_32", (1, 32, 32), [("conv", 4, 3, 1, 1), ("max", 2, 2), ("conv", 8, 3, 1, 1),
                            ("max", 2, 2), ("conv", 16, 3, 1, 1), ("res",), ("max", 2, 2),
                            ("flat",), ("fc", 24)]),
    ("c6_9", (6, 9, 9), [("conv", 13, 3, 1, 1), ("dw", 3, 1, 1), ("conv", 3, 1, 1, 0),
                         ("conv", 25, 2, 1, 0), ("avg", 4, 4), ("flat",), ("fc", 7)]),
    ("c24_6", (24, 6, 6), [("dw", 3, 1, 1), ("conv", 56, 1, 1, 0), ("dw", 3, 2, 1),
                           ("conv", 80, 1, 1, 0), ("res",), ("gap",), ("flat",), ("fc", 33),
                           ("softmax",)]),
    ("c3_20x6", (3, 20, 6), [("conv", 28, (3, 5), 1, 0), ("dw", 3, 1, 1), ("conv", 17, 1, 1, 0),
                             ("max", 2, 2), ("flat",), ("fc", 40)]),
    # few output channels over many input channels: the im2col copies weigh as much as the
    # MACs (on the M0+ memcpy takes a word loop for in_c % 4 == 0 and >= 16, a byte loop else)
    ("c32_8", (32, 8, 8), [("conv", 2, 3, 1, 1), ("conv", 20, 3, 1, 0), ("conv", 3, 3, 1, 1),
                           ("flat",), ("fc", 4)]),
    ("c16_9", (16, 9, 9), [("conv", 1, 3, 2, 1), ("conv", 24, 1, 1, 0), ("conv", 2, 2, 1, 0),
                           ("flat",), ("fc", 3)]),
    ("fc_a", (100,), [("fc", 64), ("fc", 33), ("fc", 10), ("softmax",)]),
    ("fc_b", (257,), [("fc", 128), ("fc", 256), ("fc", 17)]),
    ("fc_c", (48,), [("fc", 300), ("fc", 5), ("fc", 96), ("softmax",)]),
    ("fc_d", (784,), [("fc", 40), ("fc", 120), ("fc", 21)]),
]


def build_case(in_shape, layers):
    import torch.nn as nn

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 1)

        def forward(self, x):
            return x + self.conv(x)

    class Net(nn.Sequential):
        pass

    import torch
    mods = []
    x = torch.zeros((1,) + tuple(in_shape))

    def add(*ms):
        nonlocal x
        for m in ms:
            mods.append(m)
            x = m(x)
    for i, spec in enumerate(layers):
        kind = spec[0]
        c = x.shape[1]
        if kind == "conv":
            _, oc, k, s, p = spec
            add(nn.Conv2d(c, oc, k, stride=s, padding=p), nn.BatchNorm2d(oc).eval(), nn.ReLU())
        elif kind == "dw":
            _, k, s, p = spec
            add(nn.Conv2d(c, c, k, stride=s, padding=p, groups=c), nn.BatchNorm2d(c).eval(), nn.ReLU())
        elif kind == "res":
            add(Res(c))
        elif kind == "max":
            add(nn.MaxPool2d(spec[1], spec[2]))
        elif kind == "avg":
            add(nn.AvgPool2d(spec[1], spec[2]))
        elif kind == "gap":
            add(nn.AdaptiveAvgPool2d(1))
        elif kind == "flat":
            add(nn.Flatten())
        elif kind == "fc":
            add(nn.Linear(c, spec[1]))
            if i + 1 < len(layers) and layers[i + 1][0] == "fc":
                add(nn.ReLU())          # fused; Linear -> Linear trips the Keras mirror check
        elif kind == "softmax":
            add(nn.Softmax(dim=1))
        else:
            raise ValueError(kind)
    net = Net(*mods)
    net.input_shape = tuple(in_shape)
    return net.eval()


KERNELS = {"tflm-cmsis-nn": "cmsis_nn", "tflm-reference": "reference"}


def measure_case(name, in_shape, layers, core, seed, tflm_root, cache, work, n_inputs=2,
                 runtime="tflm-cmsis-nn") -> dict:
    import numpy as np
    import torch
    from c_runtime_zoo import randomize_bn
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.cost.mcu_terms import tflm_op_shape
    from edgeprune.deploy import Deployment
    from edgeprune.export.keras_mirror import to_nhwc
    from edgeprune.export.tflm import export_tflm, quantize_input, samples
    from edgeprune.graph import extract
    from edgeprune.verify.tflm_runtime import verify_tflm
    torch.manual_seed(seed)
    model = randomize_bn(build_case(in_shape, layers), seed)
    graph = extract(model)
    plan = tflm_plan.lower(graph)
    dep = Deployment.for_target(TARGET[core], runtime=runtime)
    out = work / f"{name}-{runtime}"
    rep = export_tflm(model, dep, out, None, n_eval=n_inputs, n_calibration=64, compress="off",
                      seed=seed, allow_overflow=True)
    _, ev, _, _ = samples(model, graph, None, 64, n_inputs, seed)
    io = rep["io"]
    x = quantize_input(to_nhwc(ev), io["input_scale"], io["input_zero_point"])
    res, _, _ = verify_tflm(out, core, x, tflm_root, cache, kernels=KERNELS[runtime])
    if not res["trace_instructions_equal_icount"]:
        raise SystemExit(f"{name} on {res['board']}: the execution trace and the -icount timer "
                         f"disagree on the instructions per invoke; the cycles would not be exact")
    plan_ops = [op for op in plan.ops if op.opcode != "DECODE"]
    measured = res["operators"]
    if [o.opcode for o in plan_ops] != [m["op"] for m in measured]:
        raise SystemExit(f"{name}: the plan's ops {[o.opcode for o in plan_ops]} differ from the "
                         f"exported model's {[m['op'] for m in measured]}")
    ops = [{**tflm_op_shape(plan, op), "instructions": m["instructions"],
            "cycles_trm": m["cycles_trm"]} for op, m in zip(plan_ops, measured)]
    in_ops = sum(o["cycles_trm"] for o in ops)
    return {"case": name, "core": core, "runtime": runtime, "split": "calibration",
            "input_shape": list(in_shape), "layers": [list(map(_jsonable, s)) for s in layers],
            "cycles_measured": res["cycles_trm"], "instructions_measured": res["instructions_per_invoke"],
            "instructions_interpreter": res["instructions_interpreter"],
            "cycles_interpreter": res["cycles_trm"] - in_ops,
            "identical_vs_host_interpreter": res["outputs_vs_host"]["tflm_host"]["identical"],
            "operators": ops, "board": res["board"], "command": command_line()}


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def cmd_measure(args) -> int:
    import torch
    from c_runtime_qemu import upsert
    torch.set_num_threads(1)
    names = [c[0] for c in CASES]
    bad = [c for c in (args.cases or []) if c not in names]
    if bad:
        print(f"error: unknown case(s) {', '.join(bad)} (cases: {', '.join(names)})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tflm-cal-") as d:
        for name, shape, layers in CASES:
            if args.cases and name not in args.cases:
                continue
            t0 = time.time()
            row = measure_case(name, shape, layers, args.core, args.seed, args.tflm_root,
                               args.cache, Path(d), runtime=args.runtime)
            upsert([row], OUT, KEY)
            print(f"{name}: {row['cycles_measured']} cycles, {len(row['operators'])} ops, "
                  f"interpreter {row['cycles_interpreter']} cycles ({time.time() - t0:.0f} s)",
                  flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The fit

def fit_rows(rows, runtime="tflm-cmsis-nn", core="cortex-m4"):
    """{kernel: {term: cycles}}, interpreter {invoke, op}, per-kernel fit statistics."""
    import numpy as np
    from scipy.optimize import nnls
    from edgeprune.cost.mcu import ISA
    from edgeprune.cost.mcu_terms import TFLM_KERNEL_TERMS, tflm_kernel
    rows = [r for r in rows if r["runtime"] == runtime and r["core"] == core]
    samples = {}
    for r in rows:
        for o in r["operators"]:
            kern, terms = tflm_kernel(o, runtime, ISA[core])
            samples.setdefault(kern, []).append((terms, o["cycles_trm"]))
    coef, stats = {}, {}
    for kern in sorted(samples):
        names = TFLM_KERNEL_TERMS[kern]
        a = np.array([[t.get(n, 0) for n in names] for t, _ in samples[kern]], dtype=float)
        y = np.array([c for _, c in samples[kern]], dtype=float)
        w = 1.0 / y                              # relative error
        x, _ = nnls(a * w[:, None], y * w)
        pred = a @ x
        err = pred / y - 1
        coef[kern] = {n: round(float(v), 4) for n, v in zip(names, x)}
        stats[kern] = {"samples": len(y), "max_rel_error": round(float(np.abs(err).max()), 4),
                       "mean_abs_rel_error": round(float(np.abs(err).mean()), 4)}
    a = np.array([[1.0, len(r["operators"])] for r in rows])
    y = np.array([r["cycles_interpreter"] for r in rows], dtype=float)
    x, _ = nnls(a, y)
    interp = {"invoke": round(float(x[0]), 2), "op": round(float(x[1]), 2)}
    err = a @ x - y
    stats["interpreter"] = {"samples": len(y), "max_abs_error_cycles": round(float(np.abs(err).max()), 1)}
    return coef, interp, stats


def write_constants(fits: dict, path: Path = CONSTANTS) -> str:
    lines = [
        '"""Cycles per work term of the real TFLite-Micro kernels, per runtime, core and kernel',
        'variant (edgeprune.cost.mcu_terms.tflm_kernel), and of the interpreter per invoke and per',
        'operator. GENERATED by `benchmarks/tflm_calibrate.py fit` from the synthetic networks',
        'measured on QEMU in benchmarks/results/tflm_cycle_calibration.json (`benchmarks/tflm_calibrate.py',
        'measure`): do not edit by hand."""',
        "",
        'SOURCE = "benchmarks/tflm_calibrate.py fit <- benchmarks/results/tflm_cycle_calibration.json"',
        "",
        "# {runtime: {core: {kernel: {term: cycles per term}}}}",
        "KERNEL_CYCLES = " + _pyrepr({rt: {c: f["kernels"] for c, f in v.items()} for rt, v in fits.items()}),
        "",
        "# {runtime: {core: {'invoke': cycles per Invoke, 'op': cycles per operator}}}",
        "INTERPRETER_CYCLES = " + _pyrepr({rt: {c: f["interpreter"] for c, f in v.items()} for rt, v in fits.items()}),
        "",
        "# the fit's error on its own (synthetic) samples, per kernel",
        "FIT = " + _pyrepr({rt: {c: f["stats"] for c, f in v.items()} for rt, v in fits.items()}),
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def _pyrepr(obj, ind=0) -> str:
    if isinstance(obj, dict) and obj:
        pad = " " * (ind + 4)
        items = [f"{pad}{k!r}: {_pyrepr(v, ind + 4)}," for k, v in obj.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * ind + "}"
    return repr(obj)


def fits_from(rows) -> dict:
    fits = {}
    for rt, core in sorted({(r["runtime"], r["core"]) for r in rows}):
        coef, interp, stats = fit_rows(rows, rt, core)
        fits.setdefault(rt, {})[core] = {"kernels": coef, "interpreter": interp, "stats": stats}
    return fits


def cmd_fit(args) -> int:
    if not OUT.exists():
        print(f"error: {OUT} missing: run the measure step first", file=sys.stderr)
        return 2
    rows = json.loads(OUT.read_text())["rows"]
    fits = fits_from(rows)
    write_constants(fits)
    for rt, v in fits.items():
        for core, f in v.items():
            print(f"{rt} {core}: interpreter {f['interpreter']}")
            for k, c in f["kernels"].items():
                print(f"  {k:16s} {c}  {f['stats'][k]}")
    print(f"wrote {CONSTANTS.relative_to(REPO)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--tflm-root", type=Path, required=True)
    m.add_argument("--cache", type=Path, default=REPO / "runs" / "tflm-cache")
    m.add_argument("--core", default="cortex-m4", choices=list(TARGET))
    m.add_argument("--cases", nargs="*")
    m.add_argument("--runtime", default="tflm-cmsis-nn", choices=list(KERNELS))
    m.add_argument("--seed", type=int, default=0)
    sub.add_parser("fit")
    args = ap.parse_args()
    return cmd_measure(args) if args.step == "measure" else cmd_fit(args)


if __name__ == "__main__":
    sys.exit(main())
