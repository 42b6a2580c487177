"""One cluster-quantization run end to end, for the CLI (`edgeprune cluster`) and the Python API.

``run_cluster(ClusterConfig(...), out_dir)``: loads the model (zoo name, .pt2, or an edgeprune
model directory such as a prune output) and the data, clusters every conv/linear weight with
k-means into 2^bits shared values (pruned weights stay exactly zero), fine-tunes the centroids,
counts bits Deep-Compression style, and writes OUT/model.pt, model.pt2, codebooks.json and
summary.json (a model directory, see edgeprune.artifacts.ModelDir).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .cluster import ClusterError


@dataclass
class ClusterConfig:
    model: str
    data: str
    bits: int = 4
    bits_per_layer: Mapping[str, int] = field(default_factory=dict)
    init: str = "linear"
    per_channel: bool = False
    epochs: int = 2
    lr: float = 1e-4
    optimizer: str = "adam"
    batch_size: int = 128
    max_steps_per_epoch: Optional[int] = None
    seed: int = 0
    weights: Optional[str] = None
    trust_pickle: bool = False
    progress: bool = True


@dataclass
class ClusterResult:
    summary: Dict[str, Any]
    out_dir: Optional[Path]
    model: Any = field(default=None, repr=False)


def parse_bits_per_layer(text: str) -> Dict[str, int]:
    """'conv1=5,fc1=3' -> {'conv1': 5, 'fc1': 3}; a malformed entry raises ClusterError."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ClusterError(f"--bits-per-layer entry '{item}' is not LAYER=BITS")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ClusterError(f"--bits-per-layer entry '{item}': bits '{value}' is not an integer") from None
    return out


def run_cluster(cfg: ClusterConfig, out_dir: Optional[os.PathLike] = None) -> ClusterResult:
    import torch

    from ..artifacts import ModelDir, save_pt2, save_torch, staged_output, write_json
    from ..data import load_dataset
    from ..models import ZOO, build
    from ..models.loading import load_model
    from ..train import Trainer, TrainConfig, dataset_tensors, evaluate, seed_everything
    from . import cluster as cl
    from .bits import bit_accounting

    if cfg.epochs < 0:
        raise ClusterError(f"--epochs must be >= 0, got {cfg.epochs}")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    seed_everything(cfg.seed)
    model = load_model(cfg.model, weights=cfg.weights, trust_pickle=cfg.trust_pickle)
    layers = cl.weight_layers(model)
    bits = cl.resolve_bits(model, {**{n: cfg.bits for n in layers}, **dict(cfg.bits_per_layer)})
    ds = load_dataset(cfg.data)
    shape = getattr(model, "input_shape", None)
    if shape is not None and math.prod(ds.image_shape) != math.prod(shape):
        raise ClusterError(f"data '{cfg.data}' has samples of shape {ds.image_shape}, the "
                           f"model expects {tuple(shape)}")
    _, _, x_test, y_test = dataset_tensors(ds, shape)

    # A prune output may hold a shrunk model (channels removed); compression is measured
    # against the unpruned zoo architecture it came from.
    source_summary = ModelDir(Path(cfg.model)).summary() if Path(cfg.model).is_dir() else {}
    zoo_name = cfg.model if cfg.model in ZOO else source_summary.get("model")
    reference = (build(zoo_name, **source_summary.get("model_kwargs", {}))
                 if zoo_name in ZOO else None)
    acc_before = evaluate(model, x_test, y_test)
    bits_before = bit_accounting(model, dense_reference=reference)
    state = cl.cluster_model(model, bits, init=cfg.init, per_channel=cfg.per_channel,
                             seed=cfg.seed)
    cl.apply(state, model)
    acc_clustered = evaluate(model, x_test, y_test)
    if cfg.progress:
        print(f"accuracy: {100 * acc_before:.2f}% before clustering, "
              f"{100 * acc_clustered:.2f}% after clustering", flush=True)
    hook = cl.ClusterFinetuneHook(state)
    if cfg.epochs:
        tc = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed,
                         optimizer=cfg.optimizer, max_steps_per_epoch=cfg.max_steps_per_epoch,
                         progress=cfg.progress)
        Trainer(model, ds, tc, hooks=[hook]).fit()
    acc_finetuned = evaluate(model, x_test, y_test)
    report = bit_accounting(model, cluster_state=state, dense_reference=reference)
    t = report["totals"]
    if cfg.progress:
        print(f"accuracy after fine-tuning: {100 * acc_finetuned:.2f}%; "
              f"{t['compressed_bits']} bits vs {t['dense_bits']} dense float32: "
              f"{t['compression']:.1f}x", flush=True)

    summary = {
        "source": cfg.model, "data": cfg.data, "bits": cfg.bits, "bits_per_layer": bits,
        "init": cfg.init, "per_channel": cfg.per_channel, "epochs": cfg.epochs, "lr": cfg.lr,
        "optimizer": cfg.optimizer, "seed": cfg.seed,
        "acc_dense": source_summary.get("acc_dense"),
        "acc_before": acc_before, "acc_clustered": acc_clustered, "acc_finetuned": acc_finetuned,
        "bits_compression": t["compression"], "params_compression": t["params_compression"],
        "weights_only_bits_compression": t["weights_only_compression"],
        "dense_reference": (f"{zoo_name} (zoo, unpruned)" if reference is not None
                            else "the input model"),
        "max_untie": hook.max_untie,
        "bit_accounting_before": bits_before["totals"], "bit_accounting": report,
    }
    if source_summary.get("deployment"):
        summary["deployment"] = source_summary["deployment"]   # what the source was pruned for
    if zoo_name in ZOO and not isinstance(model, torch.fx.GraphModule):
        # lets load_model(OUT) rebuild the architecture from model.pt, like a prune output
        summary["model"] = zoo_name
    if out_dir is None:
        return ClusterResult(summary, None, model)
    out = Path(out_dir)
    with staged_output(out) as tmp:
        save_torch(model.state_dict(), tmp / ModelDir.STATE_DICT)
        save_pt2(model, tmp / ModelDir.PROGRAM)
        write_json(tmp / "codebooks.json", state.to_dict(), indent=1)
        write_json(tmp / ModelDir.SUMMARY, summary, indent=2)
    return ClusterResult(summary, out, model)


__all__ = ["ClusterConfig", "ClusterResult", "run_cluster", "parse_bits_per_layer"]
