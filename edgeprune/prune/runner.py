"""One pruning run end to end, for the CLI (`edgeprune prune`) and the Python API.

``run_prune(PruneConfig(...), out_dir)``:

1. loads the data and the model (zoo name, .pt2, output dir, or a zoo name with ``--weights``);
2. obtains ``acc_dense``: with ``weights`` it is the test accuracy of those dense weights (and
   pruning starts from them); otherwise a dense baseline is trained from the *same*
   initialisation with the same seed, epochs and optimiser, so acc_dense - acc_pruned is the
   price of pruning at equal training budget (``baseline=False`` skips it: acc_dense = null);
3. trains with the pruning method hooked into `edgeprune.train.Trainer` (checkpoint every epoch
   in ``OUT.partial/``; ``resume=True`` continues after a kill);
4. writes, into ``OUT.partial/`` and then renamed to ``OUT`` in one step:
   ``model.pt`` (plain state_dict, masks baked in), ``shrunk.pt2`` (masked channels and channels
   left dead by unstructured pruning removed; outputs checked equal to the masked model),
   ``log.json`` + ``log.png`` (decision log), ``summary.json``.

Summary figures: ``params_dense`` = all trainable parameters of the dense model (incl. BN);
``params_nonzero`` = non-zero conv/linear weights and biases + 2 per live BN channel;
``macs_dense`` = conv/linear MACs of the dense model; ``macs_effective`` = MACs that touch a
non-zero weight (nnz(W) x output positions per layer); ratios are dense / pruned. With a target,
``cost_dense`` / ``cost_pruned`` hold the cost model's figures for the dense graph and for the
shrunk model (scattered zeros cost the same as non-zeros on TFLM and FINN; only removed
channels save there).
"""
from __future__ import annotations

import copy
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from ..errors import EdgepruneError
from .masks import PruneError, parse_granularity


@dataclass
class PruneConfig:
    model: str
    data: str
    method: str = "statistical"
    granularity: str = "weight"
    orientation: str = "memory"
    criterion: Optional[str] = None         # None: the method's default
    sparsity: Optional[float] = None        # amount of the orientation's resource to remove
    target: Optional[str] = None            # target name or .toml; with the settings below it
    runtime: Optional[str] = None           # makes the run's Deployment (edgeprune.deploy)
    wbits: Optional[int] = None
    abits: Optional[int] = None
    fps: Optional[float] = None
    budgets: Sequence[str] = ()
    epochs: int = 10
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 128
    optimizer: str = "adam"
    lr_schedule: str = "constant"           # constant | cosine (edgeprune.train)
    weights: Optional[str] = None
    trust_pickle: bool = False
    resume: bool = False
    overwrite: bool = False
    baseline: bool = True
    max_steps_per_epoch: Optional[int] = None
    progress: bool = True
    max_acc_drop: float = 0.10
    prune_bias: Optional[bool] = None
    n_train: Optional[int] = None           # use the first n training samples (quick runs)
    n_test: Optional[int] = None
    calibration: int = 1000                 # --method reconstruct: calibration images (no labels)
    # --distill: learn from the dense model while pruning (edgeprune.train.distill_loss): the
    # dense baseline the run trains anyway, or the --weights model it starts from. Off by
    # default: measured in issue 14 (benchmarks/results/pruning_v2.md), it did not raise LeNet-5's
    # accuracy at 200x-300x on MNIST-10k (3 seeds) and cost LeNet-300-100 accuracy at 50x.
    distill: bool = False
    variant: Sequence[str] = ()             # benchmark levers (PruneSpec.variant), no CLI flag
    teacher_weights: Optional[str] = None   # state_dict of a trained dense model to distil from
                                            # (benchmarks pass the cached baseline of the seed)


@dataclass
class PruneResult:
    summary: Dict[str, Any]
    out_dir: Optional[Path]
    model: Any = field(default=None, repr=False)


DEFAULT_AMOUNT = 0.9


