"""``edgeprune verify OUT_TFLM --qemu CORE --tflm-root PATH``: an ``edgeprune export tflm``
output built against TFLite-Micro + CMSIS-NN (``tflm_build``) and run on the core's QEMU board.

The exported ``model_data.cc`` and ``edgeprune_model.cc`` are compiled unchanged with TFLM's
flags; the harness (C++) calls ``edgeprune_model_init()`` (timed), reads
``edgeprune_model_arena_used()`` (the arena on the 32-bit target), then per input copies it
into ``edgeprune_model_input()``, reads the timer around ``edgeprune_model_invoke()`` (exact
instructions under -icount) and prints the output bytes. Per operator: the execution trace of
one invoke is cut at each indirect call from TFLM's ``MicroInterpreterGraph::InvokeSubgraph``
(an operator's invoke function) to its return; the rest is the interpreter's own work. Cycles:
the trace's instructions through the core's TRM timings (``cpi.py``), as for edgeprune-c.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from . import firmware as fw
from .boards import ICOUNT_SHIFT, board_for
from .c_runtime import VerifyError, _counts, quantize_inputs, _tool_versions
from .cpi import TIMING_SOURCE
from .qemu import command_line, run_icount, run_trace
from .tflm_build import build_tflm

HARNESS = r"""
// edgeprune verify harness for an edgeprune TFLM export (see edgeprune/verify/tflm_runtime.py)
#include <cstdint>
#include <cstring>
#include "edgeprune_model.h"
#include "epv_support.h"

extern "C" const int8_t epv_inputs[];
extern "C" const uint32_t epv_n_inputs;   // epv_inputs.c: the harness's code does not depend on it
static int8_t epv_out[kEdgepruneOutputBytes];

