#!/usr/bin/env python3
"""Instructions per multiply-accumulate in the innermost loop of each edgeprune-c kernel, read
from the disassembly: the source of the constants in edgeprune/backends/c/costs.py.

For each kernel and core (cortex-m4: DSP path, cortex-m0plus: plain path), compile
edgeprune/backends/c/kernels/<file>.c with arm-none-eabi-gcc -O2 -mcpu=<core> -mthumb, find the
loops of the kernel's functions in `arm-none-eabi-objdump -d` (a backward branch closes a loop),
keep the innermost ones that multiply, and report the one doing the most multiply-accumulates
per iteration: its instruction count and MACs (SMLAD = 2, MLA / MULS / SMLABB / SMLATT = 1).
Static counts of one iteration: the kernels' work outside that loop (im2col, requantization,
per-row overhead) is not in them; QEMU counts everything (issue 11, part 3).

Run from the repo root:  .venv/bin/python benchmarks/c_kernel_loops.py
Writes benchmarks/results/c_kernel_loops.json.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line  # noqa: E402

KERNELS = Path(__file__).resolve().parent.parent / "edgeprune" / "backends" / "c" / "kernels"
CORES = ("cortex-m4", "cortex-m0plus")
# (name, source, functions whose loops count, extra defines)
CASES = [
    ("conv_dense_dsp", "ep_conv.c", ("ep_conv_dense_dsp", "ep_conv_pairs_full"), ("EP_RQ_FAST",)),
    ("conv_dense_plain", "ep_conv.c", ("ep_conv_dense_plain", "dot_s8"), ()),
    ("fc_dense_dsp", "ep_fc.c", ("ep_fc_dense_dsp", "rows4"), ()),
    ("fc_dense_plain", "ep_fc.c", ("ep_fc_dense_plain",), ()),
    ("fc_sparse", "ep_fc_sparse.c", ("ep_fc_sparse",), ()),
    ("conv_sparse", "ep_conv_sparse.c", ("ep_conv_sparse",), ()),
    ("fc_clustered_3bit", "ep_fc_clustered.c", ("ep_fc_clustered", "fc_clustered_3"), ("EP_CLUSTER_BITS_3",)),
    ("fc_clustered_4bit", "ep_fc_clustered.c", ("ep_fc_clustered", "fc_clustered_4"), ("EP_CLUSTER_BITS_4",)),
    ("dwconv_3x3_dsp", "ep_dwconv.c", ("dw3_rows_s1",), ()),
    ("dwconv_3x3_s2_dsp", "ep_dwconv.c", ("dw3_rows",), ()),
    ("dwconv_dsp", "ep_dwconv.c", ("ep_dwconv_dsp",), ()),
    ("dwconv_plain", "ep_dwconv.c", ("ep_dwconv_plain",), ()),
]
MAC = {"smlad": 2, "smuad": 2, "mla": 1, "muls": 1, "mul": 1, "smlabb": 1, "smlatt": 1,
       "smlabt": 1, "smlatb": 1}


def loops(obj: Path):
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(obj)],
                         capture_output=True, text=True, check=True).stdout
    lines, func = [], None
    for line in dis.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.+)>:", line)
        if m:
            func = m.group(2)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m:
            lines.append((int(m.group(1), 16), m.group(2).split(".")[0], m.group(3), func))
    # keyed by function too: functions in their own sections (the asm ones) restart at 0
    index = {(f, a): i for i, (a, _, _, f) in enumerate(lines)}
    found = []
    for i, (a, op, args, f) in enumerate(lines):
        if op.startswith("b") and op not in ("bl", "blx", "bx", "bic", "bics", "bfi"):
            m = re.match(r"([0-9a-f]+)", args)
            if m and int(m.group(1), 16) < a and (f, int(m.group(1), 16)) in index:
                start = index[(f, int(m.group(1), 16))]
                found.append((f, start, i, lines[start:i + 1]))
    return found


def measure(core: str, source: str, funcs, defines, work: Path) -> dict:
    (work / "ep_config.h").write_text("".join(f"#define {d} 1\n" for d in defines))
    obj = work / "k.o"
    subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-O2", f"-mcpu={core}", "-mthumb", "-I",
                    str(work), "-I", str(KERNELS), "-c", str(KERNELS / source), "-o", str(obj)],
                   check=True)
    cands = []
    all_loops = loops(obj)
    for f, s, e, body in all_loops:
        if f not in funcs:
            continue
        inner = not any(s2 >= s and e2 <= e and (s2, e2) != (s, e) for _, s2, e2, _ in all_loops)
        macs = sum(MAC.get(op, 0) for _, op, _, _ in body)
        if inner and macs:
            cands.append({"function": f, "instructions": len(body), "macs": macs,
                          "body": [f"{op} {args}" for _, op, args, _ in body]})
    if not cands:
        raise SystemExit(f"{source} on {core}: no multiplying loop in {funcs}")
    best = max(cands, key=lambda c: (c["macs"], -c["instructions"]))
    best["instructions_per_mac"] = round(best["instructions"] / best["macs"], 4)
    return best


def main() -> int:
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="c-loops-") as d:
        for name, source, funcs, defines in CASES:
            for core in CORES:
                r = measure(core, source, funcs, defines, Path(d))
                rows.append({"kernel": name, "core": core, **r})
                print(f"{name:18s} {core:14s} {r['instructions']:3d} instructions / "
                      f"{r['macs']:2d} MACs = {r['instructions_per_mac']:.3f} per MAC ({r['function']})")
    out = {"compiler": gcc.stdout.splitlines()[0], "flags": "-std=c99 -O2 -mcpu=<core> -mthumb",
           "command": command_line(), "rows": rows}
    (RESULTS / "c_kernel_loops.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
