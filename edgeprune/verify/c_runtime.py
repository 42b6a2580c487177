"""``edgeprune verify OUT --qemu CORE``: run an ``edgeprune export c`` output on an emulated
Cortex-M core and measure it.

What is built (in a temp dir; the model's sources are compiled unchanged, with the export's
flags ``-std=c99 -O2 -Wall -Wextra -mcpu=CORE -mthumb``):
- firmware A: start-up + harness + the model. The harness calibrates the timer, then per input
  copies it into ``edgeprune_input()``, paints the free stack, reads the timer, calls
  ``edgeprune_invoke``, reads the timer, finds the stack high-water mark, prints the output
  bytes. This gives the instructions per invoke of exactly the code a user links.
- firmware B: the same, with the model compiled with ``EP_LAYER_BEGIN(i)`` / ``EP_LAYER_END(i)``
  defined as timer reads: the instructions per layer (the cost of a read, measured by two reads
  back to back, is subtracted).
Both run under ``qemu-system-arm -icount shift=7``. Cycles: firmware A and B run once more on
one input with QEMU's execution trace, every executed instruction converted with the core's TRM
timings (``cpi.py``); the trace's instruction counts must equal the timer's.

Flash and RAM: from the linker map of firmware A, the model's objects only (text + rodata +
data; data + bss) plus the stack high-water mark of the invoke measured on the run; the whole
firmware's sections are reported too.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import EdgepruneError
from . import firmware as fw
from .boards import ICOUNT_SHIFT, Board, board_for
from .cpi import TIMING_SOURCE
from .qemu import command_line, run_icount, run_trace

# the export's compile flags for the model sources (edgeprune/backends/c/build.py)
MODEL_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra"]
SUPPORT_CFLAGS = ["-std=gnu11", "-O2", "-Wall"]


class VerifyError(EdgepruneError):
    """The output cannot be verified (not an export, inputs that do not fit, a mismatch...)."""


HARNESS = r"""
/* edgeprune verify harness for an edgeprune-c model (see edgeprune/verify/c_runtime.py) */
#include <stdint.h>
#include <string.h>
#include "edgeprune_model.h"
#include "epv_support.h"

#define EPV_N_LAYERS {n_layers}
extern const int8_t epv_inputs[];
extern const uint32_t epv_n_inputs;     /* epv_inputs.c: the harness's code does not depend on it */
static int8_t epv_out[EDGEPRUNE_OUTPUT_BYTES];