int main() {{
  epv_timer_init();
  epv_calibrate();
  epv_hook(6);
  TfLiteStatus s = edgeprune_model_init();
  epv_hook(7);
  epv_print("init", (uint32_t)s, epv_stamps[7] - epv_stamps[6]);
  if (s != kTfLiteOk) return 1;
  epv_print("arena", (uint32_t)edgeprune_model_arena_used(), (uint32_t)kEdgepruneArenaBytes);
  for (uint32_t i = 0; i < epv_n_inputs; ++i) {{
    std::memcpy(edgeprune_model_input(), epv_inputs + i * kEdgepruneInputBytes, kEdgepruneInputBytes);
    epv_stack_paint();
    uint32_t sp = epv_sp();
    epv_hook(4);
    TfLiteStatus rc = edgeprune_model_invoke();
    epv_hook(5);
    uint32_t low = epv_stack_low();
    epv_print("inv", i, epv_stamps[5] - epv_stamps[4]);
    epv_print("stack", sp, low);
    epv_print("rc", i, (uint32_t)rc);
    std::memcpy(epv_out, edgeprune_model_output(), kEdgepruneOutputBytes);
    epv_print_bytes(i, epv_out, kEdgepruneOutputBytes);
  }}
  epv_print("done", 0, 0);
  return 0;
}}
"""

INVOKE_SUBGRAPH = "_ZN6tflite21MicroInterpreterGraph14InvokeSubgraphEi"


def read_tflm_export(export_dir: Path) -> dict:
    rp = export_dir / "report.json"
    need = ("model_data.cc", "edgeprune_model.cc", "edgeprune_model.h", "model.tflite")
    if not rp.is_file() or not all((export_dir / n).is_file() for n in need):
        raise VerifyError(f"{export_dir}: not an 'edgeprune export tflm' output (needs "
                          f"{', '.join(need)} and report.json)")
    r = json.loads(rp.read_text())
    for k in ("ops", "io"):
        if k not in r:
            raise VerifyError(f"{rp}: no '{k}'; not an 'edgeprune export tflm' report")
    return r


def _build(lib, board, export_dir: Path, work: Path, x_int8: np.ndarray, name: str) -> fw.Elf:
    work.mkdir(parents=True, exist_ok=True)
    for fname, text in fw.support_files(board, 1).items():
        (work / fname).write_text(text)
    (work / "epv_main.cc").write_text(HARNESS.format())
    (work / "epv_inputs.c").write_text(fw.inputs_source(x_int8))
    mflags = lib.machine_flags()
    objs = []
    cc = fw.tool("arm-none-eabi-gcc")
    cxx = fw.tool("arm-none-eabi-g++")

    def compile_(src: Path, flags: List[str], compiler: str) -> str:
        obj = work / (src.stem + ".o")
        cmd = [compiler, *flags, f"-I{work}", f"-I{export_dir}", *lib.includes, "-c", str(src), "-o", str(obj)]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(lib.tree))
        if p.returncode != 0:
            raise VerifyError(f"{src.name} does not compile against TFLM for {board.core}: "
                              f"{p.stderr.strip()[-1500:]}")
        objs.append(obj)
        return p.stderr
    for fname in ("epv_startup.c", "epv_support.c", "epv_inputs.c"):
        compile_(work / fname, [*mflags, "-std=gnu11", "-O2"], cc)
    tflm_cxx = [f for f in lib.cxxflags if not f.startswith("-MD")]
    warnings = ""
    for src in (export_dir / "model_data.cc", export_dir / "edgeprune_model.cc"):
        warnings += compile_(src, [*tflm_cxx, "-Os"], cxx)      # TFLM's core optimization level
    compile_(work / "epv_main.cc", [*tflm_cxx, "-O2"], cxx)
    # the board's memory map with TFLM's float ABI
    from dataclasses import replace
    b = replace(board, cflags=tuple(mflags))
    elf = fw.link(b, objs, work / f"{name}.elf", cxx=True, extra=[str(lib.library), "-lm"])
    elf.warnings = warnings             # type: ignore[attr-defined]
    return elf


def _function_range(elf: Path, symbol: str):
    out = subprocess.run([fw.tool("arm-none-eabi-nm"), "-S", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == symbol:
            a, size = int(parts[0], 16) & ~1, int(parts[1], 16)
            return a, a + size
    return None


def verify_tflm(export_dir, core: str, x_int8: np.ndarray, tflm_root, cache_dir, *,
                input_note: str = "", labels=None, trace: bool = True, host_check: bool = True,
                jobs: int = 2, keep: Optional[Path] = None, kernels: str = "cmsis_nn"):
    """Run the TFLM export on QEMU; returns (report dict, firmware ELF bytes, outputs).
    ``kernels``: TFLM's 'cmsis_nn' kernels (runtime tflm-cmsis-nn) or its 'reference' ones."""
    export_dir = Path(export_dir)
    report = read_tflm_export(export_dir)
    board = board_for(core)
    io = report["io"]
    x_int8 = quantize_inputs(x_int8, io)
    lib = build_tflm(tflm_root, core, report["ops"], cache_dir, jobs=jobs, kernels=kernels)
    out_bytes = int(np.prod(io["output_shape"]))
    with tempfile.TemporaryDirectory(prefix="edgeprune-verify-tflm-") as tmpd:
        tmp = Path(keep) if keep else Path(tmpd)
        elf = _build(lib, board, export_dir, tmp / "a", x_int8, "firmware")
        run = run_icount(board, elf.path)
        counts = _counts(run, board, 0, False)
        (init_status, init_ticks), = run.get("init")
        if init_status != 0:
            raise VerifyError(f"edgeprune_model_init() failed on {board.machine} (status "
                              f"{init_status}): arena too small or an op missing")
        (arena_used, arena_size), = run.get("arena")
        ops_res = None
        cycles = None
        if trace:
            elf_t = _build(lib, board, export_dir, tmp / "t", x_int8[:1], "firmware_trace")
            site = _function_range(elf_t.path, INVOKE_SUBGRAPH)
            _, tc = run_trace(board, elf_t.path, elf_t.symbols["epv_hook"], call_site=site)
            seg = tc.segments()
            # hooks: calibration 0,1,2,3,0,1 (segment 4: back to back); init 6 -> 7 (segment 6);
            # invoke 4 -> 5 (segment 8)
            oh_i, oh_c = seg[4]
            inv_i, inv_c = seg[8][0] - oh_i, seg[8][1] - oh_c
            cycles = {"instructions": inv_i, "cycles": inv_c}
            # the operators in model order (read from the flatbuffer directly: int4 weights
            # included, which the C backend's reader refuses)
            from ..export.tflm import _model_t, _opname
            fbm, mm = _model_t((export_dir / "model.tflite").read_bytes())
            op_names = [_opname(fbm, mm, o) for o in mm.subgraphs[0].operators]
            # InvokeSubgraph makes more than one indirect call per operator (the operator's
            # invoke, and virtual calls of the allocator): the operator's is the call site that
            # runs once per operator and executes the most instructions
            by_site: Dict[int, list] = {}
            for s in tc.spans:
                if s[0] == 8:
                    by_site.setdefault(s[3], []).append(s)
            cands = [v for v in by_site.values() if len(v) == len(op_names)]
            spans = max(cands, key=lambda v: sum(s[1] for s in v)) if cands else []
            if len(spans) != len(op_names):
                raise VerifyError(f"the trace shows {len(spans)} operator invocations, the model "
                                  f"has {len(op_names)} operators")
            ops_res = [{"index": k, "op": name, "instructions": int(s[1]),
                        "cycles_trm": int(s[2])} for k, (name, s) in enumerate(zip(op_names, spans))]
        emu = np.stack([np.frombuffer(run.outputs[i], dtype=np.int8) for i in range(len(x_int8))])
        by_obj = fw.sizes_by_object(elf.map_path)
        model_objs = {"model_data.o", "edgeprune_model.o"}
        tflm_objs = {o for o in by_obj if o.startswith("libtflm.a")}
        def total(objs, keys):
            return sum(by_obj[o][k] for o in objs for k in keys)
        sizes = {
            "model_flash_bytes": total(model_objs, ("text", "rodata", "data")),
            "tflm_flash_bytes": total(tflm_objs, ("text", "rodata", "data")),
            "model_ram_bytes": total(model_objs, ("data", "bss")),
            "tflm_ram_bytes": total(tflm_objs, ("data", "bss")),
        }
        elf_bytes = elf.path.read_bytes()
        warnings = elf.warnings.strip()     # type: ignore[attr-defined]
    refs = {}
    if host_check:
        from ..export.tflm import run_tflm
        from ..logs import native_stderr_to_log
        x = x_int8.reshape((len(x_int8),) + tuple(io["input_shape"][1:]))
        with native_stderr_to_log():
            out, _, _ = run_tflm((export_dir / "model.tflite").read_bytes(), x)
        refs["tflm_host"] = out.reshape(len(x), -1)
    compare = {k: {"identical": bool(np.array_equal(emu, v)), "outputs_differing": int((emu != v).sum())}
               for k, v in refs.items()}
    inv = counts["invoke"]
    stack = max(counts["stack"])
    res = {
        "export": str(export_dir), "runtime": "tflm-cmsis-nn" if kernels == "cmsis_nn" else "tflm-reference",
        "core": core, "board": board.machine,
        "tflm": {"tree": str(lib.tree), "library": str(lib.library), "objects": lib.objects,
                 "cached": lib.cached, "machine_flags": lib.machine_flags()},
        "qemu": command_line(board, "firmware.elf"), "icount_shift": ICOUNT_SHIFT,
        "tools": _tool_versions(), "inputs": {"count": int(len(x_int8)), "source": input_note},
        "instructions_per_invoke": int(inv[0]),
        "instructions_per_invoke_min_max": [int(min(inv)), int(max(inv))],
        "instructions_init": int(round(init_ticks / board.ticks_per_instruction)) - counts["timer_read_overhead"],
        "return_codes_zero": all(r == 0 for r in counts["rc"]),
        "arena_used_bytes": int(arena_used), "arena_bytes_allocated": int(arena_size),
        "arena_bytes_host": report.get("arena_bytes_measured"),
        "stack_bytes_measured": stack, **sizes,
        "flash_bytes": sizes["model_flash_bytes"] + sizes["tflm_flash_bytes"],
        "ram_bytes": sizes["model_ram_bytes"] + sizes["tflm_ram_bytes"] + stack,
        "compile_warnings": warnings,
        "outputs_vs_host": compare,
        "identical": bool(compare) and all(c["identical"] for c in compare.values()),
    }
    if labels is not None:
        res["accuracy_int8_emulated"] = float((emu.argmax(1) == np.asarray(labels)[:len(emu)]).mean())
    if cycles:
        res["cycles_trm"] = int(cycles["cycles"])
        res["cycles_source"] = TIMING_SOURCE[core]
        res["trace_instructions_equal_icount"] = bool(cycles["instructions"] == inv[0])
        res["operators"] = ops_res
        res["instructions_in_operators"] = int(sum(o["instructions"] for o in ops_res))
        res["instructions_interpreter"] = int(inv[0] - res["instructions_in_operators"])
    return res, elf_bytes, emu