def parse_sparsity(text) -> float:
    """'0.95', '95%', or a compression ratio '300x' (= 1 - 1/300)."""
    s = str(text).strip().lower()
    try:
        if s.endswith("x"):
            r = float(s[:-1])
            if r < 1:
                raise ValueError
            return 1.0 - 1.0 / r
        if s.endswith("%"):
            v = float(s[:-1]) / 100.0
        else:
            v = float(s)
    except ValueError:
        raise PruneError(f"sparsity '{text}': expected a fraction (0.95), a percentage (95%) or a "
                         f"compression ratio (300x)") from None
    if not 0.0 <= v < 1.0:
        raise PruneError(f"sparsity '{text}' must be in [0, 1)")
    return v


def _zoo_kwargs(name: str, ds) -> Dict[str, Any]:
    from ..models import ZOO
    params = inspect.signature(ZOO[name]).parameters
    shape = ds.image_shape
    kw: Dict[str, Any] = {}
    if "num_classes" in params:
        kw["num_classes"] = ds.num_classes
    if "in_channels" in params and len(shape) == 3:
        kw["in_channels"] = shape[0]
    if "image_size" in params and len(shape) == 3 and shape[1] == shape[2]:
        kw["image_size"] = shape[1]
    return kw


def _load_model(cfg: PruneConfig, ds):
    from ..models import ZOO
    from ..models.loading import load_model
    kwargs = _zoo_kwargs(cfg.model, ds) if cfg.model in ZOO else {}
    model = load_model(cfg.model, weights=cfg.weights, trust_pickle=cfg.trust_pickle,
                       seed=cfg.seed, **kwargs)
    want = tuple(getattr(model, "input_shape", ()) or ())
    have = tuple(ds.image_shape)
    n_in = 1
    for d in want:
        n_in *= d
    n_have = 1
    for d in have:
        n_have *= d
    if want and want != have and n_in != n_have:
        raise PruneError(f"model '{cfg.model}' takes input {want}, dataset '{cfg.data}' has "
                         f"samples of shape {have}")
    return model, kwargs


def _partial_dir(out: Path) -> Path:
    return out.parent / (out.name + ".partial")


PARTIAL_MARKER = ".edgeprune-partial"
RUN_CONFIG = "run_config.json"
# Settings a resumed run must share with the run that wrote OUT.partial (the trainer checks the
# optimiser settings itself; lr may change after a divergence).
_RESUME_FLAGS = ("model", "data", "method", "granularity", "orientation", "criterion", "sparsity",
                 "target", "runtime", "wbits", "abits", "fps", "budgets", "weights", "baseline",
                 "prune_bias", "n_train", "n_test", "epochs", "max_acc_drop", "distill", "variant",
                 "teacher_weights")


def _check_resume_config(cfg: PruneConfig, work: Path) -> None:
    """Record this run's settings in OUT.partial, or on --resume check they match the record."""
    from ..artifacts import read_json, write_json
    mine = {k: (list(v) if isinstance(v, (list, tuple)) else v)
            for k, v in ((k, getattr(cfg, k)) for k in _RESUME_FLAGS)}
    f = work / RUN_CONFIG
    if cfg.resume and f.is_file():
        theirs = read_json(f, "run record")
        for k, v in mine.items():
            if k in theirs and theirs[k] != v:
                flag = "--" + k.replace("_", "-")
                raise PruneError(f"{work} was started with {flag} {theirs[k]!r}, this run has "
                                 f"{flag} {v!r}: --resume needs the same settings (or drop "
                                 f"--resume to start over)")
    write_json(f, mine)


def _prepare_work_dir(work: Path, resume: bool) -> None:
    """OUT.partial: checkpoints and outputs in progress. It is only reused or removed when
    edgeprune made it (it holds PARTIAL_MARKER); a user's directory of that name is refused."""
    if work.exists():
        if not (work / PARTIAL_MARKER).is_file():
            raise PruneError(f"{work}: exists and edgeprune did not create it (it keeps its "
                             f"checkpoints there); move it away or choose another -o")
        if not resume:
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / PARTIAL_MARKER).touch()


