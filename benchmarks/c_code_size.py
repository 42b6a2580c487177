#!/usr/bin/env python3
"""Code and glue bytes of the edgeprune-c runtime per core, for `edgeprune estimate --runtime
edgeprune-c`'s flash figure (the export measures its own flash by cross-compiling).

On the synthetic single-layer models of benchmarks/c_synthetic.py (no zoo model), for each core:
generate the C (each weight encoding forced), cross-compile it (arm-none-eabi-gcc -O2, as
`edgeprune export c` does: edgeprune/backends/c/build.py) and read each object's text + rodata +
data:
- each kernel source's bytes (the largest over the models that use it: its size varies a little
  with the model's ep_config.h);
- the model object's bytes beyond its constant arrays (the invoke's code and the layers'
  parameter structs), fitted as base + per step (least squares).
Writes edgeprune/backends/c/code_size.py (generated) and benchmarks/results/c_code_size.json.

Run from the repo root:
  .venv/bin/python benchmarks/c_code_size.py [--cores cortex-m4 ...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import command_line  # noqa: E402
import c_synthetic  # noqa: E402

OUT = HERE / "results" / "c_code_size.json"
CONSTANTS = HERE.parent / "edgeprune" / "backends" / "c" / "code_size.py"
CORES = ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")


def obj_bytes(obj: Path) -> int:
    p = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True, check=True)
    n = 0
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and any(
                parts[0] == f".{k}" or parts[0].startswith(f".{k}.") for k in ("text", "rodata", "data")):
            n += int(parts[1])
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", nargs="*", default=list(CORES))
    ap.add_argument("--kinds", nargs="*", help="measure only these layer kinds of the grid (e.g. "
                    "convpool, after a kernel change): the sizes of the kernel sources they use "
                    "replace the stored ones; the glue fit and the other sources stay as stored")
    args = ap.parse_args()
    from edgeprune.backends.c.build import cross_compile
    from edgeprune.backends.c.codegen import generate
    from edgeprune.cost.mcu_c import _array_bytes
    result = {"command": command_line(), "cores": {}}
    for core in args.cores:
        kernels, glue = {}, []
        for i, (kind, spec, variant, sparsity, levels) in enumerate(c_synthetic.grid()):
            if args.kinds and kind not in args.kinds:
                continue
            # fusion='always': the conv + max pooling models use the fused kernel
            gen = generate(c_synthetic.graph(kind, spec, i, sparsity, levels), core,
                           force=variant or None, model_name=f"syn{i}", fusion="always")
            with tempfile.TemporaryDirectory(prefix="c-size-") as d:
                src = Path(d) / "src"
                src.mkdir()
                for k, v in gen.files.items():
                    (src / k).write_text(v)
                cb = cross_compile(src, core, Path(d) / "build")
                for obj in cb.objects:
                    b = obj_bytes(obj)
                    if obj.stem == "edgeprune_model":
                        arrays = sum(_array_bytes(gen.files["edgeprune_model.c"]).values())
                        glue.append((len(gen.program.steps), b - arrays))
                    else:
                        kernels[obj.stem + ".c"] = max(kernels.get(obj.stem + ".c", 0), b)
        if args.kinds:          # partial: merged into the stored sizes
            old = json.loads(OUT.read_text())["cores"][core]
            result["cores"][core] = {**old, "kernel_bytes": dict(sorted({**old["kernel_bytes"], **kernels}.items())),
                                     "partial_commands": old.get("partial_commands", []) + [command_line()]}
            print(core, kernels, flush=True)
            continue
        A = np.array([[1.0, s] for s, _ in glue])
        y = np.array([g for _, g in glue], float)
        (base, per_step), *_ = np.linalg.lstsq(A, y, rcond=None)
        err = float(np.max(np.abs(A @ [base, per_step] - y)))
        result["cores"][core] = {"kernel_bytes": dict(sorted(kernels.items())),
                                 "glue_base": round(float(base), 1), "glue_per_step": round(float(per_step), 1),
                                 "glue_max_abs_error": round(err, 1), "models": len(glue)}
        print(core, result["cores"][core], flush=True)
    if args.kinds:
        result = {**json.loads(OUT.read_text()), "cores": {**json.loads(OUT.read_text())["cores"], **result["cores"]}}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    text = f'''"""Code bytes of the edgeprune-c runtime per core (text + rodata + data of each object,
arm-none-eabi-gcc -O2 as `edgeprune export c` builds it).

GENERATED by benchmarks/c_code_size.py -- do not edit by hand; re-run it instead.
Source: the synthetic single-layer models of benchmarks/c_synthetic.py (no zoo model).
KERNEL_BYTES[core][source]: the largest size of each kernel source over those models;
GLUE[core]: the model object beyond its constant arrays (invoke code, parameter structs),
base + per_step * steps, least squares. Command: {"; ".join(dict.fromkeys([result["command"], *(c for v in result["cores"].values() for c in v.get("partial_commands", []))]))}
"""

KERNEL_BYTES = {json.dumps({c: v["kernel_bytes"] for c, v in result["cores"].items()}, indent=4)}

GLUE = {json.dumps({c: {"base": v["glue_base"], "per_step": v["glue_per_step"]} for c, v in result["cores"].items()}, indent=4)}
'''
    CONSTANTS.write_text(text)
    print(f"wrote {OUT.relative_to(HERE.parent)} and {CONSTANTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
