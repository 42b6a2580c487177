"""`edgeprune cluster`: k-means weight sharing, centroid fine-tuning and bit accounting."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "cluster", help="cluster-quantize conv/linear weights (weight sharing) and fine-tune centroids",
        description="k-means weight sharing with 2^b shared values per layer (or per output "
                    "channel), pruned weights kept at exactly zero, centroid fine-tuning, and "
                    "Deep-Compression bit accounting. Writes OUT/model.pt, OUT/model.pt2, "
                    "OUT/codebooks.json and OUT/summary.json.")
    p.add_argument("model", metavar="MODEL",
                   help="zoo name, .pt2 program, or an edgeprune output directory (e.g. from prune)")
    p.add_argument("--weights", help="state_dict file for a zoo MODEL")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled module (executes code from the file)")
    p.add_argument("--data", required=True, help="fashion-mnist | mnist-10k | PATH")
    p.add_argument("--bits", type=int, default=4, help="index bits b per layer: 2^b codes (default 4)")
    p.add_argument("--bits-per-layer", default="", metavar="L=B,...",
                   help="override bits for named layers, e.g. conv1=5,fc1=3")
    p.add_argument("--init", default="linear", choices=("linear", "density", "kmeans++"),
                   help="centroid initialisation (default linear, best in Deep Compression)")
    p.add_argument("--per-channel", action="store_true", help="one codebook per output channel")
    p.add_argument("--epochs", type=int, default=2, help="centroid fine-tuning epochs (0: none)")
    p.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (default 1e-4)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.set_defaults(func=run)


def parse_bits_per_layer(text: str) -> dict:
    """'conv1=5,fc1=3' -> {'conv1': 5, 'fc1': 3}; a malformed entry raises ClusterError."""
    from ..cluster import ClusterError
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


def run(args) -> int:
    import json
    import math
    import os
    from pathlib import Path

    import torch

    from .. import cluster as cl
    from ..data import load_dataset
    from ..models.loading import load_model, save_pt2
    from ..train import Trainer, TrainConfig, dataset_tensors, evaluate, seed_everything

    if args.epochs < 0:
        raise cl.ClusterError(f"--epochs must be >= 0, got {args.epochs}")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    seed_everything(args.seed)
    model = load_model(args.model, weights=args.weights, trust_pickle=args.trust_pickle)
    layers = cl.weight_layers(model)
    overrides = parse_bits_per_layer(args.bits_per_layer)
    bits = cl.resolve_bits(model, {**{n: args.bits for n in layers}, **overrides})
    ds = load_dataset(args.data)
    shape = getattr(model, "input_shape", None)
    if shape is not None and math.prod(ds.image_shape) != math.prod(shape):
        raise cl.ClusterError(f"data '{args.data}' has samples of shape {ds.image_shape}, the "
                              f"model expects {tuple(shape)}")
    _, _, x_test, y_test = dataset_tensors(ds, shape)

    # A prune output may hold a shrunk model (channels removed); compression is measured
    # against the unpruned zoo architecture it came from.
    source_summary = {}
    src = Path(args.model)
    if src.is_dir() and (src / "summary.json").is_file():
        try:
            source_summary = json.loads((src / "summary.json").read_text())
        except json.JSONDecodeError:
            source_summary = {}
    from ..models import ZOO, build
    zoo_name = args.model if args.model in ZOO else source_summary.get("model")
    reference = (build(zoo_name, **source_summary.get("model_kwargs", {}))
                 if zoo_name in ZOO else None)
    acc_before = evaluate(model, x_test, y_test)
    bits_before = cl.bit_accounting(model, dense_reference=reference)
    state = cl.cluster_model(model, bits, init=args.init, per_channel=args.per_channel,
                             seed=args.seed)
    cl.apply(state, model)
    acc_clustered = evaluate(model, x_test, y_test)
    print(f"accuracy: {100 * acc_before:.2f}% before clustering, "
          f"{100 * acc_clustered:.2f}% after clustering", flush=True)
    hook = cl.ClusterFinetuneHook(state)
    if args.epochs:
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                          seed=args.seed, optimizer=args.optimizer,
                          max_steps_per_epoch=args.max_steps_per_epoch)
        Trainer(model, ds, cfg, hooks=[hook]).fit()
    acc_finetuned = evaluate(model, x_test, y_test)
    report = cl.bit_accounting(model, cluster_state=state, dense_reference=reference)
    t = report["totals"]
    print(f"accuracy after fine-tuning: {100 * acc_finetuned:.2f}%; "
          f"{t['compressed_bits']} bits vs {t['dense_bits']} dense float32: "
          f"{t['compression']:.1f}x", flush=True)

    summary = {
        "source": args.model, "data": args.data, "bits": args.bits, "bits_per_layer": bits,
        "init": args.init, "per_channel": args.per_channel, "epochs": args.epochs, "lr": args.lr,
        "optimizer": args.optimizer, "seed": args.seed,
        "acc_dense": source_summary.get("acc_dense"),
        "acc_before": acc_before, "acc_clustered": acc_clustered, "acc_finetuned": acc_finetuned,
        "bits_compression": t["compression"], "params_compression": t["params_compression"],
        "weights_only_bits_compression": t["weights_only_compression"],
        "dense_reference": (f"{zoo_name} (zoo, unpruned)" if reference is not None
                            else "the input model"),
        "max_untie": hook.max_untie,
        "bit_accounting_before": bits_before["totals"], "bit_accounting": report,
    }
    if zoo_name in ZOO and not isinstance(model, torch.fx.GraphModule):
        # lets load_model(OUT) rebuild the architecture from model.pt, like a prune output
        summary["model"] = zoo_name

    out = Path(args.out)
    from ..outdir import staged_output
    with staged_output(out) as tmp:
        torch.save(model.state_dict(), tmp / "model.pt")
        save_pt2(model, tmp / "model.pt2")
        (tmp / "codebooks.json").write_text(json.dumps(state.to_dict(), indent=1) + "\n")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}/model.pt, model.pt2, codebooks.json, summary.json")
    return 0
