#!/usr/bin/env python3
"""TFLM arena on the 32-bit target: the cost model's estimate (edgeprune.backends.tflm.memory,
abi='arm32') against arena_used_bytes() measured on the emulated Cortex-M4 (QEMU mps2-an386).

    .venv/bin/python benchmarks/tflm_target.py --tflm-root DIR [--cache DIR] [--probe]
        [--models lenet5 ...] [--skip-zoo]

One firmware (benchmarks/tflm_target_probe.cc, linked against TFLM + CMSIS-NN built with TFLM's
Makefile for cortex-m4+fp) embeds every model's flatbuffer; for each it prints
arena_used_bytes() after AllocateTensors() with the interpreter an export uses, and every
persistent (tail) allocation (size, alignment) through a logging SingleArenaBufferAllocator,
plus sizeof/alignof of TFLM's public allocation structs.

- Calibration split: the synthetic single-op models of benchmarks/tflm_memory.py
  (calibration_cases()); --probe writes their struct sizes and tail allocations to
  benchmarks/results/tflm_target_structs.json, from which
  edgeprune/backends/tflm/arm32_structs.py is generated (the constants the arm32 estimate uses).
- Validation split: the zoo models (random weights, random calibration data: the arena does
  not depend on weight values in a dense export), never used to set a constant.
Writes benchmarks/results/tflm_target_arena.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from benchmarks.common import RESULTS, command_line  # noqa: E402

PROBE_SRC = HERE / "tflm_target_probe.cc"
STRUCTS_JSON = RESULTS / "tflm_target_structs.json"
STRUCTS_PY = REPO / "edgeprune" / "backends" / "tflm" / "arm32_structs.py"
CORE = "cortex-m4"
# struct ids printed by tflm_target_probe.cc
STRUCTS = ["SingleArenaBufferAllocator", "GreedyMemoryPlanner", "MicroAllocator",
           "SubgraphAllocations", "TfLiteEvalTensor", "NodeAndRegistration", "TfLiteTensor",
           "TfLiteAffineQuantization", "ScratchBufferHandle", "ScratchBufferRequest",
           "TfLiteIntArray", "TfLiteTensor*", "TfLiteConvParams", "TfLiteDepthwiseConvParams",
           "TfLiteFullyConnectedParams", "TfLitePoolParams", "TfLiteAddParams",
           "TfLiteSoftmaxParams", "TfLiteConcatenationParams", "TfLiteReshapeParams",
           "MicroInterpreter", "TfLiteNode", "TfLiteIntArray*"]
OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D",
       "RESHAPE", "SOFTMAX", "ADD", "CONCATENATION", "PAD", "LOGISTIC", "TANH", "RELU", "RELU6"]
ZOO = ("lenet5", "lenet300100", "fc_autoencoder", "dscnn", "resnet8", "vgg_small",
       "mobilenetv1_025")
ARENA = 256 * 1024


def flatbuffer_of(model, seed: int = 0):
    """(graph, plan, canonical int8 flatbuffer) as the exporter converts it (random
    calibration data)."""
    import numpy as np
    from edgeprune.backends.tflm import flatbuffer as tflm_flatbuffer
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.export import tflm as ex
    from edgeprune.export.keras_mirror import build_keras_mirror, to_nhwc
    from edgeprune.graph import extract
    model.eval()
    g = extract(model)
    plan = tflm_plan.lower(g)
    rng = np.random.default_rng(seed)
    cal = rng.random((16,) + tuple(g.input_shape), dtype=np.float32)
    b = tflm_flatbuffer.canonicalize(ex.convert_int8(build_keras_mirror(model, g, plan), to_nhwc(cal)))
    return g, plan, b


def cases(split: str, models=None):
    import torch
    if split == "calibration":
        from tflm_memory import calibration_cases
        torch.manual_seed(0)
        for name, m in calibration_cases():
            yield name, m
    else:
        from tflm_memory import _randomize_bn
        from edgeprune.models import build
        for name in models or ZOO:
            torch.manual_seed(0)
            yield name, _randomize_bn(build(name), 0)


def run_probe(flatbuffers, tflm_root: Path, cache: Path, keep: Path = None) -> dict:
    """Build and run the probe firmware on QEMU: {'structs': {name: [size, align]},
    'models': [{'used', 'used_logged', 'head', 'tail_allocs': [[size, align], ...]}]}."""
    from dataclasses import replace
    from edgeprune.verify import firmware as fw
    from edgeprune.verify.boards import board_for
    from edgeprune.verify.qemu import run_icount
    from edgeprune.verify.tflm_build import build_tflm
    board = board_for(CORE)
    lib = build_tflm(tflm_root, CORE, OPS, cache)
    with tempfile.TemporaryDirectory(prefix="tflm-target-") as d:
        work = Path(keep) if keep else Path(d)
        work.mkdir(parents=True, exist_ok=True)
        for fname, text in fw.support_files(board, 1).items():
            (work / fname).write_text(text)
        src = ["#include <stdint.h>"]
        for i, b in enumerate(flatbuffers):
            src.append("__attribute__((aligned(16))) " + fw.c_array(f"epm_model_{i}", b, "unsigned char"))
        src.append("const unsigned char* const epm_models[] = {"
                   + ", ".join(f"epm_model_{i}" for i in range(len(flatbuffers))) + "};")
        src.append(f"const unsigned int epm_n_models = {len(flatbuffers)};")
        (work / "epm_models.c").write_text("\n".join(src) + "\n")
        mflags = lib.machine_flags()
        cxxflags = [f for f in lib.cxxflags if not f.startswith("-MD")]
        objs = []
        for fname, flags, cc in (("epv_startup.c", [*mflags, "-std=gnu11", "-O2"], "arm-none-eabi-gcc"),
                                 ("epv_support.c", [*mflags, "-std=gnu11", "-O2"], "arm-none-eabi-gcc"),
                                 ("epm_models.c", [*mflags, "-std=gnu11", "-O2"], "arm-none-eabi-gcc"),
                                 (str(PROBE_SRC), [*cxxflags, "-Os", f"-DEPM_ARENA_BYTES={ARENA}"],
                                  "arm-none-eabi-g++")):
            s = work / fname
            obj = work / (Path(fname).stem + ".o")
            p = subprocess.run([fw.tool(cc), *flags, f"-I{work}", *lib.includes, "-c", str(s),
                                "-o", str(obj)], capture_output=True, text=True, cwd=str(lib.tree))
            if p.returncode != 0:
                raise SystemExit(f"{fname}: does not compile: {p.stderr[-1500:]}")
            objs.append(obj)
        b = replace(board, cflags=tuple(mflags), ram_bytes=max(board.ram_bytes, 0))
        elf = fw.link(b, objs, work / "probe.elf", cxx=True, extra=[str(lib.library), "-lm"])
        out = run_icount(board, elf.path)
    sizes = dict(out.get("sz"))
    aligns = dict(out.get("al"))
    structs = {STRUCTS[i]: [sizes[i], aligns[i]] for i in sorted(sizes)}
    models = []
    cur = None
    for tag, a, bb in out.tags:
        # per model: the plain run's markers, "used", the logged run's events, "used2"
        if tag == "used":
            cur = {"used": bb, "events": []}
            models.append(cur)
        elif tag in ("pa", "oi", "op") and cur is not None:
            cur["events"].append([tag, a, bb])
        elif tag == "used2":
            cur["used_logged"] = bb
            cur = None
        elif tag == "head":
            models[-1]["head"] = bb
    return {"structs": structs, "models": models, "board": board.machine,
            "tflm_objects": lib.objects}


def collect(split: str, models=None, fb_cache: Path = None):
    """[(name, split, graph, plan, flatbuffer)]; flatbuffers optionally cached in fb_cache."""
    out = []
    for name, m in cases(split, models):
        t0 = time.time()
        from edgeprune.backends.tflm import plan as tflm_plan
        from edgeprune.graph import extract
        p = fb_cache / f"{name}.tflite" if fb_cache else None
        if p is not None and p.is_file():
            g = extract(m.eval())
            plan = tflm_plan.lower(g)
            b = p.read_bytes()
        else:
            g, plan, b = flatbuffer_of(m)
            if p is not None:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(b)
        print(f"{split} {name}: {len(b)} B flatbuffer ({time.time() - t0:.1f} s)", flush=True)
        out.append((name, split, g, plan, b))
    return out


def kernel_allocations(rows):
    """Per op kind, the tail allocations its Init and Prepare make on the target, read from
    the marked allocation traces of the calibration models: {'init': {op: [bytes...]},
    'prepare': {op: [bytes...]}} (Prepare without the per-channel multiplier/shift arrays,
    whose size the estimate computes); raises if two models disagree."""
    from edgeprune.backends.tflm import memory as M
    init, prep = {}, {}
    for r in rows:
        plan, ev = r["_plan"], r["events"]
        n_post = (1 if r["_n_scratch"] else 0) + sum(
            1 + sum(3 if plan.tensors[t].quant_channels else 1 for t in g)
            for g in (plan.inputs, plan.outputs))
        segs = []                 # [(kind, op index in OPS, [sizes])]
        for tag, a, b in ev:
            if tag in ("oi", "op"):
                segs.append((tag, a, []))
            elif segs:
                segs[-1][2].append(a)
        # the last Prepare segment ends with the scratch handles and the I/O tensors
        if segs and n_post:
            segs[-1] = (segs[-1][0], segs[-1][1], segs[-1][2][:-n_post])
        op_iter = {"oi": iter(plan.ops), "op": iter(plan.ops)}
        for kind, k, sizes in segs:
            op = next(op_iter[kind])
            if OPS[k] != op.opcode:
                raise SystemExit(f"{r['model']}: trace op {OPS[k]} where the plan has {op.opcode}")
            if kind == "op":
                ch = M._per_channel_arrays(plan, op)
                if ch:
                    if sizes[:2] != [4 * ch, 4 * ch]:
                        raise SystemExit(f"{r['model']} {op.opcode}: expected two {4 * ch} B "
                                         f"arrays first, got {sizes}")
                    sizes = sizes[2:]
            table = init if kind == "oi" else prep
            if table.setdefault(op.opcode, sizes) != sizes:
                raise SystemExit(f"{r['model']} {op.opcode} {kind}: {sizes}, other models "
                                 f"{table[op.opcode]}")
    return {"init": init, "prepare": prep}


def write_structs_module(data: dict) -> None:
    st = data["structs"]
    lines = ['"""TFLM allocation sizes on the 32-bit target (Cortex-M4, arm-none-eabi-g++), used by',
             "edgeprune.backends.tflm.memory.estimate_arena(abi='arm32').",
             "",
             "GENERATED by benchmarks/tflm_target.py --probe from",
             "benchmarks/results/tflm_target_structs.json: sizeof/alignof printed on QEMU "
             f"{data['board']} by",
             "benchmarks/tflm_target_probe.cc (linked against the TFLM tree's own build), and the",
             "tail allocations each kernel's Init and Prepare made for the synthetic calibration",
             "models (benchmarks/tflm_memory.py calibration_cases). Do not edit.",
             '"""',
             "",
             f"# TFLM revision: {data['tflm_revision']}; compiler: {data['compiler']}",
             "STRUCTS = {  # name: (sizeof, alignof)"]
    for k, (a, b) in st.items():
        lines.append(f"    {k!r}: ({a}, {b}),")
    lines.append("}")
    lines.append(f"BUILTIN_DATA_ALLOCATOR = {tuple(data['builtin_data_allocator'])}  "
                 "# MicroBuiltinDataAllocator (micro_allocator.cc), from the trace")
    lines.append("KERNEL_INIT = {  # op: bytes of each persistent buffer its Init allocates (16-aligned)")
    for k, v in sorted(data["kernels"]["init"].items()):
        lines.append(f"    {k!r}: {tuple(v)!r},")
    lines.append("}")
    lines.append("KERNEL_PREPARE = {  # op: further buffers its Prepare allocates (besides the "
                 "per-channel multiplier/shift arrays)")
    for k, v in sorted(data["kernels"]["prepare"].items()):
        lines.append(f"    {k!r}: {tuple(v)!r},")
    lines.append("}")
    STRUCTS_PY.write_text("\n".join(lines) + "\n")


