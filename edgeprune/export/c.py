"""Plain-C int8 export (the edgeprune-c runtime): ``edgeprune export c MODEL --target T -o OUT``.

Pipeline (``export_c``):
1. refuse, before any conversion, a layer the C runtime has no kernel for (its support table,
   ``backends/c/support.py``, naming the layer), and lower the layer graph to the TFLite op
   plan (``backends/tflm/plan.py``);
2. quantize exactly as the TFLM export does (Keras mirror of the plan, TFLiteConverter
   full-integer conversion, canonical flatbuffer): the C code then runs the very scales, zero
   points, int8 weights and int32 biases that TFLM and LiteRT run;
3. generate C from that flatbuffer (``edgeprune.backends.c``): one kernel call per layer, the
   weight encoding of each layer (dense / sparse / clustered) chosen for the objective, one
   static arena laid out by the planner;
4. verify: build the C on the host, run it on the evaluation inputs and compare its output
   bytes with LiteRT's reference kernels and with the tflite-micro runtime (the one whose
   rounding was requested must match exactly, else nothing is written);
5. cross-compile for the target core (arm-none-eabi-gcc -O2) for flash and RAM;
6. write the sources, model.tflite, edgeprune_c.mk, README.md and report.json into a temp dir,
   renamed to OUT at the end.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..artifacts import check_output, staged_output
from ..backends.c import build as cbuild
from ..backends.c.codegen import CORE_DSP, generate
from ..backends.c.ir import read_tflite
from ..backends.c.lower import check_supported
from ..backends.c.quant import ROUNDINGS
from ..backends.c.support import check_graph
from ..backends.c.variants import VARIANTS
from ..backends.tflm import flatbuffer as tflm_flatbuffer
from ..backends.tflm import plan as tflm_plan
from ..errors import EdgepruneError

SEED = 0
N_CALIBRATION = 256


class CExportError(EdgepruneError):
    """The C export cannot proceed; the message says why."""


def quantize(model, graph, plan, cal_nchw: np.ndarray, seed: int = SEED,
             check_nchw: Optional[np.ndarray] = None) -> Tuple[bytes, Optional[float]]:
    """(canonical int8 flatbuffer of `model`, converted as ``export_tflm`` converts it; max
    |torch - Keras mirror| on `check_nchw`, which raises above tolerance, or None)."""
    from .keras_mirror import build_keras_mirror, check_mirror, to_nhwc
    from .tflm import quiet_tf, convert_int8, match_ops
    quiet_tf()
    import keras
    import warnings
    keras.utils.set_random_seed(seed)
    diff = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mirror = build_keras_mirror(model, graph, plan)
        if check_nchw is not None:
            diff = check_mirror(model, mirror, check_nchw)
    plain = tflm_flatbuffer.canonicalize(convert_int8(mirror, to_nhwc(cal_nchw)))
    match_ops(plain, plan)
    return plain, diff


def export_c(model, deployment, out_dir, dataset=None, *, input_shape=None, n_eval: int = 1000,
             n_calibration: int = N_CALIBRATION, objective: str = "cycles",
             variant: Optional[str] = None, variant_per_layer: Optional[Dict[str, str]] = None,
             rounding: str = "tflm", seed: int = SEED, overwrite: bool = False,
             allow_overflow: bool = False, verify: bool = True) -> dict:
    """Export `model` (a float torch module) as edgeprune-c sources into `out_dir`; returns the
    report. deployment: a Deployment, or a target (McuTarget, name or .toml path); only its
    target matters (the runtime is edgeprune-c, int8). dataset: as for export_tflm (None =
    random inputs, no accuracy). variant: dense | sparse | clustered for every weighted layer
    where it applies (default: chosen per layer for `objective`, cycles | flash).
    rounding: tflm | litert, the runtime to be bit-exact with. A build that does not fit the
    target's flash or RAM is a CExportError unless `allow_overflow` (the report says by how
    much). Library output goes to the log file (edgeprune.logs)."""
    from ..logs import native_stderr_to_log
    with native_stderr_to_log():
        return _export_c(model, deployment, out_dir, dataset, input_shape=input_shape,
                         n_eval=n_eval, n_calibration=n_calibration, objective=objective,
                         variant=variant, variant_per_layer=variant_per_layer, rounding=rounding,
                         seed=seed, overwrite=overwrite, allow_overflow=allow_overflow,
                         verify=verify)


def _export_c(model, deployment, out_dir, dataset, *, input_shape, n_eval, n_calibration,
              objective, variant, variant_per_layer, rounding, seed, overwrite, allow_overflow,
              verify) -> dict:
    import torch
    from ..deploy import as_deployment
    from ..graph import extract
    from ..targets import McuTarget
    from .keras_mirror import to_nhwc
    from .tflm import target_overflow, io_quant, match_ops, quantize_input, run_litert, run_tflm, samples

    target = as_deployment(deployment).target
    check_output(out_dir, overwrite)
    if not isinstance(target, McuTarget):
        raise CExportError(f"target '{target.name}' is an {target.kind} target; the C export needs "
                           f"an MCU target")
    core = target.core
    if core not in CORE_DSP:
        raise CExportError(f"target '{target.name}': core '{core}' is not supported by the C "
                           f"runtime (supported: {', '.join(CORE_DSP)})")
    if rounding not in ROUNDINGS:
        raise CExportError(f"rounding must be one of {', '.join(ROUNDINGS)}, not '{rounding}'")
    if objective not in ("cycles", "flash"):
        raise CExportError(f"objective must be cycles or flash, not '{objective}'")
    if variant is not None and variant not in VARIANTS:
        raise CExportError(f"variant must be one of {', '.join(VARIANTS)}, not '{variant}'")
    for layer, v in (variant_per_layer or {}).items():
        if v not in VARIANTS:
            raise CExportError(f"variant for layer '{layer}' must be one of {', '.join(VARIANTS)}, "
                               f"not '{v}'")
    model = model.eval()
    graph = extract(model, input_shape)
    check_graph(graph)                                  # what edgeprune-c has no kernel for
    plan = tflm_plan.lower(graph)                       # refuses what TFLite cannot express
    check_supported((op.opcode, op.node) for op in plan.ops)
    torch.manual_seed(seed)
    cal, ev, labels, data_note = samples(model, graph, dataset, n_calibration, n_eval, seed)
    plain, mirror_diff = quantize(model, graph, plan, cal, seed, ev[:16])
    names = [node for node, _ in sorted(match_ops(plain, plan), key=lambda p: p[1])]
    cgraph = read_tflite(plain, names)
    model_name = type(model).__name__
    gen = generate(cgraph, core, objective, variant, variant_per_layer, model_name, rounding)

    q = io_quant(plain)
    x_int8 = quantize_input(to_nhwc(ev), q["input_scale"], q["input_zero_point"])
    out_bytes = int(np.prod(q["output_shape"]))
    with torch.no_grad():
        float_out = model(torch.from_numpy(ev)).numpy()

    report: dict = {
        "model": model_name, "target": target.name, "core": core, "dsp": CORE_DSP[core],
        "rounding": rounding, "objective": objective, "forced_variant": variant,
        "variant_per_layer": dict(variant_per_layer or {}),
        "io": q, "data": data_note, "eval_samples": int(len(ev)),
        "mirror_max_abs_diff": mirror_diff,
        "layers": [vars(l) for l in gen.layers],
        "arena_bytes": gen.arena_bytes,
        "arena_bytes_tflm_greedy_plan": gen.arena_bytes_tflm_greedy,
        "weight_bytes": int(sum(l.weight_bytes for l in gen.layers)),
        "macs": int(sum(st.macs for st in gen.program.steps if st.weighted is not None)),
        "tools": cbuild.tool_versions(),
    }
    from ..backends.c.costs import estimate_program
    est = estimate_program(gen.program, core)       # None where the core is not calibrated
    if est is not None:
        report["instructions_estimate"] = int(round(est["instructions"]))
        report["cycles_estimate"] = int(round(est["cycles"]))
        report["cycles_estimate_source"] = ("edgeprune/backends/c/cost_constants.py (synthetic "
                                            "layers measured on QEMU, TRM cycles)")
    with cbuild.temp_dir("edgeprune-c-") as tmpd:
        tmp = Path(tmpd)
        src = tmp / "src"
        src.mkdir()
        for name, text in gen.files.items():
            (src / name).write_text(text)
        # Host verification
        ver: dict = {"host_build": None}
        if verify and cbuild.host_cc() is not None:
            hb = cbuild.build_host(src, tmp / "host")
            out_c = cbuild.run_host(hb, x_int8, out_bytes)
            out_litert = run_litert(plain, x_int8).reshape(len(x_int8), -1)
            out_tflm, tflm_arena, _ = run_tflm(plain, x_int8)
            out_tflm = out_tflm.reshape(len(x_int8), -1)
            ver = {
                "host_build": True,
                "host_warnings": hb.warnings.strip(),
                "samples": int(len(x_int8)),
                "identical_vs_tflm": bool(np.array_equal(out_c, out_tflm)),
                "identical_vs_litert_reference": bool(np.array_equal(out_c, out_litert)),
                "outputs_differing_vs_tflm": int((out_c != out_tflm).sum()),
                "outputs_differing_vs_litert_reference": int((out_c != out_litert).sum()),
                "max_abs_diff_vs_tflm": int(np.abs(out_c.astype(int) - out_tflm).max()),
                "max_abs_diff_vs_litert_reference": int(np.abs(out_c.astype(int) - out_litert).max()),
            }
            report["tflm_arena_bytes_host"] = int(tflm_arena)
            want = "identical_vs_tflm" if rounding == "tflm" else "identical_vs_litert_reference"
            if not ver[want]:
                raise CExportError(
                    f"the generated C differs from {'TFLM' if rounding == 'tflm' else 'LiteRT'} on "
                    f"{ver['outputs_differing_vs_' + ('tflm' if rounding == 'tflm' else 'litert_reference')]} "
                    f"output values; refusing to write it (please report this model)")
            if labels is not None:
                report["accuracy_float"] = float((float_out.argmax(1) == labels).mean())
                report["accuracy_int8_c"] = float((out_c.argmax(1) == labels).mean())
        elif verify:
            ver = {"host_build": False, "note": "no host C compiler: the C was not run"}
        report["verification"] = ver
        # Cross compilation for flash and RAM
        if cbuild.arm_gcc() is not None:
            cb = cbuild.cross_compile(src, core, tmp / "arm")
            report["cross"] = {
                "compiler": "arm-none-eabi-gcc " + " ".join(cbuild.CFLAGS + cbuild.CORE_FLAGS[core]),
                "sections": cb.sections, "stack_bytes": cb.stack_bytes,
                "flash_bytes": cb.flash_bytes, "ram_bytes": cb.ram_bytes,
                "warnings": cb.warnings.strip(),
            }
            flash_kb, ram_kb = target.flash_kb or None, target.ram_kb or None
            over = target_overflow(cb.flash_bytes, cb.ram_bytes, target)
            report["fits_target"] = {
                "flash_kb": flash_kb, "ram_kb": ram_kb,
                "flash_fits": None if flash_kb is None else cb.flash_bytes <= flash_kb * 1024,
                "ram_fits": None if ram_kb is None else cb.ram_bytes <= ram_kb * 1024,
                "overflow": over,
            }
            if over and not allow_overflow:
                raise CExportError(f"does not fit {target.name}: {'; '.join(over)} (nothing "
                                   f"written; --allow-overflow writes it anyway)")
        else:
            report["cross"] = None
        _write(Path(out_dir), gen, plain, report, overwrite)
    return report


def _write(out: Path, gen, model_bytes: bytes, report: dict, overwrite: bool) -> None:
    with staged_output(out, overwrite) as tmp:
        for name, text in sorted(gen.files.items()):
            (tmp / name).write_text(text)
        (tmp / "model.tflite").write_bytes(model_bytes)
        srcs = " ".join(sorted(n for n in gen.files if n.endswith(".c")))
        (tmp / "edgeprune_c.mk").write_text(
            "# edgeprune-c sources of this model: add them to the firmware build.\n"
            "EDGEPRUNE_C_DIR := $(dir $(lastword $(MAKEFILE_LIST)))\n"
            f"EDGEPRUNE_C_SRCS := $(addprefix $(EDGEPRUNE_C_DIR),{srcs})\n"
            "EDGEPRUNE_C_INCLUDES := -I$(EDGEPRUNE_C_DIR)\n")
        (tmp / "README.md").write_text(_readme(report, srcs))
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def _readme(r: dict, srcs: str) -> str:
    cross = r.get("cross") or {}
    ver = r.get("verification") or {}
    lines = [
        f"# edgeprune-c export: {r['model']} for {r['target']} ({r['core']})",
        "",
        "Plain C99, int8, no runtime library. Build the `.c` files with the firmware (or include",
        "`edgeprune_c.mk`), then:",
        "",
        "```c",
        '#include "edgeprune_model.h"',
        "int8_t out[EDGEPRUNE_OUTPUT_BYTES];",
        "/* fill edgeprune_input() with the quantized input (EDGEPRUNE_INPUT_SCALE / _ZERO_POINT) */",
        "edgeprune_invoke(edgeprune_input(), out);",
        "```",
        "",
        f"Sources: {srcs}. Define `EP_LAYER_BEGIN(i)` / `EP_LAYER_END(i)` to time layers.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| flash (text + rodata + data), arm-none-eabi-gcc -O2 | {cross.get('flash_bytes', 'n/a')} B |",
        f"| RAM (data + bss + stack {cross.get('stack_bytes', 'n/a')} B) | {cross.get('ram_bytes', 'n/a')} B |",
        f"| arena (in bss) / TFLM's greedy plan of the same buffers | {r['arena_bytes']} / "
        f"{r['arena_bytes_tflm_greedy_plan']} B |",
        f"| weight bytes | {r['weight_bytes']} |",
        f"| rounding | {r['rounding']} |",
        f"| identical to TFLM / LiteRT reference on {ver.get('samples', 0)} inputs | "
        f"{ver.get('identical_vs_tflm', 'n/a')} / {ver.get('identical_vs_litert_reference', 'n/a')} |",
    ]
    if r.get("accuracy_int8_c") is not None:
        lines.append(f"| accuracy float / int8 C | {100 * r['accuracy_float']:.2f} % / "
                     f"{100 * r['accuracy_int8_c']:.2f} % |")
    lines += ["", "| # | layer | op | kernel | weight bytes | MACs |", "|---|---|---|---|---|---|"]
    for l in r["layers"]:
        lines.append(f"| {l['index']} | {l['layer']} | {l['op']} | {l['kernel']} | "
                     f"{l['weight_bytes']} | {l['macs']} |")
    return "\n".join(lines) + "\n"
