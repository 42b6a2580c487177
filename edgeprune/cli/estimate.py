"""`edgeprune estimate MODEL --target T [--what-if] [--json]`: what a model costs on a target.

Light at import time (argparse only). The run path imports torch (to build / load the model and
trace its graph) and the cost models, never tensorflow, brevitas or hls4ml, so the command starts
in well under two seconds (benchmarks/estimate_startup.py measures it).
"""
from __future__ import annotations

import json
import math

from .common import add_deployment_arguments, deployment_from_args, open_fraction


def register(sub) -> None:
    p = sub.add_parser(
        "estimate", help="per-layer cost of a model on an MCU or FPGA target",
        description="Per-layer and total cost of MODEL on target T: cycles, latency, flash and "
                    "RAM (MCU, TFLite-Micro int8) or folding, cycles, FPS, LUT, BRAM18 and DSP "
                    "(FPGA, FINN-style dataflow). --what-if adds, per compute layer, what "
                    "removing a fraction of its weights or of its channels would save.")
    p.add_argument("model", metavar="MODEL",
                   help="zoo name (lenet5, lenet300100, vgg_small, resnet8, dscnn, "
                        "mobilenetv1_025, fc_autoencoder), .pt2 program, or an edgeprune "
                        "output directory")
    p.add_argument("--target", "-t", required=True, metavar="T",
                   help="built-in target name (`edgeprune targets`) or a path to a .toml")
    p.add_argument("--weights", help="state_dict file for a zoo MODEL (loaded weights_only)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled module (executes code from the file)")
    p.add_argument("--what-if", action="store_true",
                   help="also show what removing --fraction of each layer's weights / channels saves")
    p.add_argument("--fraction", type=open_fraction, default=0.1,
                   help="fraction removed in the what-if (default 0.1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    add_deployment_arguments(p)
    p.set_defaults(func=run)


def _graph(args):
    """(layer graph of MODEL, the loaded model or None). A zoo name without weights uses the
    shipped graph (no torch import; weights do not change a graph, but --weights is still
    checked by loading them)."""
    if args.weights is None:
        from ..zoo_graphs import cached_graph
        g = cached_graph(args.model)
        if g is not None:
            return g, None
    from ..graph import extract
    from ..models.loading import load_model
    model = load_model(args.model, weights=args.weights, trust_pickle=args.trust_pickle)
    return extract(model), model


MAX_CLUSTER_LEVELS = 16   # at most this many distinct non-zero values per output channel: clustered


def _weight_structure(model, graph):
    """What edgeprune-c's kernels exploit in the loaded weights, per compute layer: the
    fraction of non-zero weights (scattered zeros: sparse kernels) and, for weights with at
    most MAX_CLUSTER_LEVELS distinct non-zero values per output channel, the index bits of a
    clustered encoding."""
    import torch
    mods = dict(model.named_modules())
    density, lut = {}, {}
    for n in graph.compute_nodes():
        w = getattr(mods.get(n.target), "weight", None)
        if not isinstance(w, torch.Tensor) or w.numel() == 0:
            continue
        w = w.detach().reshape(w.shape[0], -1)
        nz = float((w != 0).float().mean())
        if nz < 1.0:
            density[n.name] = nz
        levels = max(int(torch.unique(row[row != 0]).numel()) for row in w)
        if 1 < levels <= MAX_CLUSTER_LEVELS:
            lut[n.name] = max(1, math.ceil(math.log2(levels)))
    return density, lut


def _json_safe(obj):
    """Replace non-finite floats (JSON has no inf / nan) with None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def run(args) -> int:
    dep = deployment_from_args(args)           # bad target or setting: fail before the slow part
    target = dep.target
    graph, model = _graph(args)
    from .. import cost
    from ..support_matrix import export_notes
    structure = {}
    if dep.runtime == "edgeprune-c" and model is not None:
        density, lut = _weight_structure(model, graph)
        structure = {"weight_density": density or None, "lut": lut or None}
    report = cost.estimate(graph, dep, **structure)
    if structure.get("weight_density") or structure.get("lut"):
        report.notes.append(
            "weights as loaded: " + ", ".join(
                [f"{k} {100 * v:.1f} % non-zero" for k, v in (structure["weight_density"] or {}).items()]
                + [f"{k} clustered ({b}-bit)" for k, b in (structure["lut"] or {}).items()]))
    # Deployed parameter count (BN folded into the conv before it), for both kinds of target.
    report.totals["params"] = graph.compute_params
    blockers = export_notes(graph, dep.kind)
    report.totals["exportable"] = not blockers
    report.notes[:0] = blockers
    what = cost.what_if(graph, dep, args.fraction, **structure) if args.what_if else None
    if args.json:
        out = {"model": args.model, "target": target.name, "kind": target.kind,
               "deployment": dep.to_dict(),
               "layers": report.layers, "totals": report.totals, "notes": report.notes}
        if what is not None:
            out["what_if"] = {"fraction": args.fraction, "layers": what}
        print(json.dumps(_json_safe(out), indent=1, default=str))
        return 0
    _print_tables(args, dep, report, what)
    return 0


# --------------------------------------------------------------------------------------------
# Rich tables

def _kb(n) -> str:
    return "" if n in (None, 0) else f"{n / 1024:,.1f}"


def _num(n, digits=0) -> str:
    if n is None:
        return ""
    if isinstance(n, float) and not math.isfinite(n):
        return "inf"
    return f"{n:,.{digits}f}" if isinstance(n, float) else f"{n:,}"


def _print_tables(args, dep, report, what) -> None:
    target = dep.target
    from rich.console import Console
    from rich.table import Table
    console = Console()
    console.width = max(console.width, 140)   # piped output: keep the tables readable
    t = report.totals
    if target.kind == "mcu":
        title = (f"{args.model} on {target.name} ({target.core} @ {target.clock_mhz} MHz, "
                 f"{dep.runtime})")
        table = Table(title=title)
        table.add_column("layer", no_wrap=True)
        for col in ("op", "TFLite op", "out shape", "params", "MACs", "MAC/w",
                    "cycles", "ms", "flash KB", "RAM KB"):
            table.add_column(col, justify="left" if col in ("layer", "op", "TFLite op", "out shape") else "right")
        for r in report.layers:
            table.add_row(r["name"], r["op"], r["tflite_op"], "x".join(map(str, r["out_shape"])),
                          _num(r["params"] or None), _num(r["macs"] or None),
                          _num(r["intensity"], 1) if r["intensity"] else "",
                          _num(r["cycles"] or None), f"{r['latency_ms']:.3f}" if r["cycles"] else "",
                          _kb(r["flash_bytes"]), _kb(r["ram_bytes"]))
        table.add_section()
        table.add_row("total", "", "", "", _num(t["params"]), _num(t["macs"]), "",
                      _num(t["cycles"]), f"{t['latency_ms']:.3f}",
                      f"{_kb(t['flash_bytes'])} / {target.flash_kb}",
                      f"{_kb(t['ram_bytes'])} / {target.ram_kb}")
        console.print(table)
        console.print(f"latency {t['latency_ms']:.2f} ms ({1000 / t['latency_ms']:.1f} inf/s) | "
                      f"flash {t['flash_bytes']:,} B ({'fits' if t['fits_flash'] else 'DOES NOT FIT'}) | "
                      f"RAM arena {t['ram_bytes']:,} B ({'fits' if t['fits_ram'] else 'DOES NOT FIT'})")
    else:
        title = (f"{args.model} on {target.name} ({t.get('part', target.part)} @ "
                 f"{target.clock_mhz:g} MHz, W{dep.wbits}A{dep.abits})")
        table = Table(title=title)
        table.add_column("layer", no_wrap=True)
        for col in ("op", "shape", "PE", "SIMD", "cycles", "LUT", "BRAM18", "DSP"):
            table.add_column(col, justify="left" if col in ("layer", "op", "shape") else "right")
        for r in report.layers:
            table.add_row(r["name"] + (" *" if r.get("bottleneck") else ""), str(r.get("op", "")),
                          str(r.get("shape", "")), _num(r.get("PE")), _num(r.get("SIMD")),
                          _num(r.get("cycles")), _num(r.get("lut")), _num(r.get("bram18")),
                          _num(r.get("dsp")))
        table.add_section()
        table.add_row("total", "", "", "", "", _num(t.get("cycles")), _num(t.get("lut")),
                      _num(t.get("bram18")), _num(t.get("dsp")))
        console.print(table)
        console.print(f"params {t['params']:,} | MACs {t['macs']:,} | "
                      f"{_num(t.get('fps'), 1)} FPS | latency {_num(t.get('latency_ms'), 3)} ms "
                      f"(* = bottleneck layer)")
    for n in report.notes:
        console.print(f"[dim]note: {n}[/dim]")
    if what is None:
        return
    metrics: list = []
    for r in what:
        for m, v in (r.get("channels") or {}).items():
            if m not in metrics and isinstance(v, (int, float)):
                metrics.append(m)
    wt = Table(title=f"what-if: remove {args.fraction:.0%} of a layer's weights (scattered) or of "
                     f"its channels (whole channel group); savings, positive = cheaper")
    wt.add_column("layer", no_wrap=True)
    wt.add_column("weights", justify="right")
    wt.add_column("saves", overflow="fold")
    wt.add_column("channels", justify="right")
    for m in metrics:
        wt.add_column(m, justify="right")
    wt.add_column("note", overflow="fold")

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float) and abs(v) < 100:
            return f"{v:,.3f}"
        return _num(round(v)) if isinstance(v, float) else _num(v)

    for r in what:
        w, c = r.get("weights") or {}, r.get("channels") or {}
        nonzero = {m: v for m, v in w.items() if isinstance(v, (int, float)) and v}
        saves = ", ".join(f"{m} {fmt(v)}" for m, v in nonzero.items()) or "nothing"
        chans = (f"{r['channels_removed']}/{r.get('group_size')}" if r.get("prunable") else "-")
        wt.add_row(r["name"], _num(r["weights_removed"]), saves, chans,
                   *[fmt(c.get(m)) if r.get("prunable") else "-" for m in metrics],
                   r.get("note", ""))
    console.print(wt)
