"""The run's report: OUT/report.html (one self-contained file: inline CSS, figures as base64 PNG,
no script and no network resource), the same figures in OUT/figures/*.png, and the data in
OUT/report.json.

Sections: accuracy by model stage (every figure measured on the same test split, with its image
count); cost per target before (dense) and after (shrunk) pruning, per layer; where the cost goes
(stacked per-layer cycles and flash, per-layer arena RAM; LUT/BRAM18/DSP per layer on FPGAs);
accuracy and cost over the pruning run; each artefact's verification; estimate vs measured; the
Pareto front (sweep reports, see flow.sweep).
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..artifacts import write_bytes, write_json

# MCU metrics per layer: (row key, label, scale to the unit shown)
MCU_LAYER_METRICS = (("cycles", "cycles (M)", 1e-6), ("flash_bytes", "flash (KiB)", 1 / 1024),
                     ("ram_bytes", "arena while the layer runs (KiB)", 1 / 1024))
FPGA_LAYER_METRICS = (("lut", "LUT", 1.0), ("bram18", "BRAM18", 1.0), ("dsp", "DSP", 1.0),
                      ("cycles", "cycles per frame", 1.0))


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def layer_rows(cost: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per-layer rows of a cost report, FPGA hardware layers summed per graph layer."""
    if cost["kind"] == "mcu":
        return [dict(r) for r in cost["layers"]]
    rows: Dict[str, Dict[str, Any]] = {}
    for r in cost["layers"]:
        key = r.get("node") or r["name"]
        row = rows.setdefault(key, {"name": key, "op": [], "lut": 0, "bram18": 0, "dsp": 0,
                                    "cycles": 0})
        row["op"].append(r["op"])
        for k in ("lut", "bram18", "dsp"):
            row[k] += r.get(k) or 0
        row["cycles"] = max(row["cycles"], r.get("cycles") or 0)    # hardware layers overlap
    for row in rows.values():
        row["op"] = " + ".join(row["op"])
    return list(rows.values())


def _metrics(kind: str):
    return MCU_LAYER_METRICS if kind == "mcu" else FPGA_LAYER_METRICS


# --------------------------------------------------------------------------------------------
# Figures

