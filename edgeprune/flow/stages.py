"""The stages of a run, in order: estimate, train (or load), prune, shrink, quantize, export (one
per [[export]]), verify, report. `plan(recipe)` lists those the recipe asks for; each stage
function writes its directory under OUT through edgeprune.api / edgeprune.artifacts and returns
a small JSON result (kept in OUT/.flow/state.json, read by later stages and the report).

Every accuracy a stage reports is measured on the data set's full test split, and names the
model stage it belongs to (dense, pruned, shrunk, clustered, int8 TFLM, ...).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import first_line
from .recipe import EXPORT_KINDS, Recipe, RecipeError
from .runner import RunContext, StageSpec


def _deployment(recipe: Recipe, target_name: str):
    from ..deploy import Deployment
    t = recipe.target(target_name)
    return Deployment.for_target(t["name"], **{k: v for k, v in t.items() if k != "name"})


def _is_zoo(name: str) -> bool:
    from ..models import ZOO
    return name in ZOO


def _test_accuracy(ctx: RunContext, model) -> Dict[str, Any]:
    from ..train import dataset_tensors, evaluate
    ds = ctx.dataset()
    _, _, xte, yte = dataset_tensors(ds, getattr(model, "input_shape", None))
    return {"accuracy": evaluate(model, xte, yte), "images": int(len(yte)), "dataset": ds.name}


def export_dir(kind: str, target: str) -> str:
    return f"export/{kind}-{Path(target).stem}"


# --------------------------------------------------------------------------------------------
# estimate: the dense model's cost on every target

def stage_estimate(ctx: RunContext, spec: StageSpec, _cont: bool) -> Dict[str, Any]:
    from .. import api
    from ..artifacts import staged_output, write_json
    r = ctx.recipe
    model = r.model["name"]
    graph = api.layer_graph(model) if _is_zoo(model) or not r.model.get("weights") else \
        api.layer_graph(model, r.model.get("weights"))
    per_target = {}
    for t in r.targets:
        rep = api.estimate(graph, _deployment(r, t["name"]))
        per_target[t["name"]] = rep.to_dict()
    with staged_output(ctx.path("estimate"), overwrite=True) as tmp:
        write_json(tmp / "estimate.json", {"model": model, "graph": "dense", "targets": per_target})
    totals = {n: d["totals"] for n, d in per_target.items()}
    return {"totals": totals, "params": graph.compute_params,
            "macs": sum(n.macs for n in graph.compute_nodes()),
            "headline": "; ".join(_cost_headline(n, t) for n, t in totals.items())}


def _cost_headline(target: str, t: Dict[str, Any]) -> str:
    if "flash_bytes" in t:
        return (f"{Path(target).stem}: {t.get('latency_ms', 0):.1f} ms, flash "
                f"{t['flash_bytes'] / 1024:.1f} KiB, RAM {t.get('ram_bytes', 0) / 1024:.1f} KiB")
    return (f"{Path(target).stem}: {t.get('fps', 0):.0f} FPS, {t.get('lut', 0):.0f} LUT, "
            f"{t.get('bram18', 0):.0f} BRAM18, {t.get('dsp', 0):.0f} DSP")


# --------------------------------------------------------------------------------------------
# train: train the dense zoo model, or load and evaluate given weights

def stage_train(ctx: RunContext, spec: StageSpec, cont: bool) -> Dict[str, Any]:
    from ..api import load_model
    from ..artifacts import save_torch, staged_output, write_json
    from ..models.loading import load_model as zoo_load
    from ..prune.runner import _zoo_kwargs
    r = ctx.recipe
    m = r.model
    tr = r.section("train")
    if tr is None:      # given weights or a model file: loaded and evaluated, not trained
        if _is_zoo(m["name"]):      # the architecture sized for the data (classes, channels)
            model = zoo_load(m["name"], weights=m.get("weights"),
                             **_zoo_kwargs(m["name"], ctx.dataset()))
        else:
            model = load_model(m["name"], m.get("weights"), m.get("trust_pickle", False))
        acc = _test_accuracy(ctx, model)
        return {"trained": False, "model": m["name"], "weights": m.get("weights"),
                "acc_dense": acc["accuracy"], "test_images": acc["images"],
                "headline": f"loaded; dense accuracy {100 * acc['accuracy']:.2f} %"}
    from ..train import TrainConfig, Trainer, seed_everything
    ds = ctx.dataset()
    seed_everything(tr["seed"])
    kwargs = _zoo_kwargs(m["name"], ds)
    model = zoo_load(m["name"], seed=tr["seed"], **kwargs)
    partial = ctx.path("train.partial")
    if not cont:
        shutil.rmtree(partial, ignore_errors=True)
    tc = TrainConfig(epochs=tr["epochs"], lr=tr["lr"], batch_size=tr["batch_size"], seed=tr["seed"],
                     lr_schedule=tr["lr_schedule"], max_steps_per_epoch=tr.get("max_steps_per_epoch"),
                     checkpoint_dir=str(partial), resume=cont)
    res = Trainer(model, ds, tc).fit()
    acc = _test_accuracy(ctx, model)
    with staged_output(ctx.path("train"), overwrite=True) as tmp:
        save_torch({k: v.detach().clone() for k, v in model.state_dict().items()},
                   tmp / "model.pt")
        write_json(tmp / "summary.json", {"model": m["name"], "model_kwargs": kwargs,
                                          "acc_dense": acc["accuracy"], "history": res.history,
                                          "train": tr}, indent=1)
    shutil.rmtree(partial, ignore_errors=True)
    return {"trained": True, "model": m["name"], "weights": str(ctx.path("train/model.pt")),
            "acc_dense": acc["accuracy"], "test_images": acc["images"], "history": res.history,
            "headline": f"dense accuracy {100 * acc['accuracy']:.2f} %"}


def _trained_weights(ctx: RunContext) -> Optional[str]:
    t = ctx.results.get("train")
    return t.get("weights") if t else ctx.recipe.model.get("weights")


# --------------------------------------------------------------------------------------------
# prune (edgeprune.prune.runner.run_prune: checkpoints in OUT/prune.partial, resumable)

def stage_prune(ctx: RunContext, spec: StageSpec, cont: bool) -> Dict[str, Any]:
    from .. import api
    from ..prune.runner import parse_sparsity
    r = ctx.recipe
    p = r.section("prune")
    tgt = r.target(p["target"]) if p.get("target") else {}
    seed = (r.section("train") or {}).get("seed", 0)
    cfg = api.PruneConfig(
        model=r.model["name"], data=r.dataset, method=p["method"], granularity=p["granularity"],
        orientation=p["orientation"], criterion=p.get("criterion"),
        sparsity=parse_sparsity(p["sparsity"]) if "sparsity" in p else None,
        target=tgt.get("name"), runtime=tgt.get("runtime"), wbits=tgt.get("wbits"),
        abits=tgt.get("abits"), fps=tgt.get("fps"), budgets=list(p["budgets"]),
        epochs=p["epochs"], seed=seed, lr=p["lr"], lr_schedule=p["lr_schedule"],
        weights=_trained_weights(ctx), trust_pickle=r.model.get("trust_pickle", False),
        resume=cont, overwrite=True, max_steps_per_epoch=p.get("max_steps_per_epoch"),
        n_train=r.data["data"].get("n_train"))
    if not cont:
        partial = ctx.path("prune.partial")
        if (partial / ".edgeprune-partial").is_file():
            shutil.rmtree(partial)
    res = api.prune(cfg, ctx.path("prune"))
    s = res.summary
    keep = ("acc_dense", "acc_dense_source", "acc_pruned", "params_dense", "params_nonzero",
            "params_compression", "macs_dense", "macs_effective", "macs_reduction", "budgets",
            "budgets_met", "cost_dense", "cost_pruned", "target", "method", "granularity",
            "orientation", "amount_reached")
    out = {k: s.get(k) for k in keep}
    out["headline"] = (f"accuracy {100 * s['acc_pruned']:.2f} % (dense "
                       f"{100 * s['acc_dense']:.2f} %), params {s['params_compression']:.1f}x, "
                       f"MACs {s['macs_reduction']:.1f}x fewer"
                       if s.get("acc_dense") is not None else
                       f"accuracy {100 * s['acc_pruned']:.2f} %")
    return out


# --------------------------------------------------------------------------------------------
# shrink: the model with pruned channels cut out (prune writes shrunk.pt2 and checks it
# computes what the masked model does); this stage measures it: accuracy on the full test set,
# its layer graph and its per-layer cost on every target

def stage_shrink(ctx: RunContext, spec: StageSpec, _cont: bool) -> Dict[str, Any]:
    from .. import api
    from ..artifacts import staged_output, write_json
    from ..graph import extract
    r = ctx.recipe
    model = api.load_model(str(ctx.path("prune")))
    acc = _test_accuracy(ctx, model)
    graph = extract(model)
    per_target = {t["name"]: api.estimate(graph, _deployment(r, t["name"])).to_dict()
                  for t in r.targets}
    with staged_output(ctx.path("shrink"), overwrite=True) as tmp:
        write_json(tmp / "estimate.json", {"model": "prune/shrunk.pt2", "graph": "shrunk",
                                           "targets": per_target})
        write_json(tmp / "graph.json", graph.to_dict() if hasattr(graph, "to_dict") else {})
    totals = {n: d["totals"] for n, d in per_target.items()}
    first = r.targets[0]["name"]
    return {"acc_shrunk": acc["accuracy"], "test_images": acc["images"],
            "params": graph.compute_params, "macs": sum(n.macs for n in graph.compute_nodes()),
            "totals": totals,
            "headline": f"accuracy {100 * acc['accuracy']:.2f} %; " + _cost_headline(first, totals[first])}


# --------------------------------------------------------------------------------------------
# quantize: weight clustering when asked; records what the exports quantize themselves

def _float_model_dir(ctx: RunContext) -> str:
    """The float model the later stages start from: the prune output, else the trained model."""
    if "prune" in ctx.results:
        return str(ctx.path("prune"))
    if ctx.results.get("train", {}).get("trained"):
        return str(ctx.path("train"))
    return ctx.recipe.model["name"]


def stage_quantize(ctx: RunContext, spec: StageSpec, _cont: bool) -> Dict[str, Any]:
    from .. import api
    r = ctx.recipe
    q = r.section("quantize") or {}
    out: Dict[str, Any] = {"int8": "MCU exports: post-training int8 per channel (TFLite "
                                   "converter), calibrated on training images",
                           "fpga": {t["name"]: _deployment(r, t["name"]).to_dict()
                                    for t in r.targets if _deployment(r, t["name"]).kind == "fpga"},
                           "qat_epochs": q.get("qat_epochs")}
    if q.get("cluster_bits"):
        src = _float_model_dir(ctx)
        weights = None if Path(src).exists() else r.model.get("weights")
        seed = (r.section("train") or {}).get("seed", 0)
        res = api.cluster(api.ClusterConfig(src, r.dataset, bits=q["cluster_bits"],
                                            epochs=q["cluster_epochs"], seed=seed, weights=weights,
                                            max_steps_per_epoch=q.get("max_steps_per_epoch"),
                                            overwrite=True), ctx.path("quantize"))
        s = res.summary
        out["cluster"] = {k: s.get(k) for k in ("bits", "epochs", "acc_before", "acc_clustered",
                                                "acc_finetuned", "bits_compression",
                                                "weights_only_bits_compression")}
        out["headline"] = (f"{q['cluster_bits']}-bit clusters, accuracy "
                           f"{100 * s['acc_finetuned']:.2f} %, {s['bits_compression']:.1f}x fewer "
                           f"bits than float32")
    else:
        out["headline"] = "no clustering; int8 / W-A bits in the exports"
    return out


# --------------------------------------------------------------------------------------------
# export: one stage per [[export]]

def stage_export(ctx: RunContext, spec: StageSpec, _cont: bool) -> Dict[str, Any]:
    from .. import api
    r = ctx.recipe
    kind, target = spec.params["kind"], spec.params["target"]
    dep = _deployment(r, target)
    q = r.section("quantize") or {}
    mcu = EXPORT_KINDS[kind] == "mcu"
    src = str(ctx.path("quantize")) if mcu and "cluster" in ctx.results.get("quantize", {}) \
        else _float_model_dir(ctx)
    weights = None if Path(src).exists() else r.model.get("weights")
    model = api.load_model(src, weights, r.model.get("trust_pickle", False))
    out = ctx.path(spec.outputs[0])
    seed = (r.section("train") or {}).get("seed", 0)
    steps = q.get("max_steps_per_epoch")
    if kind == "tflm":
        rep = api.export_tflm(model, dep, out, r.dataset, overwrite=True, seed=seed)
        head = (f".tflite {rep['flash_bytes_actual']} B (estimate {rep['flash_bytes_estimate']}), "
                f"arena {rep['arena_bytes_measured']} B (estimate {rep['arena_bytes_estimate']})")
    elif kind == "c":
        rep = api.export_c(model, dep, out, r.dataset, overwrite=True, seed=seed)
        cross = rep.get("cross") or {}
        head = (f"flash {cross.get('flash_bytes')} B, RAM {cross.get('ram_bytes')} B "
                f"(arm-none-eabi-gcc)" if cross else "sources written (no Arm compiler)")
    elif kind == "finn":
        rep = api.export_finn(model, dep, out, data=r.dataset, epochs=q.get("qat_epochs", 1),
                              seed=seed, max_steps_per_epoch=steps, overwrite=True)
        t = rep["estimate"]["totals"]
        head = f"FINN-style estimate {t.get('fps', 0):.0f} FPS, {t.get('lut', 0):.0f} LUT"
    elif kind == "hls":
        images = r.data["verify"]["images"]
        rep = api.export_hls(model, dep, out, data=r.dataset, epochs=q.get("qat_epochs", 1),
                             seed=seed, max_steps_per_epoch=steps, csim_images=images,
                             overwrite=True)
        cs = rep["csim"]
        head = f"C-sim bit-exact on {cs['exact_images']}/{cs['images']} images"
    else:       # the recipe check refuses unknown kinds; a new exporter must be wired here
        raise RecipeError(f"export kind '{kind}' has no stage")
    return {"kind": kind, "target": target, "dir": spec.outputs[0], "source": src,
            "headline": head}


# --------------------------------------------------------------------------------------------
# verify: every export's artefact executed (flow.verify.VERIFIERS)

def stage_verify(ctx: RunContext, spec: StageSpec, _cont: bool) -> Dict[str, Any]:
    from ..artifacts import staged_output, write_json
    from ..logs import native_stderr_to_log
    from .verify import VERIFIERS, VerifyContext
    r = ctx.recipe
    vctx = VerifyContext(dataset=ctx.dataset(), images=r.data["verify"]["images"],
                         qonnx_images=r.data["verify"].get("qonnx_images", 0))
    results = {}
    with native_stderr_to_log():
        for e in r.exports:
            rel = export_dir(e["kind"], e["target"])
            verifier = VERIFIERS.get(e["kind"])
            if verifier is None:
                results[rel] = {"kind": e["kind"], "target": e["target"], "status": "not verified",
                                "detail": f"no verifier for '{e['kind']}' exports yet"}
                continue
            try:
                res = verifier(ctx.path(rel), vctx)
            except Exception as err:  # noqa: BLE001 - an artefact that does not run fails verification
                res = {"status": "fail", "detail": f"{type(err).__name__}: {first_line(err)}",
                       "checks": [], "runs": []}
            results[rel] = {"kind": e["kind"], "target": e["target"], **res}
    with staged_output(ctx.path("verify"), overwrite=True) as tmp:
        write_json(tmp / "verify.json", results)
    bad = [k for k, v in results.items() if v["status"] == "fail"]
    n_pass = sum(v["status"] == "pass" for v in results.values())
    return {"artefacts": results, "failed": bad,
            "headline": f"{n_pass}/{len(results)} artefacts pass" + (f"; FAILED: {', '.join(bad)}"
                                                                     if bad else "")}


# --------------------------------------------------------------------------------------------
# report

def stage_report(ctx: RunContext, spec: StageSpec, _cont: bool) -> Dict[str, Any]:
    from .report import write_report
    path = write_report(ctx)
    figures = sorted(p.name for p in (ctx.out / "figures").glob("*.png"))
    return {"html": str(path.relative_to(ctx.out)),
            "headline": f"report.html, report.json, {len(figures)} figures"}


# --------------------------------------------------------------------------------------------
# the plan

def plan(recipe: Recipe) -> List[StageSpec]:
    d = recipe.data
    files = [x for x in (recipe.model["name"], recipe.model.get("weights"), recipe.dataset) if x]
    common = {"model": d["model"], "data": d["data"]}
    specs = [StageSpec("estimate", "estimate (dense model)", stage_estimate,
                       {"model": d["model"], "targets": d["targets"]}, files=files[:2],
                       outputs=["estimate"])]
    has_train = "train" in d or "weights" in d["model"] or (
        "prune" not in d and not _is_zoo(recipe.model["name"]))
    if "train" in d and not _is_zoo(recipe.model["name"]):
        raise RecipeError(f"{recipe.source}: [train] trains zoo models; '{recipe.model['name']}' is "
                          f"loaded as it is: remove [train]")
    if "train" in d and "weights" in d["model"]:
        raise RecipeError(f"{recipe.source}: [model] weights and [train] both given: the weights "
                          f"are loaded, not trained; remove one")
    upstream: List[str] = []
    if has_train:
        specs.append(StageSpec("train", "train" if "train" in d else "load weights", stage_train,
                               {**common, "train": d.get("train")}, files=files,
                               outputs=["train"] if "train" in d else []))
        upstream = ["train"]
    if "prune" in d:
        specs.append(StageSpec("prune", "prune", stage_prune,
                               {**common, "prune": d["prune"], "targets": d["targets"],
                                "seed": d.get("train", {}).get("seed", 0)},
                               after=list(upstream), files=files, outputs=["prune"]))
        specs.append(StageSpec("shrink", "shrink (measure the cut model)", stage_shrink,
                               {"data": d["data"], "targets": d["targets"]}, after=["prune"],
                               files=files[2:], outputs=["shrink"]))
        upstream = ["prune"]
    if "quantize" in d:
        specs.append(StageSpec("quantize", "quantize", stage_quantize,
                               {**common, "quantize": d["quantize"], "targets": d["targets"]},
                               after=list(upstream), files=files,
                               outputs=["quantize"] if d["quantize"].get("cluster_bits") else []))
        upstream = upstream + ["quantize"]
    exports = []
    for e in recipe.exports:
        rel = export_dir(e["kind"], e["target"])
        name = f"export/{e['kind']}-{Path(e['target']).stem}"
        exports.append(name)
        q = dict(d.get("quantize") or {})
        after = list(upstream)
        if EXPORT_KINDS[e["kind"]] == "fpga":
            # FPGA exports start from the float (pruned) model and train their own W/A bits:
            # clustering settings are not theirs
            q = {k: q[k] for k in ("qat_epochs", "max_steps_per_epoch") if k in q}
            after = [a for a in after if a != "quantize"]
        specs.append(StageSpec(name, f"export {e['kind']} ({Path(e['target']).stem})", stage_export,
                               {**common, "export": e, "target": recipe.target(e["target"]),
                                "quantize": q,
                                # the HLS export C-simulates this many test images
                                "verify": {"images": d["verify"]["images"]}},
                               after=after, files=files, outputs=[rel],
                               params={"kind": e["kind"], "target": e["target"]}))
    if exports:
        specs.append(StageSpec("verify", "verify (run the artefacts)", stage_verify,
                               {"data": d["data"], "verify": d["verify"], "exports": d["export"]},
                               after=exports, files=files[2:], outputs=["verify"]))
    specs.append(StageSpec("report", "report", stage_report, {"recipe": d},
                           after=[s.name for s in specs], outputs=["report.html", "report.json"],
                           always=True))
    return specs