def _cost_figures(graph, deployment) -> Optional[Dict[str, float]]:
    if deployment is None:
        return None
    from .. import cost
    from ..cost.metrics import budget_value, figures
    from .budgets import rtl_cells
    rep = cost.estimate(graph, deployment)
    out = {"macs": budget_value(rep, "macs"), "params": budget_value(rep, "params"),
           **figures(rep, deployment.kind)}
    cells = rtl_cells(graph, deployment, rep)
    if cells is not None:       # iCE40: the budget's lut is the RTL logic-cell estimate
        out["lut_finn_style"], out["lut"] = out.get("lut"), float(cells)
    return out


def deployment_of(cfg: PruneConfig):
    """The run's Deployment (None without a target)."""
    if not cfg.target:
        for flag, v in (("--runtime", cfg.runtime), ("--wbits", cfg.wbits), ("--abits", cfg.abits),
                        ("--fps", cfg.fps)):
            if v is not None:
                raise PruneError(f"{flag} needs --target")
        return None
    from ..deploy import Deployment
    return Deployment.for_target(cfg.target, runtime=cfg.runtime, wbits=cfg.wbits,
                                 abits=cfg.abits, fps=cfg.fps)


def build_method(cfg: PruneConfig, model, graph, log=None, deployment=None):
    """The configured pruning hook on `model` (its layer graph `graph`)."""
    from .methods import DEFAULT_CRITERION, METHODS, PruneSpec
    from .budgets import parse_budgets
    from .orientation import ORIENTATIONS
    if cfg.method not in METHODS:
        raise PruneError(f"unknown method '{cfg.method}'; known: {', '.join(METHODS)}")
    if cfg.orientation not in ORIENTATIONS:
        raise PruneError(f"unknown orientation '{cfg.orientation}'; known: {', '.join(ORIENTATIONS)}")
    gran = parse_granularity(cfg.granularity)
    budgets = parse_budgets(cfg.budgets, deployment)
    amount = cfg.sparsity
    if amount is None and not budgets and cfg.method != "activation_density":
        amount = DEFAULT_AMOUNT
    spec = PruneSpec(granularity=gran, criterion=(cfg.criterion or DEFAULT_CRITERION[cfg.method]),
                     orientation=cfg.orientation, amount=amount, budgets=budgets, deployment=deployment,
                     seed=cfg.seed, prune_bias=cfg.prune_bias, pretrained=bool(cfg.weights),
                     max_acc_drop=cfg.max_acc_drop, variant=tuple(cfg.variant))
    return METHODS[cfg.method](model, graph, spec, log)