def fig_layer_costs(target: str, kind: str, before: List[Dict], after: Optional[List[Dict]]) -> bytes:
    """Where the cost goes: per metric, one stacked bar per model (dense, shrunk), a segment per
    layer; the MCU arena is not additive (it is the peak), so RAM is drawn per layer."""
    plt = _plt()
    metrics = _metrics(kind)[:3]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.6))
    models = [("dense", before)] + ([("pruned", after)] if after is not None else [])
    names = [r["name"] for r in before] + [r["name"] for r in (after or [])
                                           if r["name"] not in {b["name"] for b in before}]
    cmap = plt.get_cmap("tab20")
    colours = {n: cmap(i % 20) for i, n in enumerate(names)}
    for ax, (key, label, scale) in zip(axes, metrics):
        if kind == "mcu" and key == "ram_bytes":
            width = 0.8 / len(models)
            for j, (mname, rows) in enumerate(models):
                vals = {r["name"]: (r.get(key) or 0) * scale for r in rows}
                xs = [i + j * width for i in range(len(names))]
                ax.bar(xs, [vals.get(n, 0) for n in names], width, label=mname,
                       color="#888" if j == 0 else "#2a7")
            ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(names))])
            ax.set_xticklabels(names, rotation=60, fontsize=7)
            ax.legend(fontsize=7)
        else:
            for j, (mname, rows) in enumerate(models):
                bottom = 0.0
                for r in rows:
                    v = (r.get(key) or 0) * scale
                    ax.bar(j, v, 0.6, bottom=bottom, color=colours[r["name"]],
                           label=r["name"] if j == 0 or r["name"] not in {b["name"] for b in before}
                           else None, edgecolor="white", linewidth=0.5)
                    bottom += v
            ax.set_xticks(range(len(models)))
            ax.set_xticklabels([m for m, _ in models])
        ax.set_title(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=7, title="layer", title_fontsize=7)
    fig.suptitle(f"{target}: cost per layer, dense vs pruned (cost model)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.86, 0.95))
    return _png(fig)


def fig_pruning_run(log: Dict[str, Any], budget_metrics: Sequence[str]) -> bytes:
    """Test accuracy per epoch and the cost model's figures per pruning decision."""
    plt = _plt()
    entries = log.get("entries", [])
    dec = [e for e in entries if e["kind"] == "decision"]
    ep = [e for e in entries if e["kind"] == "epoch"]
    dense = log.get("dense") or {}
    fig, (ax_acc, ax_cost) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True)
    if ep:
        ax_acc.plot([e["step"] for e in ep], [100 * (e["test_acc"] or 0) for e in ep], "o-",
                    label="pruned model, end of epoch")
    acc_dense = (log.get("meta") or {}).get("acc_dense")
    if acc_dense is not None:
        ax_acc.axhline(100 * acc_dense, color="grey", ls="--", label="dense")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(fontsize=8, loc="lower left")
    metrics = [m for m in ("latency_ms", "flash_kb", "ram_kb", "lut", "bram18", "dsp", "macs",
                           "params") if dense.get(m)]
    xs = [e["step"] for e in dec]
    for m in metrics:
        pts = [(x, e["after"][m] / dense[m]) for x, e in zip(xs, dec) if e["after"].get(m) is not None]
        if pts:
            ax_cost.plot([0] + [p[0] for p in pts], [1.0] + [p[1] for p in pts],
                         drawstyle="steps-post", label=m + (" (budget)" if m in budget_metrics else ""),
                         lw=2.2 if m in budget_metrics else 1.2)
    ax_cost.set_ylabel("cost / dense (cost model)")
    ax_cost.set_xlabel("training step")
    ax_cost.grid(True, alpha=0.3)
    if metrics:
        ax_cost.legend(fontsize=7, loc="upper right")
    fig.suptitle("accuracy and cost over the pruning run", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def fig_accuracy(rows: List[Dict[str, Any]]) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
    labels = [f"{r['model_stage']} ({r['images']} img)" for r in rows]
    vals = [100 * r["accuracy"] for r in rows]
    ax.barh(range(len(rows)), vals, color="#37a")
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.2f} %", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    lo = max(0.0, min(vals) - 10) if vals else 0.0
    ax.set_xlim(lo, 100)
    ax.set_xlabel("test accuracy (%)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def fig_estimate_vs_measured(rows: List[Dict[str, Any]]) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) + 1.2))
    labels = [f"{r['artefact']}: {r['quantity']}" for r in rows]
    ratio = [r["measured"] / r["estimate"] if r["estimate"] else float("nan") for r in rows]
    ax.barh(range(len(rows)), ratio, color="#a63")
    ax.axvline(1.0, color="k", lw=1)
    for i, (r, v) in enumerate(zip(rows, ratio)):
        ax.text(v, i, f" {r['measured']:,} / {r['estimate']:,} {r['unit']}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("measured / estimate")
    ax.set_xlim(0, max([1.3] + [v * 1.4 for v in ratio if v == v]))
    fig.tight_layout()
    return _png(fig)


def fig_pareto(points: List[Dict[str, Any]], axes_spec: List[Tuple[str, str]]) -> bytes:
    """Accuracy vs each cost (one panel per cost); the non-dominated points joined."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(4.2 * len(axes_spec), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], axes_spec):
        pts = [(p["costs"][key], 100 * p["accuracy"], p["label"]) for p in points
               if p.get("accuracy") is not None and p["costs"].get(key) is not None]
        if not pts:
            ax.set_visible(False)
            continue
        ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], color="#37a", zorder=3)
        for x, y, lab in pts:
            ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front([(x, y) for x, y, _ in pts])
        ax.plot([x for x, _ in front], [y for _, y in front], "-", color="#d62", lw=1.5,
                label="Pareto front", zorder=2)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("accuracy vs cost, one pruning run per budget", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """The points no other point beats on both (lower cost x, higher accuracy y), by cost."""
    front: List[Tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


# --------------------------------------------------------------------------------------------
# Data

def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def accuracy_rows(ctx) -> List[Dict[str, Any]]:
    """Every accuracy of the run, labelled by model stage, with the test images it used."""
    res, rows = ctx.results, []
    ds = ctx.dataset()
    full = int(len(ds.y_test))
    tr, pr, sh, qu = res.get("train"), res.get("prune"), res.get("shrink"), res.get("quantize")
    d = ctx.recipe.data
    if tr:
        label = (f"dense (trained, {_epochs(d['train']['epochs'])})" if tr.get("trained")
                 else "dense (given weights)")
        rows.append({"model_stage": label, "accuracy": tr["acc_dense"], "images": tr["test_images"],
                     "source": "train"})
    elif pr and pr.get("acc_dense") is not None:
        rows.append({"model_stage": "dense baseline (same seed and epochs)",
                     "accuracy": pr["acc_dense"], "images": full, "source": "prune"})
    if pr:
        more = f", {_epochs(d['prune']['epochs'])} more from the dense weights" if tr else ""
        rows.append({"model_stage": f"pruned (masked, float{more})", "accuracy": pr["acc_pruned"],
                     "images": full, "source": "prune"})
    if sh:
        rows.append({"model_stage": "shrunk (channels removed, float)", "accuracy": sh["acc_shrunk"],
                     "images": sh["test_images"], "source": "shrink"})
    if qu and qu.get("cluster"):
        c = qu["cluster"]
        rows.append({"model_stage": f"clustered {c['bits']}-bit, fine-tuned (float)",
                     "accuracy": c["acc_finetuned"], "images": full, "source": "quantize"})
    seen_qat = set()
    for e in ctx.recipe.exports:
        from .stages import export_dir
        rel = export_dir(e["kind"], e["target"])
        rep = _read(ctx.out / rel / "report.json") or {}
        quant = rep.get("quantization") or {}
        if quant.get("accuracy_quant") is not None and rel not in seen_qat:
            seen_qat.add(rel)
            rows.append({"model_stage": f"W{quant.get('wbits')}A{quant.get('abits')} QAT, Brevitas "
                                        f"({e['kind']} export)", "accuracy": quant["accuracy_quant"],
                         "images": full, "source": rel})
        ver = (res.get("verify") or {}).get("artefacts", {}).get(rel) or {}
        for run in ver.get("runs", []):
            if run.get("accuracy") is not None:
                rows.append({"model_stage": f"{run['model_stage']} ({e['kind']}, {Path(e['target']).stem})",
                             "accuracy": run["accuracy"], "images": run["images"],
                             "source": f"verify: {run['runtime']}"})
    return rows


def cost_tables(ctx) -> Dict[str, Dict[str, Any]]:
    """Per target: the dense (estimate stage) and shrunk (shrink stage) cost reports."""
    est = _read(ctx.out / "estimate" / "estimate.json") or {"targets": {}}
    shr = _read(ctx.out / "shrink" / "estimate.json") or {"targets": {}}
    out = {}
    for name, before in est["targets"].items():
        after = shr["targets"].get(name)
        out[name] = {"kind": before["kind"], "before": before, "after": after}
    return out


def estimate_vs_measured(ctx) -> List[Dict[str, Any]]:
    rows = []
    for rel, v in ((ctx.results.get("verify") or {}).get("artefacts") or {}).items():
        for r in v.get("estimate_vs_measured", []):
            rows.append({"artefact": rel.split("/", 1)[-1], **r})
    return rows


# --------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;font-size:13px}
th{background:#f0f0f0}td.l,th.l{text-align:left}
.pass{color:#fff;background:#2a7;padding:1px 6px;border-radius:3px}
.fail{color:#fff;background:#c33;padding:1px 6px;border-radius:3px}
.skip{color:#fff;background:#888;padding:1px 6px;border-radius:3px}
img{max-width:100%;border:1px solid #e4e4e4;background:#fff}
.muted{color:#666;font-size:12px}code{background:#eee;padding:0 3px}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return _esc(v)


def _badge(status: str) -> str:
    cls = {"pass": "pass", "done": "pass", "fail": "fail", "failed": "fail"}.get(status, "skip")
    return f'<span class="{cls}">{_esc(status)}</span>'


def _img(name: str, data: bytes, alt: str) -> str:
    return (f'<img alt="{_esc(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode()}"><div class="muted">figures/{_esc(name)}</div>')


def _table(head: List[str], rows: List[List[str]], left: int = 1, text_last: bool = False) -> str:
    """An HTML table; the first `left` columns (and the last, if `text_last`) are left-aligned
    text, the others right-aligned numbers."""
    def cls(i: int) -> str:
        return "l" if i < left or (text_last and i == len(head) - 1) else ""
    th = "".join(f'<th class="{cls(i)}">{h}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{cls(i)}">{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")


def write_report(ctx) -> Path:
    """Write OUT/report.html, OUT/report.json and OUT/figures/*.png; returns the HTML path."""
    out = ctx.out
    figs: Dict[str, bytes] = {}
    r = ctx.recipe
    res = ctx.results
    parts = [f"<h1>{_esc(r.name)}: {_esc(r.model['name'])} on {_esc(r.dataset)}</h1>",
             f'<div class="muted">edgeprune run {_esc(r.source)}; targets: '
             f'{_esc(", ".join(t["name"] for t in r.targets))}</div>']

    # ---- stages
    state = _read(out / ".flow" / "state.json") or {"stages": {}}
    srows = []
    for name, rec in state["stages"].items():
        if name == "report" or name not in ctx.keys:    # stages this recipe no longer has
            continue
        result = res.get(name) or {}
        status = rec.get("status", "?")
        if name == "verify" and result.get("failed"):
            status = "fail"
        srows.append([_esc(name), _badge(status), _num(rec.get("seconds")),
                      _esc(result.get("headline", ""))])
    parts.append("<h2>Stages</h2>" + _table(["stage", "status", "seconds", "result"], srows,
                                            text_last=True))

    # ---- accuracy
    acc = accuracy_rows(ctx) if any(k in res for k in ("train", "prune", "verify")) else []
    if acc:
        figs["accuracy.png"] = fig_accuracy(acc)
        parts.append("<h2>Accuracy by model stage</h2>"
                     f'<p class="muted">Test split of {_esc(ctx.dataset().name)} '
                     f"({len(ctx.dataset().y_test):,} images); rows that ran on fewer say so.</p>"
                     + _table(["model stage", "test accuracy", "images", "measured by"],
                              [[_esc(a["model_stage"]), f"{100 * a['accuracy']:.2f} %",
                                _num(a["images"]), _esc(a["source"])] for a in acc], text_last=True)
                     + _img("accuracy.png", figs["accuracy.png"], "accuracy by model stage"))

    # ---- costs per target
    tables = cost_tables(ctx)
    parts.append("<h2>Cost per target</h2><p class=\"muted\">edgeprune's cost models "
                 "(<code>edgeprune estimate</code>): dense = the model before pruning, pruned = the "
                 "shrunk model (channels removed).</p>")
    for name, t in tables.items():
        kind = t["kind"]
        before = layer_rows(t["before"])
        after = layer_rows(t["after"]) if t["after"] else None
        totals_keys = (("latency_ms", "latency (ms)"), ("cycles", "cycles"),
                       ("flash_bytes", "flash (B)"), ("ram_bytes", "RAM (B)")) if kind == "mcu" else \
            (("fps", "frames/s"), ("latency_ms", "latency (ms)"), ("lut", "LUT"),
             ("bram18", "BRAM18"), ("dsp", "DSP"))
        models = ("dense", "pruned") if after is not None else ("dense",)
        trows = []
        for key, label in totals_keys:
            b = t["before"]["totals"].get(key)
            if after is None:
                trows.append([_esc(label), _num(b, 2)])
                continue
            a = t["after"]["totals"].get(key)
            ratio = (f"{b / a:.2f}x" if isinstance(a, (int, float)) and a and b else "-")
            trows.append([_esc(label), _num(b, 2), _num(a, 2), ratio])
        parts.append(f"<h3>{_esc(name)} ({kind.upper()})</h3>"
                     + _table(["total", *models] + (["dense / pruned"] if after is not None else []),
                              trows))
        metrics = _metrics(kind)
        amap = {x["name"]: x for x in (after or [])}
        lrows = []
        for row in before:
            a = amap.get(row["name"])
            cells = [_esc(row["name"]), _esc(row.get("op", ""))]
            for key, _, _ in metrics:
                cells.append(_num(row.get(key), 0))
                if after is not None:
                    cells.append(_num(a.get(key) if a else None, 0))
            lrows.append(cells)
        head = ["layer", "op"] + [f"{lab.split(' (')[0]} {w}" for _, lab, _ in metrics
                                  for w in models]
        parts.append(_table(head, lrows, left=2))
        fname = f"cost-{Path(name).stem}.png"
        figs[fname] = fig_layer_costs(name, kind, before, after)
        parts.append(_img(fname, figs[fname], f"cost per layer on {name}"))

    # ---- pruning run
    log = _read(out / "prune" / "log.json")
    if log:
        budget_metrics = [b.split("=")[0].split("<")[0].strip() for b in
                          (res.get("prune") or {}).get("budgets") or []]
        figs["pruning-run.png"] = fig_pruning_run(log, budget_metrics)
        pr = res["prune"]
        parts.append("<h2>The pruning run</h2>"
                     f"<p>{_esc(pr.get('method'))} / {_esc(pr.get('granularity'))} / "
                     f"{_esc(pr.get('orientation'))}; budgets: {_esc(', '.join(pr.get('budgets') or []) or 'none')}"
                     f" (met: {_num(pr.get('budgets_met'))}); params {_num(pr.get('params_compression'), 1)}x "
                     f"fewer, MACs {_num(pr.get('macs_reduction'), 1)}x fewer.</p>"
                     + _img("pruning-run.png", figs["pruning-run.png"], "accuracy and cost over the pruning run"))

    # ---- verification
    ver = (res.get("verify") or {}).get("artefacts") or {}
    if ver:
        parts.append("<h2>Verification: the artefacts executed</h2>")
        for rel, v in ver.items():
            runs = "".join(f"<li>{_esc(x['runtime'])}: {100 * x['accuracy']:.2f} % on "
                           f"{x['images']:,} images</li>" for x in v.get("runs", [])
                           if x.get("accuracy") is not None)
            checks = _table(["check", "result", "detail"],
                            [[_esc(c["what"]), _badge("pass" if c["ok"] else "fail"),
                              _esc(c["detail"])] for c in v.get("checks", [])],
                            text_last=True) if v.get("checks") else ""
            parts.append(f"<h3>{_esc(rel)} {_badge(v['status'])}</h3>"
                         + (f"<p>{_esc(v['detail'])}</p>" if v.get("detail") else "")
                         + (f"<ul>{runs}</ul>" if runs else "") + checks)

    # ---- estimate vs measured
    evm = estimate_vs_measured(ctx)
    measured = [x for x in evm if x.get("measured") is not None and x.get("estimate")]
    if evm:
        parts.append("<h2>Estimate vs measured</h2>" + _table(
            ["artefact", "quantity", "estimate", "measured", "measured / estimate", "measured by"],
            [[_esc(x["artefact"]), _esc(x["quantity"]), f"{_num(x['estimate'])} {_esc(x['unit'])}",
              f"{_num(x['measured'])} {_esc(x['unit'])}" if x["measured"] is not None else "not measured here",
              f"{x['measured'] / x['estimate']:.4f}" if x["measured"] is not None and x["estimate"] else "-",
              _esc(x["source"])] for x in evm], left=2, text_last=True))
        if measured:
            figs["estimate-vs-measured.png"] = fig_estimate_vs_measured(measured)
            parts.append(_img("estimate-vs-measured.png", figs["estimate-vs-measured.png"],
                              "estimate vs measured"))

    # ---- Pareto
    if "prune" in res:
            parts.append("<h2>Pareto front</h2><p>One run is one point; <code>edgeprune sweep "
                     f"{_esc(r.source)} --budget latency_ms=A,B,C</code> runs one per budget in "
                     "parallel and draws the front in its own report.</p>")

    parts.append('<p class="muted">Log of third-party output: run.log. Data: report.json. Recipe: '
                 "recipe.toml.</p>")
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    for name, data in figs.items():
        write_bytes(fig_dir / name, data)
    write_json(out / "report.json", {
        "recipe": r.data, "stages": state["stages"], "accuracy": acc, "costs": tables,
        "estimate_vs_measured": evm, "verification": ver, "figures": sorted(figs)})
    page = out / "report.html"
    write_bytes(page, html_page(f"edgeprune: {r.name}", "\n".join(parts)).encode())
    return page
