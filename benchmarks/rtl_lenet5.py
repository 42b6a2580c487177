"""LeNet-5-class models through `edgeprune export rtl` on an iCE40 UP5K (bitstream, nextpnr
Fmax) and a 7-series part (yosys synth_xilinx counts), folded vs unrolled MVUs.

    python benchmarks/rtl_lenet5.py --model dense=lenet5 \\
        --model channel-pruned=runs/rtl/prune_lut5000 --model weight90=runs/rtl/prune_w90 \\
        --targets ice40-up5k,pynq-z2 --styles folded,unrolled --sim-images 1000 [--fps 100]

Each row: the Verilator run (bit-exact images of --sim-images Fashion-MNIST test images, II and
latency measured = the cycle model), LUT / FF / BRAM / DSP (ice40: placed design incl. the UART
wrapper; xc7: yosys synth_xilinx of the dataflow), Fmax (nextpnr-ice40), FPS = clock / II at the
target clock and at Fmax. A design that does not fit is a row with its error message.
-> benchmarks/results/rtl_lenet5.json and rtl_lenet5.md
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402


def run_one(name, spec, target, style, args):
    from edgeprune.deploy import Deployment
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.rtl import export_rtl
    from edgeprune.models.loading import load_model
    from edgeprune.targets import load_target

    t = load_target(target)
    model = load_model(spec, seed=args.seed)
    dep = Deployment.for_target(t, fps=args.fps)
    row = {"model": name, "spec": spec, "target": target, "style": style,
           "command": command_line()}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ep-rtl-bench-") as d:
        try:
            r = export_rtl(model, dep, Path(d) / "out", data=args.data, epochs=args.epochs,
                           seed=args.seed, sim_images=args.sim_images, style=style,
                           verify_images=args.sim_images, progress=False,
                           synth_timeout=args.synth_timeout)
        except EdgepruneError as e:
            row.update({"fits": False, "error": str(e), "seconds": round(time.time() - t0)})
            return row
    hw, c, v = r["hardware"], r["cycles"], r["verilator"]
    syn = hw.get("synth", {})
    row.update({
        # a yosys run stopped by --synth-timeout: built and verified, resources not counted
        "fits": None if hw.get("synth_error") else True, "params_nonzero": r["quantization"]["total_weights"]
        - r["quantization"]["zero_weights"], "params": r["quantization"]["total_weights"],
        "accuracy_rtl": r["accuracy_rtl"], "images": v["images"],
        "bit_exact_images": v["exact_images"], "ii_cycles": c["ii_model"],
        "ii_measured": v["ii_cycles_measured"], "latency_cycles": c["latency_model"],
        "latency_measured": v["latency_cycles_measured"],
        "ii_slowest_unit_formula": c["ii_slowest_unit"],
        "lut": syn.get("lut"), "ff": syn.get("ff"), "bram": syn.get("bram"),
        "dsp": syn.get("dsp"), "logic_cells_placed": hw.get("placed", {}).get("lc", {}).get("used"),
        "rtl_estimate_plan": r.get("rtl_estimate", {}).get("plan"),
        "rtl_estimate_budget": r.get("rtl_estimate", {}).get("budget"),
        "fmax_mhz": hw.get("fmax_mhz"), "clock_mhz": r["target"]["clock_mhz"],
        "fps_at_clock": round(c["fps_at_target_clock"], 1),
        "fps_at_fmax": round(hw["fmax_mhz"] * 1e6 / c["ii_model"], 1) if hw.get("fmax_mhz")
        else None,
        "units": [f"{u['layer']}:{u['kind']}" + (f"/{u['style']} PE{u['PE']} SIMD{u['SIMD']}"
                                                  if u["kind"] == "mvu" else "")
                  for u in r["units"]],
        "seconds": round(time.time() - t0)})
    if hw.get("synth_error"):
        row["error"] = (f"{hw['synth_error']} (--synth-timeout; Verilog built and verified "
                        f"in Verilator, resources not counted)")
        row["rtl_estimate_budget"] = row["rtl_estimate_plan"]
    return row


def run_bounded(name, spec, target, style, args):
    """run_one in a child process of its own session, stopped (with its Verilator / yosys /
    nextpnr children) after --row-timeout seconds: such a row records where it was stopped and
    the RTL cost model's estimate of the folded design (from the layer graph, as prune's
    budget computes it)."""
    import os
    import signal
    import subprocess
    with tempfile.TemporaryDirectory(prefix="ep-rtl-row-") as d:
        out = Path(d) / "row.json"
        cmd = [sys.executable, __file__, "--one", str(out), "--model", f"{name}={spec}",
               "--targets", target, "--styles", style, "--data", args.data,
               "--epochs", str(args.epochs), "--sim-images", str(args.sim_images),
               "--seed", str(args.seed), "--synth-timeout", str(args.synth_timeout)] + (
                   ["--fps", str(args.fps)] if args.fps else [])
        t0 = time.time()
        stage = []
        with open(Path(d) / "log.txt", "w") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            try:
                p.wait(timeout=args.row_timeout)
            except subprocess.TimeoutExpired:
                # the tools running at that moment say which stage it reached
                ps = subprocess.run(["ps", "-o", "comm=", "-s", str(p.pid)],
                                    capture_output=True, text=True).stdout.split()
                stage = sorted({c for c in ps if c.startswith(
                    ("yosys", "verilator", "cc1plus", "Vtb", "nextpnr", "icepack"))})
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if out.is_file():
            row = json.loads(out.read_text())
            row["command"] = command_line()
            return row
        tail = [ln for ln in (Path(d) / "log.txt").read_text().strip().splitlines()
                if "torchvision is not installed" not in ln][-3:]
    row = {"model": name, "spec": spec, "target": target, "style": style,
           "command": command_line(), "fits": None, "seconds": round(time.time() - t0),
           "error": (f"not finished within --row-timeout {args.row_timeout} s"
                     + (f" (stopped while running {', '.join(stage)})" if stage else "")
                     if p.returncode == -signal.SIGKILL else
                     f"failed (exit {p.returncode})") + (f"; last output: {' | '.join(tail)}"
                                                         if tail else "")}
    try:
        row["rtl_estimate_budget"] = graph_estimate(spec, target, args)
    except Exception as e:  # noqa: BLE001 - the estimate is context only
        row["rtl_estimate_budget"] = {"error": str(e)}
    return row


def graph_estimate(spec, target, args):
    from edgeprune.backends.rtl.cost import graph_resources
    from edgeprune.cost import estimate
    from edgeprune.deploy import Deployment
    from edgeprune.graph import extract
    from edgeprune.models.loading import load_model
    from edgeprune.targets import load_target
    dep = Deployment.for_target(load_target(target), fps=args.fps)
    g = extract(load_model(spec, seed=args.seed))
    return graph_resources(g, dep, estimate(g, dep).layers)


def _n(v) -> str:
    return "not counted" if v is None else str(v)


# Cells of the by-model table without a row, and why: the channel-pruned model of its column
# (runs/rtl/prune_fit) can no longer be made, its prune commands cut further since the iCE40
# budget became the RTL estimate (README, "RTL dataflow"). Filled in from the rows by _not_run.
NOT_RUN = {("channel-pruned", "pynq-z2", "unrolled"), ("channel-pruned", "ice40-up5k", "unrolled")}


def _not_run(key, cells) -> str:
    """Why a cell of NOT_RUN has no row, with the figures of the rows that say what it would
    take: unrolled LUTs grow with the non-zero weights (rtl_yosys.md, cal_unr_*)."""
    model, target, style = key

    def nonzero(name):
        return next((r["params_nonzero"] for (m, _, _), r in cells.items()
                     if m == name and r.get("params_nonzero")), None)
    small = cells.get(("channel-pruned-up5k", target, style))
    if nonzero(model) is None or nonzero("channel-pruned-up5k") is None or small is None:
        return "-"
    got = (f"takes {small['lut']:,} LUT" if small.get("fits") else "does not place")
    return (f"not run: the model is not reproducible by its recorded prune commands; unrolled "
            f"LUTs grow with the non-zero weights, {nonzero(model):,} here, and "
            f"channel-pruned-up5k with {nonzero('channel-pruned-up5k'):,} "
            f"{got} unrolled on {target}")


def _cell(r, key=None, cells=None) -> str:
    """One row of the table in a few figures, or why there are none."""
    if r is None:
        return _not_run(key, cells) if key in NOT_RUN else "-"
    if r.get("fits"):
        fmax = f"Fmax {r['fmax_mhz']} MHz" if r.get("fmax_mhz") else "Fmax n/a"
        at_fmax = f", {r['fps_at_fmax']:,.0f} @Fmax" if r.get("fps_at_fmax") else ""
        ep = r.get("rtl_estimate_plan") or {}
        est = (f" (est. {ep['lut']:,} / {ep['ff']:,} / {ep['bram']} / {ep['dsp']})"
               if "lut" in ep else "")
        return (f"LUT {r['lut']:,}, FF {r['ff']:,}, BRAM {r['bram']}, DSP {r['dsp']}{est}; "
                f"{fmax}; "
                f"II {r['ii_measured']:,} / latency {r.get('latency_measured') or 0:,} cycles; "
                f"{r['fps_at_clock']:,.0f} FPS{at_fmax}")
    e = r.get("error", "")
    if "RTL cost model estimate" in e:
        est = e.split("estimate", 1)[1].split(" (at least")[0]
        est = est.replace(" (from the layer graph, before training)", "")
        return f"does not fit (estimate:{est})"
    if "no BELs remaining" in e:
        return "does not fit (nextpnr: out of logic cells)"
    if r.get("fits") is None and r.get("ii_measured"):
        ep = r.get("rtl_estimate_plan") or {}
        return (f"yosys not finished within --synth-timeout (no counts); estimate "
                f"{ep.get('lut', 0):,} LUT, {ep.get('ff', 0):,} FF, {ep.get('bram')} BRAM, "
                f"{ep.get('dsp')} DSP; Verilator {r['bit_exact_images']}/{r['images']} "
                f"bit-exact; II {r['ii_measured']:,} / latency "
                f"{r.get('latency_measured') or 0:,} cycles; {r['fps_at_clock']:,.0f} FPS")
    if r.get("fits") is None:
        eb = r.get("rtl_estimate_budget") or {}
        est = (f"; folded estimate {eb['lut']:,} LUT, {eb['ff']:,} FF, {eb['bram']} BRAM, "
               f"{eb['dsp']} DSP" if "lut" in eb else "")
        return e.split(";")[0] + est
    return e[:120]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=SPEC")
    ap.add_argument("--report-only", action="store_true",
                    help="only rewrite rtl_lenet5.md from the rows in rtl_lenet5.json")
    ap.add_argument("--targets", default="ice40-up5k,pynq-z2")
    ap.add_argument("--styles", default="folded,unrolled")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--sim-images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=None,
                    help="the deployment's FPS target: the cost model folds for the least "
                         "resources reaching it (default: the highest FPS that fits)")
    ap.add_argument("--row-timeout", type=int, default=0,
                    help="stop a row (export, Verilator, synthesis, place and route) after this "
                         "many seconds and record it as not finished (default: no limit)")
    ap.add_argument("--synth-timeout", type=int, default=1800,
                    help="seconds for yosys synth_xilinx (xc7 rows); past it the row keeps its "
                         "Verilator figures without resource counts")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, spec = args.model[0].split("=", 1)
        row = run_one(name, spec, args.targets, args.styles, args)
        Path(args.one).write_text(json.dumps(row))
        return 0
    if not args.model and not args.report_only:
        ap.error("--model NAME=SPEC is required (or --report-only)")
    rows = []
    table = json.loads((RESULTS / "rtl_lenet5.json").read_text()) if args.report_only else []
    if args.report_only:
        # rows stopped by --row-timeout: their estimate again, from today's calibration.json
        for r in table:
            if r.get("fits") is None and "--fps" not in r.get("command", ""):
                r["rtl_estimate_budget"] = graph_estimate(r["spec"], r["target"], args)
        (RESULTS / "rtl_lenet5.json").write_text(json.dumps(table, indent=2) + "\n")
    for m in ([] if args.report_only else args.model):
        name, spec = m.split("=", 1)
        for target in args.targets.split(","):
            for style in args.styles.split(","):
                row = (run_bounded if args.row_timeout else run_one)(name, spec, target,
                                                                     style, args)
                print(json.dumps({k: v for k, v in row.items() if k not in ("units", "command")}),
                      flush=True)
                rows.append(row)
                table = upsert_rows("rtl_lenet5.json", [row], ("model", "target", "style"))
    md = ["# LeNet-5-class models through export rtl", "",
          "LUT / FF / BRAM / DSP: iCE40 rows from the placed design (yosys synth_ice40 + "
          "nextpnr-ice40, UART wrapper included; BRAM = 4-kbit EBR, DSP = SB_MAC16); xc7 rows "
          "from yosys synth_xilinx of the dataflow (BRAM = RAMB18, DSP = DSP48E1). Fmax: "
          "nextpnr-ice40; none for xc7, whose only open place and route (nextpnr-xilinx with "
          "prjxray) is not installed here, so FPS @Fmax is iCE40 only. Cycles: II (cycles per "
          "image in steady state, Verilator-measured, = the cycle model in brackets) and latency "
          "(first pixel in to result out). est. (plan): the RTL cost model's figures of the design "
          "as built (backends/rtl/cost.py, xc7: LUT6 / FF / RAMB18 / DSP48E1), against yosys's "
          "LUT / FF / BRAM / DSP of the same row. LC: iCE40 logic cells placed by nextpnr; est.: the "
          "RTL cost model's LUT4 + DFF of the same design (backends/rtl/cost.py), the figure "
          "`prune --target ice40-up5k --budget lut=...` checks (budget: from the layer graph; "
          "plan: from the units as built; as of the calibration when the row was run). A design "
          "that does not fit is a row with the export's message; a row stopped by "
          "--row-timeout says so, with the RTL cost model's estimate of the folded design "
          "(recomputed from the current calibration by `benchmarks/rtl_lenet5.py "
          "--report-only`).", "",
          "| model | target | style | fits | params (non-zero) | LUT | FF | "
          "est. LUT / FF / BRAM / DSP (plan) | "
          "LC placed (est. budget / plan) | BRAM | DSP | Fmax MHz | II cycles (model) | "
          "latency cycles | FPS @clock | FPS @Fmax | bit-exact | accuracy | command |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        if r.get("fits") or r.get("ii_measured"):
            eb, ep = r.get("rtl_estimate_budget") or {}, r.get("rtl_estimate_plan") or {}
            lc = (f"{r['logic_cells_placed']} ({eb.get('cells', '-')} / {ep.get('cells', '-')})"
                  if r.get("logic_cells_placed") else "-")
            fmax = r["fmax_mhz"] if r.get("fmax_mhz") else "n/a (no xc7 P&R)"
            pe = (f"{ep['lut']} / {ep['ff']} / {ep['bram']} / {ep['dsp']}" if "lut" in ep
                  else "-")
            verdict = "yes" if r.get("fits") else f"unknown: {r.get('error', '')[:200]}"
            md.append(f"| {r['model']} | {r['target']} | {r['style']} | {verdict} | "
                      f"{r.get('params_nonzero', '-')} | {_n(r['lut'])} | "
                      f"{_n(r['ff'])} | {pe} | {lc} | {_n(r['bram'])} | {_n(r['dsp'])} | {fmax} | "
                      f"{r['ii_measured']} ({r['ii_cycles']}) | {r.get('latency_measured', '-')} "
                      f"| {r['fps_at_clock']} | {r['fps_at_fmax'] or '-'} | "
                      f"{r['bit_exact_images']}/{r['images']} | {100 * r['accuracy_rtl']:.2f} % |"
                      f" `{r['command']}` |")
        else:
            eb = r.get("rtl_estimate_budget") or {}
            est = (f"; RTL estimate (folded): {eb['lut']:,} LUT, {eb['ff']:,} FF, "
                   f"{eb['bram']} BRAM, {eb['dsp']} DSP" if "lut" in eb else "")
            verdict = "no" if r.get("fits") is False else "unknown"
            md.append(f"| {r['model']} | {r['target']} | {r['style']} | {verdict}: "
                      f"{r['error'][:300]}{est} | | | | | | | | | | | | | | | `{r['command']}` |")
    md += ["", "## By model and style", "",
           "The rows above as the issue's table: one line per target and style, one column per "
           "model. FPS at the target clock (iCE40: 12 MHz, pynq-z2: 100 MHz) and at the nextpnr "
           "Fmax (iCE40).", ""]
    order = ("dense", "weight90", "channel-pruned-up5k", "channel-pruned")
    models = sorted(dict.fromkeys(r["model"] for r in table),
                    key=lambda m: order.index(m) if m in order else len(order))
    md += ["| target | style | " + " | ".join(models) + " |",
           "|---|---|" + "---|" * len(models)]
    cells = {(r["model"], r["target"], r["style"]): r for r in table}
    for target in dict.fromkeys(r["target"] for r in table):
        for style in ("folded", "unrolled"):
            md.append(f"| {target} | {style} | " + " | ".join(
                _cell(cells.get((m, target, style)), (m, target, style), cells)
                for m in models)
                + " |")
    (RESULTS / "rtl_lenet5.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
