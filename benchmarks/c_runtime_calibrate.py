#!/usr/bin/env python3
"""Calibrate the edgeprune-c cost model (edgeprune/backends/c/costs.py) on synthetic
single-layer models measured under QEMU.

For every model of the grid in benchmarks/c_synthetic.py (conv dense / sparse at 70 % and 95 %
zeros / clustered with 8 and 16 levels, depthwise, fully connected in the same variants,
max / average pooling, sparse convolutions fused with their max pooling, ADD, RELU, SOFTMAX, CONCATENATION; 150 models, seeded random int8
weights, no zoo model):
1. generate the C for the core (edgeprune/backends/c/codegen.py, the weight encoding forced);
2. build it into the `edgeprune verify` firmware with the per-layer timer hooks and run it on
   the core's QEMU board with -icount (exact instructions per kernel call) and once with the
   execution trace (cycles through the core's TRM timings, edgeprune/verify/cpi.py);
3. fit, per core and kernel, instructions and cycles = sum(coef * term) over the work terms
   of costs.step_terms by non-negative least squares; the invoke's own code (call, output
   copy) likewise.
Writes benchmarks/results/c_runtime_calibration.json (every sample and the fit errors) and
edgeprune/backends/c/cost_constants.py (generated). Validation on the zoo models:
benchmarks/c_runtime_qemu.py.

Run from the repo root:
  .venv/bin/python benchmarks/c_runtime_calibrate.py [--cores cortex-m4 ...]
  .venv/bin/python benchmarks/c_runtime_calibrate.py --cores cortex-m4 --kinds maxpool conv fc --variants sparse
      (after a kernel change: re-measures those models only, merged into the stored fits)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import command_line  # noqa: E402
import c_synthetic  # noqa: E402

OUT = HERE / "results" / "c_runtime_calibration.json"
CONSTANTS = HERE.parent / "edgeprune" / "backends" / "c" / "cost_constants.py"


def model_dir(gen, d: Path, core: str) -> None:
    """An export-like folder (sources + the report fields `edgeprune verify` reads)."""
    d.mkdir(parents=True, exist_ok=True)
    for k, v in gen.files.items():
        (d / k).write_text(v)
    p = gen.program
    io = {"input_shape": [1, *p.input_shape] if len(p.input_shape) == 3 else [1, *p.input_shape],
          "output_shape": [1, *p.output_shape], "input_scale": p.input_scale,
          "input_zero_point": p.input_zero_point}
    (d / "report.json").write_text(json.dumps({
        "io": io, "layers": [{k: v for k, v in vars(l).items() if k != "alternatives"} for l in gen.layers],
        "rounding": "tflm", "core": core, "model": "synthetic"}, default=str))


def measure_grid(core: str, work: Path, kinds=None, variants=None):
    from edgeprune.backends.c.codegen import generate
    from edgeprune.backends.c.costs import step_terms
    from edgeprune.verify.c_runtime import measure_steps
    samples, invoke = [], []
    rng = np.random.default_rng(0)
    for i, (kind, spec, variant, sparsity, levels) in enumerate(c_synthetic.grid()):
        if (kinds and kind not in kinds) or (variants and variant and variant not in variants):
            continue
        g = c_synthetic.graph(kind, spec, i, sparsity, levels)
        # fusion='always': the conv + max pooling models measure the fused kernel on every
        # shape, also where the cost model would not fuse (padded borders, 3 x 3 windows)
        gen = generate(g, core, force=variant or None, model_name=f"syn{i}", fusion="always")
        d = work / f"m{i}"
        model_dir(gen, d, core)
        n_in = int(np.prod(gen.program.input_shape))
        x = rng.integers(-128, 128, size=(1, n_in), dtype=np.int8)
        steps, outside = measure_steps(d, core, x)
        for st, m in zip(gen.program.steps, steps):
            key, terms = step_terms(st, st.params.get("encoding"))
            if m["trace_instructions"] != m["instructions"]:
                raise RuntimeError(f"model {i} step {st.index}: trace {m['trace_instructions']} != "
                                   f"timer {m['instructions']} instructions")
            samples.append({"model": i, "kind": kind, "spec": list(spec) if not isinstance(spec[0], tuple) else [list(spec[0]), spec[1]],
                            "variant": variant, "sparsity": sparsity, "levels": levels,
                            "kernel": m["kernel"], "key": key, "terms": terms,
                            "instructions": m["instructions"], "cycles": m["cycles_trm"]})
        invoke.append({"model": i, "output_bytes": int(np.prod(gen.program.output_shape)),
                       "instructions": outside["instructions"], "cycles": outside["cycles_trm"]})
        print(f"{core} {i:3d} {kind:8s} {variant or '-':9s} {spec}: "
              + ", ".join(f"{m['kernel']} {m['instructions']}" for m in steps), flush=True)
    return samples, invoke


def fit(rows, names):
    A = np.array([[float(r["terms"].get(t, 0)) for t in names] for r in rows])
    res = {}
    for what in ("instructions", "cycles"):
        y = np.array([r[what] for r in rows], float)
        # scale columns so that NNLS is well conditioned
        sc = np.maximum(A.max(axis=0), 1.0)
        coef, _ = nnls(A / sc, y)
        coef = coef / sc
        pred = A @ coef
        res[what] = {t: round(float(c), 5) for t, c in zip(names, coef)}
        res[what + "_max_rel_error"] = round(float(np.max(np.abs(pred - y) / y)), 4)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", nargs="*", default=["cortex-m4"])
    ap.add_argument("--kinds", nargs="*", help="re-measure only these layer kinds of the grid "
                    "(e.g. maxpool, after a kernel change): their kernel fits replace the stored "
                    "ones, every other fit and the invoke fit stay as stored")
    ap.add_argument("--variants", nargs="*", help="with --kinds: only these weight encodings of "
                    "the weighted kinds (dense, sparse, clustered)")
    args = ap.parse_args()
    if args.variants and not args.kinds:
        print("--variants needs --kinds", file=sys.stderr)
        return 2
    result = {"command": command_line(), "cores": {}}
    for core in args.cores:
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="c-calib-") as d:
            samples, invoke = measure_grid(core, Path(d), args.kinds, args.variants)
        fits = {}
        for key in sorted({s["key"] for s in samples}):
            rows = [s for s in samples if s["key"] == key]
            names = list(rows[0]["terms"])
            fits[key] = {"terms": names, "samples": len(rows), **fit(rows, names)}
        inv_rows = [{"terms": {"call": 1, "output_bytes": r["output_bytes"]}, **r} for r in invoke]
        fits_inv = fit(inv_rows, ["call", "output_bytes"])
        entry = {"command": command_line(), "seconds": round(time.time() - t0, 1),
                 "kernels": fits, "invoke": fits_inv, "samples": samples, "invoke_samples": invoke}
        if args.kinds:          # a partial re-measurement: merged into the stored fits
            old = json.loads(OUT.read_text())["cores"].get(core) if OUT.exists() else None
            if old is None:
                print(f"--kinds needs a stored full calibration of {core}", file=sys.stderr)
                return 2
            keys = set(fits)
            entry = {**old, "kernels": {**old["kernels"], **fits},
                     "samples": [x for x in old["samples"] if x["key"] not in keys] + samples,
                     "partial_commands": old.get("partial_commands", []) + [command_line()]}
        result["cores"][core] = entry
        for key, f in fits.items():
            print(f"{core} {key:15s} n={f['samples']:2d} instr err {f['instructions_max_rel_error']:.3f} "
                  f"cycles err {f['cycles_max_rel_error']:.3f}  {f['cycles']}")
    # merge with the other cores' fits at write time, under a lock: runs for different cores
    # may go in parallel
    import fcntl
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if OUT.exists():
            result["cores"] = {**json.loads(OUT.read_text()).get("cores", {}), **result["cores"]}
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(OUT)
        write_constants(result)
    print(f"wrote {OUT.relative_to(HERE.parent)} and {CONSTANTS.relative_to(HERE.parent)}")
    return 0


def write_constants(result) -> None:
    def table(which):
        return {core: {k: {t: v[which][t] for t in v["terms"]} for k, v in data["kernels"].items()}
                for core, data in result["cores"].items()}

    def inv(which):
        return {core: data["invoke"][which] for core, data in result["cores"].items()}
    err = {core: {k: [v["instructions_max_rel_error"], v["cycles_max_rel_error"]]
                  for k, v in data["kernels"].items()} for core, data in result["cores"].items()}
    from edgeprune.verify.cpi import TIMING_SOURCE
    text = f'''"""Calibrated cost constants of the edgeprune-c runtime, per core and kernel.