int main(void) {{
  epv_timer_init();
  epv_calibrate();
  for (uint32_t i = 0; i < epv_n_inputs; ++i) {{
    memcpy(edgeprune_input(), epv_inputs + i * EDGEPRUNE_INPUT_BYTES, EDGEPRUNE_INPUT_BYTES);
    epv_stack_paint();
    uint32_t sp = epv_sp();
    epv_hook({slot_invoke});
    int rc = edgeprune_invoke(edgeprune_input(), epv_out);
    epv_hook({slot_invoke} + 1);
    uint32_t low = epv_stack_low();
    epv_print("inv", i, epv_stamps[{slot_invoke} + 1] - epv_stamps[{slot_invoke}]);
    epv_print("stack", sp, low);
    epv_print("rc", i, (uint32_t)rc);
#if EPV_LAYER_HOOKS
    for (uint32_t j = 0; j < EPV_N_LAYERS; ++j)
      epv_print("lay", j, epv_stamps[{slot_layer0} + 2 * j + 1] - epv_stamps[{slot_layer0} + 2 * j]);
#endif
    epv_print_bytes(i, epv_out, EDGEPRUNE_OUTPUT_BYTES);
  }}
  epv_print("done", 0, 0);
  return 0;
}}
"""


def read_export(export_dir: Path) -> dict:
    rp = export_dir / "report.json"
    if not (export_dir / "edgeprune_model.h").is_file() or not rp.is_file():
        raise VerifyError(f"{export_dir}: not an 'edgeprune export c' output (no edgeprune_model.h "
                          f"and report.json)")
    try:
        report = json.loads(rp.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VerifyError(f"{rp}: unreadable ({e})")
    for key in ("io", "layers", "rounding", "core"):
        if key not in report:
            raise VerifyError(f"{rp}: no '{key}'; not an 'edgeprune export c' report")
    return report


_STEP = re.compile(r"EP_LAYER_BEGIN\((\d+)\);\s*\n(.*?)EP_LAYER_END\(\1\);", re.S)


def read_steps(export_dir: Path) -> List[dict]:
    """The kernel calls of edgeprune_invoke, in order: [{index, kernel}] (every step, pooling
    and the other unweighted ones included; report.json lists the weighted layers only)."""
    src = (export_dir / "edgeprune_model.c").read_text()
    body = src[src.find("int edgeprune_invoke("):]
    steps = []
    for m in _STEP.finditer(body):
        k = re.search(r"\b(ep_\w+)\(", m.group(2))
        steps.append({"index": int(m.group(1)), "kernel": k.group(1) if k else None})
    if [s["index"] for s in steps] != list(range(len(steps))):
        raise VerifyError(f"{export_dir / 'edgeprune_model.c'}: unexpected layer markers in "
                          f"edgeprune_invoke (was it edited?)")
    return steps


def quantize_inputs(x: np.ndarray, io: dict) -> np.ndarray:
    """float NHWC (or already int8) inputs -> (N, input bytes) int8."""
    n_in = int(np.prod(io["input_shape"]))
    if x.dtype == np.int8:
        q = x
    else:
        q = np.clip(np.round(x.astype(np.float64) / io["input_scale"]) + io["input_zero_point"],
                    -128, 127).astype(np.int8)
    q = q.reshape(len(q), -1)
    if q.shape[1] != n_in:
        raise VerifyError(f"inputs have {q.shape[1]} values per sample; the model takes {n_in} "
                          f"({'x'.join(map(str, io['input_shape'][1:]))})")
    return np.ascontiguousarray(q)


def dataset_inputs(spec: str, io: dict, n: int) -> np.ndarray:
    """The first n test images of a dataset, scaled to [0, 1] as the training loader does
    (edgeprune/data.py to_tensors), laid out NHWC, quantized with the model's input scale."""
    from ..data import load_dataset
    ds = load_dataset(spec)
    x = ds.x_test[:n]
    xf = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if xf.ndim == 3:
        xf = xf[:, :, :, None]                      # (N, H, W) -> NHWC, one channel
    else:
        xf = np.transpose(xf, (0, 2, 3, 1))        # NCHW -> NHWC
    want = tuple(io["input_shape"][1:])
    if int(np.prod(xf.shape[1:])) != int(np.prod(want)):
        raise VerifyError(f"dataset '{ds.name}' has samples of shape {xf.shape[1:]} (NHWC), the "
                          f"model takes {want}; pass --inputs FILE.npy instead")
    return quantize_inputs(xf.reshape((len(xf),) + want), io)


def host_reference(export_dir: Path, report: dict, x_int8: np.ndarray) -> Dict[str, np.ndarray]:
    """Outputs of the same inputs on the host: the export's C built with the host compiler, and
    the runtime whose rounding the export reproduces (TFLM, or LiteRT's reference kernels)."""
    from ..backends.c import build as cbuild
    out_bytes = int(np.prod(report["io"]["output_shape"]))
    refs: Dict[str, np.ndarray] = {}
    with cbuild.temp_dir("edgeprune-verify-host-") as d:
        if cbuild.host_cc() is not None:
            hb = cbuild.build_host(export_dir, Path(d))
            refs["host_c"] = cbuild.run_host(hb, x_int8, out_bytes)
    model = (export_dir / "model.tflite").read_bytes()
    x = x_int8.reshape((len(x_int8),) + tuple(report["io"]["input_shape"][1:]))
    from ..export.tflm import run_litert, run_tflm
    from ..logs import native_stderr_to_log
    with native_stderr_to_log():
        if report["rounding"] == "tflm":
            out, _, _ = run_tflm(model, x)
            refs["tflm"] = out.reshape(len(x), -1)
        else:
            refs["litert_reference"] = run_litert(model, x).reshape(len(x), -1)
    return refs