def _tool_version(name):
    try:
        return subprocess.run([name, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def _revision(tree: Path) -> str:
    p = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    if p.returncode == 0:
        return p.stdout.strip()
    from edgeprune.verify.tflm_build import _revision as rev
    r = rev(tree)
    return r.strip().splitlines()[0][:80] if r.strip() else str(tree)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflm-root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "tflm-cache")
    ap.add_argument("--probe", action="store_true",
                    help="also (re)write tflm_target_structs.json and arm32_structs.py from the "
                         "calibration models' traces")
    ap.add_argument("--models", nargs="*", default=None, help="zoo models (default: all 7)")
    ap.add_argument("--skip-zoo", action="store_true")
    ap.add_argument("--fb-cache", type=Path, default=None,
                    help="cache converted flatbuffers (and the probe's raw output) here (development)")
    ap.add_argument("--reuse-probe", action="store_true",
                    help="with --fb-cache: reuse the probe output stored there (development)")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    from edgeprune.backends.tflm import memory as M
    from edgeprune.verify.tflm_build import find_tree
    tree = find_tree(args.tflm_root)
    items = collect("calibration", fb_cache=args.fb_cache)
    if not args.skip_zoo:
        items += collect("validation", args.models, fb_cache=args.fb_cache)
    t0 = time.time()
    raw = args.fb_cache / "probe.json" if args.fb_cache else None
    if args.reuse_probe and raw is not None and raw.is_file():
        res = json.loads(raw.read_text())
    else:
        res = run_probe([b for *_, b in items], tree, args.cache)
        if raw is not None:
            raw.write_text(json.dumps(res))
    print(f"probe firmware: {time.time() - t0:.1f} s", flush=True)
    rows = []
    for (name, split, g, plan, b), m in zip(items, res["models"]):
        ops = M._compressed_plan(plan, {})
        _, scratch, *_ = M._head(plan, ops, M._cmsis_scratch, False)
        rows.append({"model": name, "split": split, "ops": [op.opcode for op in plan.ops],
                     "arena_measured": m["used"], "events": m["events"], "_plan": plan,
                     "_graph": g, "_n_scratch": len(scratch), "flatbuffer_bytes": len(b)})
    if args.probe:
        cal = [r for r in rows if r["split"] == "calibration"]
        ev0 = [e for e in cal[0]["events"] if e[0] == "pa"]
        st = res["structs"]
        assert ev0[0][1:] == st["GreedyMemoryPlanner"] and ev0[1][1:] == st["MicroAllocator"], ev0[:3]
        data = {"board": res["board"], "core": CORE, "tflm_revision": _revision(tree),
                "compiler": _tool_version("arm-none-eabi-g++"),
                "structs": st, "builtin_data_allocator": ev0[2][1:],
                "kernels": kernel_allocations(cal),
                "traces": {r["model"]: r["events"] for r in cal},
                "command": command_line()}
        STRUCTS_JSON.write_text(json.dumps(data, indent=1) + "\n")
        write_structs_module(data)
        import importlib
        import edgeprune.backends.tflm.arm32_structs as A
        importlib.reload(A)
    out = []
    for r in rows:
        est = M.estimate_arena(r["_graph"], plan=r["_plan"], abi="arm32", runtime="tflm-cmsis-nn")
        host = M.estimate_arena(r["_graph"], plan=r["_plan"], abi="host64")
        seq = M.tail_allocations_arm32(r["_plan"], M._compressed_plan(r["_plan"], {}),
                                       len(r["_plan"].tensors), r["_n_scratch"])
        logged = [e[1] for e in r["events"] if e[0] == "pa"]
        replay = [s[2] for s in seq[1:]]          # the logged run has no allocator object in the tail
        out.append({"model": r["model"], "split": r["split"], "ops": r["ops"], "core": CORE,
                    "board": res["board"],
                    "arena_estimate": est["total_bytes"], "arena_measured": r["arena_measured"],
                    "error_pct": round(100 * (est["total_bytes"] - r["arena_measured"]) / r["arena_measured"], 3),
                    "head_estimate": est["head_bytes"], "tail_estimate": est["persistent_bytes"],
                    "tail_trace_vs_replay": ("identical" if logged == replay else
                                             "same allocations, another op order"
                                             if sorted(logged) == sorted(replay) else "different"),
                    "arena_estimate_host64": host["total_bytes"],
                    "command": command_line()})
        print(f"{r['split']:11s} {r['model']:18s} est {est['total_bytes']:7d} measured "
              f"{r['arena_measured']:7d} ({out[-1]['error_pct']:+.3f} %) tail trace vs replay: "
              f"{out[-1]['tail_trace_vs_replay']}", flush=True)
        if sorted(logged) != sorted(replay):
            print("   logged", logged[:40], "\n   replay", replay[:40])
    (RESULTS / "tflm_target_arena.json").write_text(json.dumps({"rows": out}, indent=1) + "\n")
    write_markdown(out)
    return 0


def write_markdown(rows) -> None:
    lines = ["# TFLM arena on the 32-bit target: estimate vs arena_used_bytes() on QEMU",
             "",
             f"Core {CORE} (QEMU {rows[0]['board']}), TFLM + CMSIS-NN built with TFLM's Makefile "
             "(cortex-m4+fp). Measured: `arena_used_bytes()` after `AllocateTensors()` in "
             "benchmarks/tflm_target_probe.cc. Estimate: "
             "`edgeprune.backends.tflm.memory.estimate_arena(g, abi='arm32')` (struct sizes from "
             "the calibration models' probe, arm32_structs.py). `host64`: the 64-bit host estimate "
             "(TFLM's Python runtime) for comparison. Calibration = synthetic single-op models; "
             "validation = the zoo (never used for a constant).",
             "", "| split | model | ops | estimate | measured | error % | tail allocations: trace vs replay | host64 estimate |",
             "|---|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        ops = ", ".join(sorted(set(r["ops"])))
        lines.append(f"| {r['split']} | {r['model']} | {ops} | {r['arena_estimate']} | "
                     f"{r['arena_measured']} | {r['error_pct']:+.3f} | "
                     f"{r['tail_trace_vs_replay']} | {r['arena_estimate_host64']} |")
    for split in ("calibration", "validation"):
        e = [abs(r["error_pct"]) for r in rows if r["split"] == split]
        if e:
            lines.append(f"\nWorst |error| ({split}, {len(e)} models): {max(e):.3f} %")
    lines += ["", "Produced by: `" + rows[0]["command"] + "`", ""]
    (RESULTS / "tflm_target_arena.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