def run_prune(cfg: PruneConfig, out_dir: Optional[os.PathLike] = None) -> PruneResult:
    from ..data import load_dataset
    from ..graph import extract
    from ..train import (CHECKPOINT_NAME, TrainConfig, TrainDivergedError, Trainer, evaluate,
                         is_main_process, mark_diverged, seed_everything)
    from .decision_log import DecisionLog
    from .masks import baked_state_dict, count_nonzero_params, dead_channels, effective_macs, plain_copy
    from .budgets import parse_budgets
    from ..artifacts import ModelDir, check_output, publish, save_pt2, save_torch, write_json
    from ..surgery import shrink_model

    # ---- validate everything cheap before any training
    parse_granularity(cfg.granularity)
    deployment = deployment_of(cfg)
    parse_budgets(cfg.budgets, deployment)
    if cfg.epochs < 1:
        raise PruneError(f"--epochs must be >= 1, got {cfg.epochs}")
    out = check_output(out_dir, cfg.overwrite) if out_dir is not None else None
    if out is not None:
        work = _partial_dir(out)
        _prepare_work_dir(work, cfg.resume)
        _check_resume_config(cfg, work)
    else:
        work = Path(tempfile.mkdtemp(prefix="edgeprune-"))
    main = is_main_process()

    try:
        ds = load_dataset(cfg.data)
        if cfg.n_train or cfg.n_test:
            ds = ds.subset(cfg.n_train, cfg.n_test)
        seed_everything(cfg.seed)
        model, model_kwargs = _load_model(cfg, ds)
        graph = extract(model)
        ds.check_fits(graph.input_shape, graph.n_outputs, f"model '{cfg.model}'")
        dense_graph = graph
        tc = dict(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed,
                  optimizer=cfg.optimizer, lr_schedule=cfg.lr_schedule,
                  max_steps_per_epoch=cfg.max_steps_per_epoch,
                  progress=cfg.progress, resume=cfg.resume)

        # ---- every check that needs no training, before the (long) dense baseline:
        # method/criterion/granularity compatibility and budgets out of reach
        probe = build_method(cfg, copy.deepcopy(model), graph, None, deployment)
        probe._feasibility()
        probe.criterion.close()
        del probe

        # ---- the dense reference
        acc_source = None
        teacher = None
        one_shot = bool(getattr(_method_cls(cfg), "retraining_free", False))
        if one_shot and not cfg.weights and cfg.model in _zoo_names():
            raise PruneError(f"--method {cfg.method} prunes a trained model without training: pass "
                             f"--weights W (its state_dict) or a trained .pt2 / output directory")
        if cfg.weights or one_shot:
            _, _, xte, yte = _tensors(ds, model)
            acc_dense = evaluate(model, xte, yte)
            acc_source = f"weights {cfg.weights}" if cfg.weights else f"the trained model {cfg.model}"
            if cfg.distill and not one_shot:
                teacher = copy.deepcopy(model)
        elif cfg.baseline:
            dense = copy.deepcopy(model)
            if cfg.progress and main:
                print("training the dense baseline (same init, seed and epochs)", flush=True)
            res = Trainer(dense, ds, TrainConfig(**tc, checkpoint_dir=str(work / "ckpt-dense"))).fit()
            acc_dense = res.test_accuracy
            acc_source = "dense baseline trained with the same seed, epochs and optimiser"
            if cfg.distill:
                teacher = dense
            del dense
        else:
            acc_dense = None
        if cfg.distill and not one_shot and cfg.teacher_weights:
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(torch.load(cfg.teacher_weights, map_location="cpu",
                                               weights_only=True))

        # ---- the pruning run
        log = DecisionLog({"model": cfg.model, "dataset": cfg.data, "method": cfg.method,
                           "granularity": cfg.granularity, "orientation": cfg.orientation,
                           "acc_dense": acc_dense})
        method = build_method(cfg, model, graph, log, deployment)
        if cfg.progress and main:
            print(f"pruning: {cfg.method} / {method.spec.granularity} / {method.spec.criterion} / "
                  f"{cfg.orientation}", flush=True)
        if one_shot:       # retraining-free: calibration images in, pruned model out
            from .methods.reconstruct import calibration_images
            xtr, _, xte, yte = _tensors(ds, model)
            method.prune_once(calibration_images(xtr, cfg.calibration, cfg.seed))
            final, x_check = model, xte[:256]
            acc_pruned = evaluate(final, xte, yte)
        else:
            trainer = Trainer(model, ds, TrainConfig(**tc, checkpoint_dir=str(work / "ckpt-prune")),
                              [method], teacher=teacher)
            teacher = None
            trainer.fit()
            final, x_check = trainer.model, trainer.x_test[:256]
            acc_pruned = trainer.evaluate()

        # ---- outputs
        plain = plain_copy(final)
        final_graph = extract(plain)
        keep = dead_channels(plain, final_graph)
        for gid, k in method.masks.channel_keep.items():
            if gid in keep:
                keep[gid] &= k
        shrunk = shrink_model(plain, final_graph, keep)
        _check_equal(plain, shrunk, x_check)
        shrunk_graph = extract(shrunk)
        params_dense = dense_graph.total_params
        macs_dense = sum(n.macs for n in dense_graph.compute_nodes())
        params_nz = count_nonzero_params(plain)
        macs_eff = effective_macs(plain, final_graph)
        summary = {
            "model": cfg.model, "model_kwargs": model_kwargs, "dataset": cfg.data,
            "method": cfg.method, "granularity": str(method.spec.granularity),
            "criterion": method.spec.criterion, "orientation": cfg.orientation,
            "amount": method.spec.amount, "amount_reached": round(float(method.amount), 6),
            "acc_dense": acc_dense, "acc_dense_source": acc_source, "acc_pruned": acc_pruned,
            "params_dense": params_dense, "params_nonzero": params_nz,
            "params_compression": params_dense / max(params_nz, 1),
            "macs_dense": macs_dense, "macs_effective": macs_eff,
            "macs_reduction": macs_dense / max(macs_eff, 1),
            "shrunk": {"params": shrunk_graph.total_params,
                       "macs": sum(n.macs for n in shrunk_graph.compute_nodes()),
                       "channels": {str(g.id): int(keep[g.id].sum()) if g.id in keep else g.size
                                    for g in final_graph.groups}},
            "seed": cfg.seed, "epochs": 0 if one_shot else cfg.epochs, "lr": cfg.lr,
            "distilled": trainer.teacher_logits is not None if not one_shot else False,
            "lr_schedule": cfg.lr_schedule,
            "calibration_images": min(cfg.calibration, len(ds.x_train)) if one_shot else None,
            "target": cfg.target,
            "deployment": deployment.to_dict() if deployment is not None else None,
            "budgets": [str(b) for b in method.spec.budgets], "budgets_met":
                (method.met if method.spec.budgets else None),
            "cost_dense": _cost_figures(dense_graph, deployment),
            "cost_pruned": _cost_figures(shrunk_graph, deployment),
            "layers": {n: round(s["sparsity"], 6) for n, s in method.masks.layer_stats().items()},
        }
        log.meta.update({"acc_pruned": acc_pruned})
        if out is None or not main:
            return PruneResult(summary, None, final)
        save_torch(baked_state_dict(final), work / ModelDir.STATE_DICT)
        save_pt2(shrunk, work / ModelDir.SHRUNK, final_graph.input_shape)
        log.save_json(work / "log.json")
        log.save_png(work / "log.png")
        write_json(work / ModelDir.SUMMARY, summary, indent=1)
        for ck in ("ckpt-dense", "ckpt-prune"):
            shutil.rmtree(work / ck, ignore_errors=True)
        (work / PARTIAL_MARKER).unlink()
        (work / RUN_CONFIG).unlink()
        publish(work, out, cfg.overwrite)
        return PruneResult(summary, out, final)
    except TrainDivergedError as e:
        # Keep OUT.partial when a checkpoint exists: both runs may resume from their last
        # checkpoints with a lower --lr (the dense baseline and the pruning run train alike).
        cks = [work / ck / CHECKPOINT_NAME for ck in ("ckpt-dense", "ckpt-prune")]
        if any(c.is_file() for c in cks):
            for c in cks:
                mark_diverged(c, {"error": str(e)})
        else:
            shutil.rmtree(work, ignore_errors=True)     # nothing to resume from
        raise
    except EdgepruneError:
        shutil.rmtree(work, ignore_errors=True)   # a user error: nothing to resume
        raise
    finally:
        if out is None:
            shutil.rmtree(work, ignore_errors=True)


def _method_cls(cfg: PruneConfig):
    from .methods import METHODS
    return METHODS.get(cfg.method)


def _zoo_names():
    from ..models import ZOO
    return ZOO


def _tensors(ds, model):
    from ..train import dataset_tensors
    return dataset_tensors(ds, getattr(model, "input_shape", None))


@torch.no_grad()
def _check_equal(masked, shrunk, x) -> None:
    """The shrunk export must compute what the masked model computes."""
    masked.eval()
    shrunk.eval()
    a, b = masked(x), shrunk(x)
    tol = 1e-4 * max(float(a.abs().max()), 1.0)
    if not torch.allclose(a, b, atol=tol, rtol=1e-4):
        raise PruneError(f"internal: shrunk model differs from the masked model by "
                         f"{float((a - b).abs().max()):.3g}")


__all__ = ["PruneConfig", "PruneResult", "run_prune", "build_method", "parse_sparsity"]