def _build(board: Board, export_dir: Path, work: Path, x_int8: np.ndarray, n_layers: int,
           hooks: bool, name: str) -> fw.Elf:
    work.mkdir(parents=True, exist_ok=True)
    sup = fw.support_files(board, n_layers)
    for fname, text in sup.items():
        (work / fname).write_text(text)
    (work / "epv_main.c").write_text(
        f"#define EPV_LAYER_HOOKS {int(hooks)}\n" + HARNESS.format(
            n_layers=n_layers, slot_invoke=fw.SLOT_INVOKE,
            slot_layer0=fw.SLOT_LAYER0))
    (work / "epv_inputs.c").write_text(fw.inputs_source(x_int8))
    objs = []
    for fname in ("epv_startup.c", "epv_support.c", "epv_main.c", "epv_inputs.c"):
        obj = work / (Path(fname).stem + ".o")
        fw.compile_c(board, work / fname, obj, SUPPORT_CFLAGS, [work, export_dir])
        objs.append(obj)
    mflags = list(MODEL_CFLAGS)
    if hooks:
        (work / "epv_hooks.h").write_text("void epv_hook(int slot);\n")
        mflags += ["-include", str(work / "epv_hooks.h"),
                   f"-DEP_LAYER_BEGIN(i)=epv_hook({fw.SLOT_LAYER0} + 2 * (i))",
                   f"-DEP_LAYER_END(i)=epv_hook({fw.SLOT_LAYER0} + 2 * (i) + 1)"]
    warnings = ""
    mdir = work / "model"
    mdir.mkdir(exist_ok=True)
    for src in sorted(export_dir.glob("*.c")):
        obj = mdir / (src.stem + ".o")
        warnings += fw.compile_c(board, src, obj, mflags, [export_dir])
        objs.append(obj)
    elf = fw.link(board, objs, work / f"{name}.elf")
    elf.warnings = warnings             # type: ignore[attr-defined]
    return elf


def _counts(out, board: Board, n_layers: int, layers: bool) -> dict:
    """Instruction counts from the timer stamps the harness printed."""
    (d1, d2), = out.get("cal")
    r = (d2 - d1) / (2 * fw.CALIBRATION_LOOP)
    if abs(r - board.ticks_per_instruction) > 1e-3 * board.ticks_per_instruction:
        raise VerifyError(f"{board.machine}: the timer ticks {r:.4f} times per instruction, expected "
                          f"{board.ticks_per_instruction:.4f} (-icount shift={ICOUNT_SHIFT}); the "
                          f"counts would not be exact")
    rr = board.ticks_per_instruction
    (dh, _), = out.get("hook")
    overhead = round(dh / rr)
    res = {"ticks_per_instruction": rr, "timer_read_overhead": overhead,
           "invoke": [round(d / rr) - overhead for _, d in out.get("inv")],
           "rc": [b for _, b in out.get("rc")],
           "stack": [sp - low for sp, low in out.get("stack")]}
    if layers:
        per = [[] for _ in range(n_layers)]
        for j, d in out.get("lay"):
            per[j].append(round(d / rr) - overhead)
        res["layers"] = per
    return res