GENERATED by benchmarks/c_runtime_calibrate.py -- do not edit by hand; re-run it instead.
Source: synthetic single-layer models (benchmarks/c_synthetic.py; no zoo model) generated for
each core, built with arm-none-eabi-gcc -O2 and run on the core's QEMU board by the
`edgeprune verify` firmware: exact instructions per kernel call (-icount timer) and cycles
through the core's TRM instruction timings ({"; ".join(f"{c}: {TIMING_SOURCE[c]}" for c in result["cores"])}).
Fitted per kernel: value = sum(coef * term) over the terms of costs.step_terms, by non-negative
least squares. Commands: {"; ".join(dict.fromkeys(c for d in result["cores"].values() for c in [d["command"], *d.get("partial_commands", [])]))}
Samples and fit errors: benchmarks/results/c_runtime_calibration.json.
"""

# instructions per term: STEP_INSTRUCTIONS[core][kernel key][term]
STEP_INSTRUCTIONS = {json.dumps(table("instructions"), indent=4)}

# TRM cycles per term, same layout
STEP_CYCLES = {json.dumps(table("cycles"), indent=4)}

# the invoke's own code (call, output copy): per call and per output byte
INVOKE_INSTRUCTIONS = {json.dumps(inv("instructions"), indent=4)}
INVOKE_CYCLES = {json.dumps(inv("cycles"), indent=4)}

# largest relative error of the fit over the calibration samples: [instructions, cycles]
FIT_MAX_REL_ERROR = {json.dumps(err, indent=4)}
'''
    tmp = CONSTANTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(CONSTANTS)


if __name__ == "__main__":
    sys.exit(main())
