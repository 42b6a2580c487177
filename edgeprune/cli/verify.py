"""`edgeprune verify OUT --qemu CORE`: argparse only; the work is in edgeprune/verify/."""
from __future__ import annotations

import argparse

from .common import non_negative_int

CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m0plus")


def register(sub) -> None:
    p = sub.add_parser("verify", help="run an export on an emulated Cortex-M core (QEMU) and "
                                      "measure it exactly")
    p.description = (
        "Build OUT (an 'edgeprune export c' output) into a bare-metal firmware for the QEMU board "
        "of CORE (cortex-m4 = mps2-an386, cortex-m7 = mps2-an500, cortex-m33 = mps2-an505, "
        "cortex-m55 = mps3-an547, cortex-m0plus = its Armv6-M binary on the Cortex-M3 board "
        "mps2-an385, timed with the M0+ table), run it with -icount and report the exact instructions per "
        "invoke and per layer, cycles through the core's TRM timings, flash and RAM (stack "
        "high-water mark measured on the run), and whether the output bytes equal the host "
        "reference's on the inputs. An 'export tflm' output is built against TFLite-Micro + "
        "CMSIS-NN from --tflm-root (built once per core and op set, cached) and reports the "
        "instructions per invoke and per operator and the arena used on the target. Writes "
        "verify.json and firmware.elf into -o.")
    p.add_argument("export_dir", metavar="OUT",
                   help="an 'edgeprune export c' or 'edgeprune export tflm' output directory")
    p.add_argument("--qemu", required=True, metavar="CORE", choices=CORES,
                   help="core to emulate: " + ", ".join(CORES))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="DATA",
                     help="fashion-mnist | mnist-10k | PATH: run the first test images")
    src.add_argument("--inputs", metavar="FILE.npy",
                     help="inputs: int8 (N, input bytes), or float NHWC quantized with the "
                          "model's input scale")
    p.add_argument("--samples", type=non_negative_int, default=10, metavar="N",
                   help="number of inputs to run (default 10; 0 = all given)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the random int8 inputs used without --data / --inputs")
    p.add_argument("--no-cycles", action="store_true",
                   help="skip the execution-trace runs (TRM cycles); instruction counts only")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer counts")
    p.add_argument("--tflm-root", metavar="PATH",
                   help="TFLite-Micro tree (with tensorflow/lite/micro/tools/make/downloads/ "
                        "populated) for an 'export tflm' output")
    p.add_argument("--tflm-cache", metavar="DIR",
                   help="where built TFLM libraries are kept [~/.cache/edgeprune/tflm]")
    p.add_argument("--jobs", type=non_negative_int, default=2, help="make -j for the TFLM build")
    p.add_argument("-o", "--output", metavar="VOUT",
                   help="output directory [OUT-verify-CORE beside OUT]")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty VOUT (files edgeprune did not write are kept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path
    from ..verify.run import verify_command
    out = args.output or str(Path(args.export_dir.rstrip("/")).absolute()) + f"-verify-{args.qemu}"
    res = verify_command(Path(args.export_dir), args.qemu, out, data=args.data, inputs=args.inputs,
                         samples=args.samples, seed=args.seed, cycles=not args.no_cycles,
                         layers=not args.no_layers, overwrite=args.overwrite,
                         tflm_root=args.tflm_root, tflm_cache=args.tflm_cache, jobs=args.jobs or 1)
    cyc = f", {res['cycles_trm']} cycles (TRM)" if "cycles_trm" in res else ""
    checks = ", ".join(f"{k}: {'identical' if v['identical'] else str(v['outputs_differing']) + ' bytes differ'}"
                       for k, v in res["outputs_vs_host"].items())
    arena = (f", arena used {res['arena_used_bytes']} B on the target"
             if "arena_used_bytes" in res else "")
    print(f"wrote {out}: {res['board']} ({res['core']}): {res['instructions_per_invoke']} "
          f"instructions per invoke{cyc}{arena}; flash {res['flash_bytes']} B, RAM {res['ram_bytes']} B "
          f"(stack {res['stack_bytes_measured']} B measured); outputs on {res['inputs']['count']} "
          f"inputs vs host: {checks}")
    if res.get("trace_instructions_equal_icount") is False:
        print(f"warning: on {res['board']} the execution trace and the -icount timer disagree on "
              f"the instruction count; cycles_trm is approximate (the instruction counts are the "
              f"timer's)")
    if not res["identical"]:
        from ..errors import EdgepruneError
        raise EdgepruneError(f"the output bytes on {res['board']} differ from the host reference "
                             f"(report written to {out})")
    return 0