def verify_c(export_dir, core: str, x_int8: np.ndarray, *, input_note: str = "",
             labels: Optional[np.ndarray] = None, layer_counts: bool = True,
             trace: bool = True, host_check: bool = True, keep: Optional[Path] = None) -> dict:
    """Run the export in `export_dir` on QEMU's board for `core` with the int8 inputs
    `x_int8` (N, input bytes); returns the verify report (a dict). Raises VerifyError when the
    outputs on the emulated core differ from the host reference."""
    import tempfile
    export_dir = Path(export_dir)
    report = read_export(export_dir)
    board = board_for(core)
    io = report["io"]
    x_int8 = quantize_inputs(x_int8, io)
    steps = read_steps(export_dir)
    n_layers = len(steps)
    out_bytes = int(np.prod(io["output_shape"]))
    with tempfile.TemporaryDirectory(prefix="edgeprune-verify-") as tmpd:
        tmp = Path(keep) if keep else Path(tmpd)
        elf_a = _build(board, export_dir, tmp / "a", x_int8, n_layers, False, "firmware")
        run_a = run_icount(board, elf_a.path)
        counts = _counts(run_a, board, n_layers, False)
        layer_res = None
        if layer_counts:
            elf_b = _build(board, export_dir, tmp / "b", x_int8[:1], n_layers, True, "firmware_layers")
            run_b = run_icount(board, elf_b.path)
            layer_res = _counts(run_b, board, n_layers, True)
        trace_res = None
        if trace:
            elf_t = _build(board, export_dir, tmp / "t", x_int8[:1], n_layers, False, "firmware_trace")
            _, tc = run_trace(board, elf_t.path, elf_t.symbols["epv_hook"])
            seg = tc.segments()
            # hook calls: calibration 0,1,2,3 then 0,1 (segment 4: back to back), invoke 4, 5
            oh_i, oh_c = seg[4]
            inv_i, inv_c = seg[6]
            trace_res = {"instructions": inv_i - oh_i, "cycles": inv_c - oh_c}
            if layer_counts:
                _, tcb = run_trace(board, elf_b.path, elf_b.symbols["epv_hook"])
                sb = tcb.segments()
                # segments 7 + 2 j: from EP_LAYER_BEGIN(j) to EP_LAYER_END(j)
                trace_res["layers"] = [{"instructions": sb[7 + 2 * j][0] - oh_i,
                                        "cycles": sb[7 + 2 * j][1] - oh_c} for j in range(n_layers)]
        emu = np.stack([np.frombuffer(run_a.outputs[i], dtype=np.int8) for i in range(len(x_int8))])
        if emu.shape[1] != out_bytes:
            raise VerifyError(f"the firmware printed {emu.shape[1]} output bytes, expected {out_bytes}")
        by_obj = fw.sizes_by_object(elf_a.map_path)
        model_objs = {src.stem + ".o" for src in export_dir.glob("*.c")}
        model_sz = {k: sum(v[k] for o, v in by_obj.items() if o in model_objs)
                    for k in ("text", "rodata", "data", "bss")}
        libc_sz = {k: sum(v[k] for o, v in by_obj.items() if "(" in o) for k in ("text", "rodata", "data", "bss")}
        elf_sec = fw.elf_sections(elf_a.path)
        warnings = elf_a.warnings.strip()       # type: ignore[attr-defined]
        elf_bytes = elf_a.path.read_bytes()

    refs = host_reference(export_dir, report, x_int8) if host_check else {}
    compare = {name: {"identical": bool(np.array_equal(emu, ref)),
                      "outputs_differing": int((emu != ref).sum())} for name, ref in refs.items()}
    inv = counts["invoke"]
    stack = max(counts["stack"])
    res = {
        "export": str(export_dir), "model": report.get("model"), "export_core": report["core"],
        "core": core, "board": board.machine, "rounding": report["rounding"],
        "qemu": command_line(board, "firmware.elf"), "icount_shift": ICOUNT_SHIFT,
        "timer": {"kind": board.timer, "base": f"0x{board.timer_base:08x}", "hz": board.timer_hz,
                  "ticks_per_instruction": counts["ticks_per_instruction"],
                  "read_overhead_instructions": counts["timer_read_overhead"]},
        "compiler": "arm-none-eabi-gcc " + " ".join(MODEL_CFLAGS + list(board.cflags)),
        "tools": _tool_versions(),
        "inputs": {"count": int(len(x_int8)), "source": input_note},
        "instructions_per_invoke": int(inv[0]),
        "instructions_per_invoke_all_equal": bool(len(set(inv)) == 1),
        "instructions_per_invoke_min_max": [int(min(inv)), int(max(inv))],
        "return_codes_zero": bool(all(rc == 0 for rc in counts["rc"])),
        "flash_bytes": model_sz["text"] + model_sz["rodata"] + model_sz["data"],
        "ram_bytes": model_sz["data"] + model_sz["bss"] + stack,
        "model_sections": model_sz, "stack_bytes_measured": stack,
        "stack_bytes_export_estimate": (report.get("cross") or {}).get("stack_bytes"),
        "libc_sections": libc_sz,
        "firmware_sections": elf_sec,
        "compile_warnings": warnings,
        "outputs_vs_host": compare,
        "identical": bool(compare) and all(c["identical"] for c in compare.values()),
    }
    if labels is not None:
        res["accuracy_int8_emulated"] = float((emu.argmax(1) == np.asarray(labels)[:len(emu)]).mean())
    if trace_res:
        res["cycles_trm"] = int(trace_res["cycles"])
        res["cycles_source"] = TIMING_SOURCE[core]
        res["cpi"] = round(trace_res["cycles"] / max(trace_res["instructions"], 1), 4)
        res["trace_instructions_equal_icount"] = bool(trace_res["instructions"] == inv[0])
    if layer_res:
        rows = []
        weighted = {l["index"]: l for l in report["layers"]}
        for j, st in enumerate(steps):
            n = layer_res["layers"][j][0]
            l = weighted.get(j, {})
            macs = l.get("macs")
            row = {"index": j, "kernel": st["kernel"], "layer": l.get("layer"), "op": l.get("op"),
                   "variant": l.get("variant"), "macs": macs, "instructions": int(n),
                   "instructions_estimate": l.get("instructions_estimate"),
                   "instructions_per_mac": round(n / macs, 4) if macs else None}
            if trace_res and "layers" in trace_res:
                row["cycles_trm"] = int(trace_res["layers"][j]["cycles"])
                row["trace_instructions_equal_icount"] = trace_res["layers"][j]["instructions"] == n
            rows.append(row)
        res["layers"] = rows
        res["instructions_outside_layers"] = int(inv[0] - sum(r["instructions"] for r in rows))
    return res, elf_bytes, emu


