#!/usr/bin/env python
"""LeNet-5 on Fashion-MNIST through the whole FPGA path (issue 5), on this machine.

1. train LeNet-5 (float) on Fashion-MNIST;
2. prune: L1-norm channel pruning of the three prunable channel groups, physically shrunk
   (edgeprune.surgery), then per-layer magnitude pruning of the remaining weights, fine-tuned
   with the zeros held; saved as a .pt2 program and re-loaded the way the CLI loads MODEL;
3. `edgeprune export finn` and `edgeprune export hls` (their Python entry points) at W4A4:
   Brevitas QAT, QONNX = Brevitas check, FINN project (folding, build.py, docker), hls4ml project
   with a g++ C-simulation compared bit for bit with the quantized model on the test set.

Writes one row into benchmarks/results/fpga.json (key: model, target, wbits, abits).

Example:
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/fpga_lenet5.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import command_line, upsert_rows  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="pynq-z2")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--float-epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--keep", default="10,20,100",
                   help="channels kept per prunable group, in graph order (conv1, conv2, fc1)")
    p.add_argument("--sparsity", type=float, default=0.5,
                   help="fraction of each remaining weight tensor zeroed by magnitude")
    p.add_argument("--fps", type=float, default=None, help="FPS target (default: max that fits)")
    p.add_argument("--verify-images", type=int, default=1000)
    p.add_argument("--csim-images", type=int, default=0, help="0 = the whole test set")
    p.add_argument("--out-dir", default="/tmp/edgeprune_fpga_lenet5",
                   help="where the FINN and HLS projects are written")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


class _HoldZeros:
    """Training hook: weights zero at the start stay zero (float fine-tuning after pruning)."""

    def __init__(self, model):
        self.masks = {m: (m.weight.detach() != 0) for m in model.modules()
                      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}

    def on_train_begin(self, t): ...
    def before_step(self, t): ...
    def on_epoch_end(self, t, m): ...
    def on_train_end(self, t): ...

    def after_backward(self, t):
        for m, k in self.masks.items():
            if m.weight.grad is not None:
                m.weight.grad.mul_(k)

    @torch.no_grad()
    def after_step(self, t):
        for m, k in self.masks.items():
            m.weight.mul_(k)


def prune_lenet5(model, keep_counts, sparsity):
    """L1 channel pruning (shrunk) + per-layer magnitude pruning of what remains."""
    from edgeprune.graph import extract
    from edgeprune.surgery import shrink_model

    g = extract(model)
    groups = g.prunable_groups()
    if len(groups) != len(keep_counts):
        raise SystemExit(f"--keep needs {len(groups)} counts (groups: "
                         f"{[grp.nodes('out') for grp in groups]})")
    mods = dict(model.named_modules())
    keep = {}
    for grp, k in zip(groups, keep_counts):
        prod = [m for m in grp.members if m.role == "out"][0]
        w = mods[g[prod.node].target].weight.detach()
        score = w.abs().flatten(1).sum(1)
        mask = torch.zeros(grp.size, dtype=torch.bool)
        mask[torch.topk(score, k).indices] = True
        keep[grp.id] = mask
    small = shrink_model(model, g, keep)
    with torch.no_grad():
        for m in small.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                n = int(m.weight.numel() * sparsity)
                if n:
                    t = m.weight.abs().flatten().kthvalue(n).values
                    m.weight[m.weight.abs() <= t] = 0
    return small


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    from edgeprune.data import load_dataset
    from edgeprune.export.finn import export_finn
    from edgeprune.export.hls import export_hls
    from edgeprune.models import build
    from edgeprune.models.loading import load_model
    from edgeprune.artifacts import save_pt2
    from edgeprune.deploy import Deployment
    from edgeprune.targets import load_target
    from edgeprune.train import TrainConfig, Trainer, dataset_tensors, evaluate, seed_everything

    t_start = time.time()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = load_target(args.target)
    ds = load_dataset("fashion-mnist")
    seed_everything(args.seed)
    model = build("lenet5")
    Trainer(model, ds, TrainConfig(epochs=args.float_epochs, seed=args.seed)).fit()
    _, _, xte, yte = dataset_tensors(ds, model.input_shape)
    acc_dense = evaluate(model, xte, yte)
    dense_params = sum(p.numel() for p in model.parameters())

    small = prune_lenet5(model, [int(v) for v in args.keep.split(",")], args.sparsity)
    small.input_shape = model.input_shape
    Trainer(small, ds, TrainConfig(epochs=args.finetune_epochs, seed=args.seed, lr=5e-4),
            hooks=[_HoldZeros(small)]).fit()
    acc_pruned = evaluate(small, xte, yte)
    pt2 = out / "lenet5_pruned.pt2"
    save_pt2(small, pt2, small.input_shape)
    pruned = load_model(str(pt2))          # what `edgeprune export ... MODEL` does
    weights = [m.weight for m in pruned.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    n_w = sum(w.numel() for w in weights)
    n_nz = sum(int((w != 0).sum()) for w in weights)

    dep = Deployment.for_target(target, wbits=args.wbits, abits=args.abits, fps=args.fps)
    common = dict(data="fashion-mnist", epochs=args.qat_epochs, seed=args.seed,
                  verify_images=args.verify_images, overwrite=True)
    t0 = time.time()
    finn = export_finn(pruned, dep, out / "finn", model_name="lenet5_pruned", **common)
    t_finn = time.time() - t0
    t0 = time.time()
    hls = export_hls(pruned, dep, out / "hls", csim_images=args.csim_images, **common)
    t_hls = time.time() - t0
    same_onnx = (out / "finn" / "model.onnx").read_bytes() == (out / "hls" / "model.onnx").read_bytes()

    fq, hq, c = finn["quantization"], hls["quantization"], hls["csim"]
    te = finn["estimate"]["totals"]
    cli_flags = (f"--target {args.target} --wbits {args.wbits} --abits {args.abits} "
                 f"--epochs {args.qat_epochs} --verify-images {args.verify_images}"
                 + (f" --fps {args.fps:g}" if args.fps else ""))
    row = {
        "model": "lenet5", "dataset": "fashion-mnist", "target": args.target,
        "wbits": args.wbits, "abits": args.abits,
        "command": command_line(),
        "equivalent_cli": [
            f"edgeprune export finn {pt2} {cli_flags} -o {out / 'finn'}",
            f"edgeprune export hls {pt2} {cli_flags} --csim-images {args.csim_images} "
            f"-o {out / 'hls'}"],
        "pruning": {"keep_channels": args.keep, "sparsity": args.sparsity,
                    "dense_params": dense_params, "weights_after_shrink": n_w,
                    "nonzero_weights": n_nz},
        "accuracy": {"float_dense": acc_dense, "float_pruned": acc_pruned,
                     "quant_finn_run": fq["accuracy_quant"], "quant_hls_run": hq["accuracy_quant"],
                     "hls_csim": c["accuracy_csim"]},
        "qonnx_vs_brevitas": fq["qonnx_vs_brevitas"],
        "hls_csim": c,
        "axi_testbench": hls["axi_testbench"],
        "model_onnx_identical_across_exports": same_onnx,
        "zero_weights_quantized": fq["zero_weights"], "total_weights_quantized": fq["total_weights"],
        "finn_estimate": {k: te[k] for k in ("fps", "latency_ms", "ii_cycles", "lut", "bram18",
                                             "dsp", "utilisation_pct", "fits")},
        "finn_folding": {l["name"]: l["attrs"] for l in finn["folding"]["layers"] if l["attrs"]},
        "hls_layers": [{k: l[k] for k in ("node", "reuse_factor", "strategy", "multipliers",
                                          "zero_weights", "weights", "cycles")}
                       for l in hls["hls4ml_layers"]],
        "hls_throughput_estimate": hls["hls4ml_throughput_estimate"],
        "finn_project_checks": {"build_py_keys": finn["build_py"]["keys"],
                                "generate_outputs": finn["build_py"]["outputs"]},
        "seconds": {"finn_export": round(t_finn, 1), "hls_export": round(t_hls, 1),
                    "total": round(time.time() - t_start, 1)},
        "machine": f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
    }
    upsert_rows("fpga.json", [row], key=("model", "target", "wbits", "abits"))
    print(json.dumps({k: row[k] for k in ("accuracy", "qonnx_vs_brevitas", "hls_csim",
                                           "model_onnx_identical_across_exports", "finn_estimate",
                                           "seconds")}, indent=2))
    ok = fq["qonnx_vs_brevitas"]["ok"] and c["bit_exact"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
