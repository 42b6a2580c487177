#!/usr/bin/env python3
"""Measure the instruction counts of int8 inference kernels on Cortex-M cores under QEMU.

This is the source of the cycle constants in edgeprune/cost/mcu_constants.py.

What it does, per core (cortex-m0plus, -m4, -m7, -m33, -m55):
  1. cross-compiles benchmarks/mcu_kernels/kernels.c with arm-none-eabi-gcc -O2 -mcpu=<core>
     (TFLM's KERNEL_OPTIMIZATION_LEVEL for GCC is -O2);
  2. runs it on QEMU (mps2-an385 for the Armv6-M M0+ binary, since QEMU's only M0-class board,
     the micro:bit, has 16 KB of RAM; mps2-an386 = M4, mps2-an500 = M7, mps2-an505 = M33,
     mps3-an547 = M55) with `-d in_asm,exec,nochain`: every translated block is logged once with
     its instructions, every executed block once per execution, so the executed instruction
     stream is known exactly;
  3. cuts the stream at calls of mark() into one segment per kernel configuration;
  4. converts instructions to cycles with the per-instruction timings of the processor's
     Technical Reference Manual (TIMINGS below; QEMU counts instructions, not cycles);
  5. fits, per kernel, instructions (and cycles) = per_mac * MACs + per_out * outputs + per_call
     by least squares over the configurations, and writes
     benchmarks/results/mcu_kernel_icount.json.

Run from the repo root:  .venv/bin/python benchmarks/mcu_kernel_icount.py
Needs: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (Debian packages).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeprune.verify import cpi  # noqa: E402
from edgeprune.cost.mcu_terms import (conv_terms, dwconv_terms, eltwise_terms, fc_terms,  # noqa: E402
                                      kernel_terms, pool_terms)

HERE = Path(__file__).resolve().parent
SRC = HERE / "mcu_kernels"
OUT = HERE / "results" / "mcu_kernel_icount.json"

# core -> (gcc flags, QEMU machine, flash origin, RAM origin)
CORES = {
    "cortex-m0plus": (["-mcpu=cortex-m0plus"], "mps2-an385", "0x00000000", "0x20000000"),
    "cortex-m4": (["-mcpu=cortex-m4", "-mfloat-abi=soft"], "mps2-an386", "0x00000000", "0x20000000"),
    "cortex-m7": (["-mcpu=cortex-m7", "-mfloat-abi=soft"], "mps2-an500", "0x00000000", "0x20000000"),
    "cortex-m33": (["-mcpu=cortex-m33", "-mfloat-abi=soft"], "mps2-an505", "0x10000000", "0x38000000"),
    "cortex-m55": (["-mcpu=cortex-m55", "-mfloat-abi=hard"], "mps3-an547", "0x00000000", "0x20000000"),
}

ISA = {"cortex-m0plus": "v6m", "cortex-m4": "dsp", "cortex-m7": "dsp", "cortex-m33": "dsp",
       "cortex-m55": "mve"}

# Kernel configurations: (kernel, dict of sizes). MACs / outputs / window elements are computed
# below; the C side gets them through a generated configs.h.
CONV = [  # in_h, in_w, in_c, out_c, k, stride, pad
    (6, 6, 4, 8, 3, 1, 0), (6, 6, 8, 8, 3, 1, 0), (6, 6, 16, 4, 3, 1, 0), (8, 8, 4, 16, 3, 1, 0),
    (4, 4, 8, 16, 1, 1, 0), (5, 5, 3, 8, 5, 1, 0), (6, 6, 8, 8, 3, 1, 1), (8, 8, 12, 6, 3, 2, 1),
    (6, 6, 1, 8, 5, 1, 0), (4, 4, 32, 32, 1, 1, 0), (6, 6, 20, 2, 3, 1, 0), (10, 10, 2, 4, 3, 1, 1),
]
DWCONV = [(6, 6, 8, 3, 1, 0), (6, 6, 16, 3, 1, 0), (10, 10, 8, 3, 1, 0), (7, 7, 4, 5, 1, 0),
          (8, 8, 8, 3, 1, 1), (9, 9, 12, 3, 2, 1), (8, 8, 3, 3, 1, 1), (6, 6, 6, 3, 1, 0)]          # in_h, in_w, c, k, stride, pad
FC = [(64, 16), (256, 8), (128, 32), (512, 4), (16, 64), (100, 10), (30, 8), (75, 6), (9, 20)]   # depth, units
POOL = [(8, 8, 8, 2, 2), (9, 9, 4, 3, 3), (4, 4, 16, 2, 2), (6, 6, 8, 6, 6), (8, 8, 4, 3, 1)]  # in_h, in_w, c, k, stride
ELTWISE = [64, 256, 1024, 333]                                     # n elements
PAD = [(6, 6, 8, 1), (4, 4, 4, 2), (8, 8, 2, 1)]              # in_h, in_w, c, pad


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def configs():
    """[(kernel, C call, {term: count})] in run order; terms as in edgeprune/cost/mcu_terms.py."""
    rows = []
    for (h, w, ci, co, k, s, p) in CONV:
        oh, ow = _out(h, k, s, p), _out(w, k, s, p)
        prm = (f"{{{h},{w},{ci},{oh},{ow},{co},{k},{k},{s},{p},128,-5,-128,127,mult_buf,shift_buf}}")
        for kern in ("ref_conv", "cm_conv"):
            rows.append((kern, f"static const conv_params P = {prm}; {kern}(&P, in_buf, w_buf, bias_buf, out_buf);",
                         conv_terms(oh, ow, co, k, k, ci)))
    for (h, w, c, k, s, p) in DWCONV:
        oh, ow = _out(h, k, s, p), _out(w, k, s, p)
        prm = f"{{{h},{w},{c},{oh},{ow},{c},{k},{k},{s},{p},128,-5,-128,127,mult_buf,shift_buf}}"
        for kern in ("ref_dwconv", "cm_dwconv"):
            rows.append((kern, f"static const conv_params P = {prm}; {kern}(&P, in_buf, w_buf, bias_buf, out_buf);",
                         dwconv_terms(oh, ow, c, k, k)))
    for (d, u) in FC:
        prm = f"{{{d},{u},128,0,-5,1518500250,-8,-128,127}}"
        for kern in ("ref_fc", "cm_fc"):
            rows.append((kern, f"static const fc_params P = {prm}; {kern}(&P, in_buf, w_buf, bias_buf, out_buf);",
                         fc_terms(d, u)))
    for (h, w, c, k, s) in POOL:
        oh, ow = _out(h, k, s, 0), _out(w, k, s, 0)
        prm = f"{{{h},{w},{c},{oh},{ow},{k},{s},-128,127}}"
        for kern in ("ref_maxpool", "ref_avgpool"):
            rows.append((kern, f"static const pool_params P = {prm}; {kern}(&P, in_buf, out_buf);",
                         pool_terms(oh, ow, c, k, k)))
    for n in ELTWISE:
        prm = f"{{{n},20,128,128,-5,1073741824,-1,1073741824,-1,1518500250,-18,-128,127}}"
        rows.append(("ref_add", f"static const add_params P = {prm}; ref_add(&P, in_buf, in2_buf, out_buf);", eltwise_terms(n)))
        rows.append(("ref_relu", f"static const add_params P = {prm}; ref_relu(&P, in_buf, out_buf);", eltwise_terms(n)))
        rows.append(("ref_copy", f"static const add_params P = {prm}; ref_copy(&P, in_buf, out_buf);", eltwise_terms(n)))
    for (h, w, c, p) in PAD:
        prm = f"{{{h},{w},{c},0,0,{p},1,-128,127}}"
        rows.append(("ref_pad", f"static const pool_params P = {prm}; ref_pad(&P, in_buf, out_buf);",
                     eltwise_terms((h + 2 * p) * (w + 2 * p) * c)))
    return rows


def write_configs_h(path: Path, rows) -> None:
    lines = ["/* generated by benchmarks/mcu_kernel_icount.py */", "static void run_configs(void) {"]
    for i, (_, call, *_rest) in enumerate(rows):
        lines.append(f"  mark({i}); {{ {call} }}")
    lines.append(f"  mark({len(rows)});")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


# Instruction timings (the TRM tables) and the in_asm parser live in edgeprune/verify/cpi.py,
# shared with `edgeprune verify` so that every runtime is converted to cycles by one table.
BRANCH_TAKEN_P = cpi.BRANCH_TAKEN_P
DIV_CYCLES = cpi.DIV_CYCLES
_is_ls = cpi.is_load_store
instr_cycles = cpi.instr_cycles
parse_in_asm = cpi.parse_in_asm


def measure_core(core: str, rows, work: Path, qemu: str, gcc: str):
    flags, machine, flash, ram = CORES[core]
    src_dir = work / core
    src_dir.mkdir()
    shutil.copy(SRC / "kernels.c", src_dir / "kernels.c")
    write_configs_h(src_dir / "configs.h", rows)
    (src_dir / "link.ld").write_text((SRC / "link.ld.in").read_text().replace("@FLASH@", flash)
                                     .replace("@RAM@", ram))
    elf = src_dir / "k.elf"
    cmd = [gcc, *flags, "-mthumb", "-O2", "-nostartfiles",
           "--specs=nano.specs", "-T", str(src_dir / "link.ld"), "-o", str(elf),
           str(src_dir / "kernels.c"), "-lc", "-lgcc"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    nm = subprocess.run(["arm-none-eabi-nm", str(elf)], check=True, capture_output=True, text=True).stdout
    mark_pc = next(int(l.split()[0], 16) for l in nm.splitlines() if l.endswith(" mark"))
    log = src_dir / "trace.log"
    subprocess.run([qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
                    "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
                    "-d", "in_asm,exec,nochain", "-D", str(log)],
                   check=True, capture_output=True, text=True, timeout=600)
    text = log.read_text(errors="replace")
    blocks = parse_in_asm(text)
    if core == "cortex-m55":
        # QEMU 7.2's disassembler splits MVE and low-overhead-loop instructions (each into a
        # .byte pair and a bogus 16-bit one): re-decode every block from the ELF with binutils,
        # as `edgeprune verify` does (edgeprune/verify/cpi.py: elf_instructions, redecode)
        table = cpi.elf_instructions(elf, "armv8.1-m.main")
        blocks = {pc: cpi.redecode(b, table) for pc, b in blocks.items()}
    seg = -1                     # current segment index (config i runs in segment i)
    insns = Counter()
    cycles = Counter()
    prev_ls = False
    pending_last = None          # last instruction of the previous block (to know if it branched)
    exec_re = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
    for line in text.splitlines():
        mt = exec_re.match(line)
        if not mt:
            continue
        pc = int(mt.group(1), 16)
        if pending_last is not None:
            lpc, lsize, lm, lops, lseg = pending_last
            taken = pc != lpc + lsize
            c = instr_cycles(core, lm, lops, taken, prev_ls)
            cycles[lseg] += c
            prev_ls = _is_ls(lm.lower())
            pending_last = None
        if (pc & ~1) == (mark_pc & ~1):
            seg += 1
        block = blocks.get(pc)
        if block is None:
            raise RuntimeError(f"{core}: executed block 0x{pc:x} was never listed by in_asm")
        for j, (ipc, size, m, ops) in enumerate(block):
            insns[seg] += 1
            if j == len(block) - 1:
                pending_last = (ipc, size, m, ops, seg)
            else:
                cycles[seg] += instr_cycles(core, m, ops, False, prev_ls)
                prev_ls = _is_ls(m.lower())
    # marks run as mark(-1), mark(0), kernel 0, mark(1), kernel 1, ..., mark(n), mark(-2):
    # segment s starts at the s-th mark, so configuration i is segment i + 1 (with its mark()
    # call and argument set-up, which belong to the per-call cost anyway).
    per_config = []
    for i in range(len(rows)):
        s = i + 1
        per_config.append((insns[s], cycles[s]))
    return per_config


def fit(rows, per_config, kernel, isa):
    """Least-squares fit of instructions and cycles on the kernel's terms."""
    idx = [i for i, r in enumerate(rows) if r[0] == kernel]
    terms = kernel_terms(kernel, isa)
    A = np.array([[1.0 if t == "call" else float(rows[i][2].get(t, 0)) for t in terms] for i in idx])
    result = {"terms": list(terms)}
    for k, name in ((0, "instructions"), (1, "cycles")):
        y = np.array([per_config[i][k] for i in idx], float)
        # non-negative least squares: every term costs >= 0 cycles
        coef, _ = nnls(A, y)
        pred = A @ coef
        result[name] = {t: round(float(c), 3) for t, c in zip(terms, coef)}
        result[name]["max_rel_error"] = round(float(np.max(np.abs(pred - y) / y)), 4)
    result["samples"] = [{**rows[i][2], "instructions": int(per_config[i][0]),
                          "cycles": int(per_config[i][1])} for i in idx]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", nargs="*", default=list(CORES))
    ap.add_argument("--keep", help="keep build and traces in this folder")
    args = ap.parse_args()
    qemu = shutil.which("qemu-system-arm")
    gcc = shutil.which("arm-none-eabi-gcc")
    if not qemu or not gcc:
        print("needs qemu-system-arm and arm-none-eabi-gcc (apt-get install qemu-system-arm "
              "gcc-arm-none-eabi libnewlib-arm-none-eabi)", file=sys.stderr)
        return 2
    rows = configs()
    gcc_version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    qemu_version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    result = {"command": command_line(), "gcc": gcc_version, "qemu": qemu_version,
              "branch_taken_penalty_P": BRANCH_TAKEN_P, "div_cycles": DIV_CYCLES, "cores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for core in args.cores:
            per_config = measure_core(core, rows, work, qemu, gcc)
            kernels = sorted({r[0] for r in rows}, key=[r[0] for r in rows].index)
            isa = ISA[core]
            result["cores"][core] = {"isa": isa, "command": command_line(), "kernels": {k: fit(rows, per_config, k, isa) for k in kernels}}
            summary = ", ".join(f"{k} {v['instructions']['macs']:.2f}/{v['cycles']['macs']:.2f}"
                                for k, v in result["cores"][core]["kernels"].items() if "macs" in v["terms"])
            print(f"{core}: insns/cycles per MAC: {summary}", flush=True)
    if OUT.exists():  # keep the cores not re-measured this time
        old = json.loads(OUT.read_text())
        result["cores"] = {**{c: v for c, v in old.get("cores", {}).items() if c not in result["cores"]},
                           **result["cores"]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = OUT.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(OUT)
    print(f"wrote {OUT.relative_to(HERE.parent)}")
    if set(result["cores"]) >= set(CORES):
        write_constants(result)
        print(f"wrote {CONSTANTS.relative_to(HERE.parent)}")
    return 0


CONSTANTS = HERE.parent / "edgeprune" / "cost" / "mcu_constants.py"

TIMING_NOTE = cpi.TIMING_SOURCE


def write_constants(result) -> None:
    """Write edgeprune/cost/mcu_constants.py from the fitted result (atomically)."""
    def table(which):
        return {core: {k: {t: v[which][t] for t in v["terms"]} for k, v in data["kernels"].items()}
                for core, data in result["cores"].items()}
    err = {core: {k: v["cycles"]["max_rel_error"] for k, v in data["kernels"].items()}
           for core, data in result["cores"].items()}
    text = f'''"""Cycle constants of the MCU cost model: cycles per work term, per core and int8 kernel.

GENERATED by benchmarks/mcu_kernel_icount.py -- do not edit by hand; re-run it instead.
Source (every constant below): instruction streams of the kernels in
benchmarks/mcu_kernels/kernels.c, measured exactly under QEMU ({result["qemu"]}), built with
{result["gcc"]} -O2; QEMU counts instructions, not cycles: each executed instruction is
converted to cycles with the timings of the core's Technical Reference Manual (zero wait
states; branch refill P = {result["branch_taken_penalty_P"]}, SDIV/UDIV = {result["div_cycles"]} cycles), then
cycles = sum(coef * term) is fitted by non-negative least squares over 4-12 kernel sizes.
Terms: edgeprune/cost/mcu_terms.py. Measured with: {result["command"]}
Full samples and fit errors: benchmarks/results/mcu_kernel_icount.json.
"""

# cycles per term: KERNEL_CYCLES[core][kernel][term]
KERNEL_CYCLES = {json.dumps(table("cycles"), indent=4)}

# executed instructions per term (what QEMU counted), same layout
KERNEL_INSTRUCTIONS = {json.dumps(table("instructions"), indent=4)}

# largest relative error of the cycle fit over the measured sizes, per core and kernel
FIT_MAX_REL_ERROR = {json.dumps(err, indent=4)}

# how instructions became cycles, per core
TIMING_NOTE = {json.dumps(TIMING_NOTE, indent=4)}
'''
    tmp = CONSTANTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(CONSTANTS)


if __name__ == "__main__":
    sys.exit(main())