def _tool_versions() -> Dict[str, str]:
    out = {}
    for name, cmd in (("arm_gcc", ["arm-none-eabi-gcc", "--version"]),
                      ("qemu", ["qemu-system-arm", "--version"])):
        try:
            out[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            out[name] = None
    return out


def measure_steps(export_dir, core: str, x_int8: np.ndarray, trace: bool = True,
                  keep: Optional[Path] = None) -> List[dict]:
    """Per kernel call of edgeprune_invoke: exact instructions (timer) and TRM cycles (trace) on
    one input, from the firmware with the layer hooks only (what calibration needs)."""
    import tempfile
    export_dir = Path(export_dir)
    report = read_export(export_dir)
    board = board_for(core)
    x_int8 = quantize_inputs(x_int8, report["io"])[:1]
    steps = read_steps(export_dir)
    n = len(steps)
    with tempfile.TemporaryDirectory(prefix="edgeprune-verify-") as tmpd:
        tmp = Path(keep) if keep else Path(tmpd)
        elf = _build(board, export_dir, tmp / "b", x_int8, n, True, "firmware_layers")
        counts = _counts(run_icount(board, elf.path), board, n, True)
        seg = None
        if trace:
            _, tc = run_trace(board, elf.path, elf.symbols["epv_hook"])
            seg = tc.segments()
    out = []
    for j, st in enumerate(steps):
        row = {"index": j, "kernel": st["kernel"], "instructions": int(counts["layers"][j][0])}
        if seg is not None:
            row["cycles_trm"] = int(seg[7 + 2 * j][1] - seg[4][1])
            row["trace_instructions"] = int(seg[7 + 2 * j][0] - seg[4][0])
        out.append(row)
    outside = None
    if seg is not None:
        # the invoke's own code: from the invoke's start to the first layer, between layers,
        # after the last one (each segment holds one hook call, subtracted)
        between = [seg[6 + 2 * j] for j in range(n + 1)]
        outside = {"instructions": int(sum(b[0] for b in between) - (n + 1) * seg[4][0]),
                   "cycles_trm": int(sum(b[1] for b in between) - (n + 1) * seg[4][1])}
    return out, outside
