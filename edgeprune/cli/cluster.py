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


def run(args) -> int:
    from ..quant.runner import ClusterConfig, parse_bits_per_layer, run_cluster

    cfg = ClusterConfig(
        model=args.model, data=args.data, bits=args.bits,
        bits_per_layer=parse_bits_per_layer(args.bits_per_layer), init=args.init,
        per_channel=args.per_channel, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
        batch_size=args.batch_size, max_steps_per_epoch=args.max_steps_per_epoch, seed=args.seed,
        weights=args.weights, trust_pickle=args.trust_pickle)
    res = run_cluster(cfg, args.out)
    print(f"wrote {res.out_dir}/model.pt, model.pt2, codebooks.json, summary.json")
    return 0
