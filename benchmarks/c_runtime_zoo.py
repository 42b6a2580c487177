#!/usr/bin/env python3
"""edgeprune-c on every zoo model: output bytes vs TFLM and LiteRT on real images, arena, flash
and RAM.

For each zoo model (seeded random weights, non-trivial BatchNorm statistics):
1. quantize as `edgeprune export c` does (calibration: 256 training images);
2. generate C for the Cortex-M4 (stm32l4r5-m4) with each weight encoding (dense, sparse,
   clustered, forced on every weighted layer that allows it) in TFLM rounding, and the
   per-layer choice ('auto', cycles objective) in both TFLM and LiteRT rounding;
3. build each on the host, run it on the test images and compare its output bytes with the
   tflite-micro runtime and LiteRT's reference kernels;
4. cross-compile the 'auto' build for cortex-m4 and cortex-m0plus (arm-none-eabi-gcc -O2):
   flash = text + rodata + data, RAM = data + bss + stack (deepest static call chain).

Images: the 28 x 28 models run on Fashion-MNIST and on the MNIST test set (--mnist-dir, or
edgeprune's mnist-10k lookup; split 8k calibration / 2k test); the others on Fashion-MNIST images resized (bilinear)
to their input shape, grey replicated over the channels (flat inputs: resized to 20 x 32 and
flattened). They are real images, not the models' own data: the check is bit-exactness, not
accuracy (random weights).

Run from the repo root:
  .venv/bin/python benchmarks/c_runtime_zoo.py [--models lenet5 ...] [--eval 300]
Writes benchmarks/results/c_runtime_zoo.json (rows keyed by model, data, rounding, variant).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from common import command_line, upsert_rows  # noqa: E402

ZOO = ("lenet5", "lenet300100", "vgg_small", "resnet8", "dscnn", "mobilenetv1_025",
       "fc_autoencoder")


def fit_images(x: np.ndarray, shape) -> np.ndarray:
    """uint8 (N, 28, 28) images -> uint8 (N, *shape)."""
    import torch
    import torch.nn.functional as F
    if tuple(shape) == (1, 28, 28):
        return x[:, None]
    if len(shape) == 1:
        n = shape[0]
        hw = (n // 32, 32) if n % 32 == 0 else (1, n)
        c = 1
    else:
        c, h, w = shape
        hw = (h, w)
    t = torch.from_numpy(x[:, None].astype(np.float32))
    r = F.interpolate(t, size=hw, mode="bilinear", align_corners=False).round().clamp(0, 255)
    r = r.to(torch.uint8).numpy().repeat(c, axis=1)
    return r.reshape((len(x),) + tuple(shape))


def datasets(model_name: str, shape, n_eval: int, mnist_dir=None):
    from edgeprune.data import Dataset, load_dataset, load_directory, mnist10k_dir
    fm = load_dataset("fashion-mnist")
    out = []
    if tuple(shape) == (1, 28, 28):
        out.append(fm)
        if mnist_dir:
            out.append(load_directory(mnist_dir, "mnist-10k"))
        elif mnist10k_dir() is not None:
            out.append(load_dataset("mnist-10k"))
    else:
        rs = Dataset(f"fashion-mnist resized to {'x'.join(map(str, shape))}",
                     fit_images(fm.x_train[:1024], shape), fm.y_train[:1024],
                     fit_images(fm.x_test[:n_eval], shape), fm.y_test[:n_eval])
        out.append(rs)
    return out


def randomize_bn(model, seed):
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO))
    ap.add_argument("--eval", type=int, default=300, help="test images per model and dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mnist-dir", default=None,
                    help="MNIST t10k IDX directory (default: edgeprune's mnist-10k lookup)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    from edgeprune.backends.c import build as cbuild
    from edgeprune.backends.c.codegen import generate
    from edgeprune.backends.c.ir import read_tflite
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.export.c import quantize
    from edgeprune.export.keras_mirror import to_nhwc
    from edgeprune.export.tflm import (samples, io_quant, match_ops, quantize_input, run_litert,
                                       run_tflm)
    from edgeprune.graph import extract
    from edgeprune.models import build

    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        model = randomize_bn(build(name), args.seed)
        graph = extract(model)
        plan = tflm_plan.lower(graph)
        for ds in datasets(name, graph.input_shape, args.eval, args.mnist_dir):
            t0 = time.time()
            cal, ev, _, note = samples(model, graph, ds, 256, args.eval, args.seed)
            plain, _ = quantize(model, graph, plan, cal, args.seed, ev[:16])
            names = [n for n, _ in sorted(match_ops(plain, plan), key=lambda p: p[1])]
            g = read_tflite(plain, names)
            q = io_quant(plain)
            x = quantize_input(to_nhwc(ev), q["input_scale"], q["input_zero_point"])
            out_tflm, tflm_arena, _ = run_tflm(plain, x)
            out_tflm = out_tflm.reshape(len(x), -1)
            out_litert = run_litert(plain, x).reshape(len(x), -1)
            runs = [("tflm", "dense"), ("tflm", "sparse"), ("tflm", "clustered"), ("tflm", None),
                    ("litert", None)]
            for rounding, variant in runs:
                gen = generate(g, "cortex-m4", force=variant, rounding=rounding, model_name=name)
                with tempfile.TemporaryDirectory(prefix="c-zoo-") as d:
                    src = Path(d) / "src"
                    src.mkdir()
                    for fn, text in gen.files.items():
                        (src / fn).write_text(text)
                    hb = cbuild.build_host(src, Path(d) / "host", ["-Werror"])
                    out = cbuild.run_host(hb, x, out_tflm.shape[1])
                    row = {
                        "model": name, "data": ds.name, "rounding": rounding,
                        "variant": variant or "auto", "samples": int(len(x)),
                        "identical_vs_tflm": bool(np.array_equal(out, out_tflm)),
                        "identical_vs_litert_reference": bool(np.array_equal(out, out_litert)),
                        "outputs_differing_vs_tflm": int((out != out_tflm).sum()),
                        "outputs_differing_vs_litert_reference": int((out != out_litert).sum()),
                        "tflm_vs_litert_outputs_differing": int((out_tflm != out_litert).sum()),
                        "layers": {l.layer: l.variant for l in gen.layers},
                        "weight_bytes": int(sum(l.weight_bytes for l in gen.layers)),
                        "arena_bytes": gen.arena_bytes,
                        "arena_bytes_tflm_greedy_plan": gen.arena_bytes_tflm_greedy,
                        "tflm_arena_bytes_host": int(tflm_arena),
                        "command": command_line(),
                    }
                    if variant is None and rounding == "tflm" and cbuild.arm_gcc():
                        for core in ("cortex-m4", "cortex-m0plus"):
                            gcore = generate(g, core, rounding=rounding, model_name=name)
                            csrc = Path(d) / f"src-{core}"
                            csrc.mkdir()
                            for fn, text in gcore.files.items():
                                (csrc / fn).write_text(text)
                            cb = cbuild.cross_compile(csrc, core, Path(d) / core, ["-Werror"])
                            row[f"{core}_flash_bytes"] = cb.flash_bytes
                            row[f"{core}_ram_bytes"] = cb.ram_bytes
                            row[f"{core}_stack_bytes"] = cb.stack_bytes
                            row[f"{core}_sections"] = cb.sections
                rows.append(row)
                print(f"{name:16s} {ds.name[:28]:28s} {rounding:6s} {row['variant']:9s} "
                      f"tflm {'==' if row['identical_vs_tflm'] else '!='} "
                      f"litert {'==' if row['identical_vs_litert_reference'] else '!='} "
                      f"arena {gen.arena_bytes} (TFLM plan {gen.arena_bytes_tflm_greedy}, TFLM host "
                      f"{tflm_arena})", flush=True)
            print(f"  {name} on {ds.name}: {time.time() - t0:.0f} s ({note})", flush=True)
    upsert_rows("c_runtime_zoo.json", rows, key=("model", "data", "rounding", "variant"))
    bad = [r for r in rows if not r["identical_vs_" + ("tflm" if r["rounding"] == "tflm"
                                                      else "litert_reference")]]
    print(f"{len(rows) - len(bad)}/{len(rows)} builds bit-exact with the runtime whose rounding "
          f"they use")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
