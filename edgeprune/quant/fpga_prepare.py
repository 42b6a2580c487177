"""A float model prepared for the FPGA exporters: Brevitas twin -> QAT -> QONNX, verified.

`prepare` is what the FINN, hls4ml (and RTL) exports start from: the quantized network, its
QONNX file checked against Brevitas on real test images, and the facts every report carries
(`quant_summary`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn as nn

from ..errors import EdgepruneError
from ..graph import LayerGraph, extract
from .brevitas_model import QuantNet, parse_bits_map, to_brevitas
from .qonnx_io import QonnxCheck, export_qonnx_model, pixels, verify_qonnx


class FpgaPrepareError(EdgepruneError, ValueError):
    pass


@dataclass
class Prepared:
    """A quantized, fine-tuned model with its verified QONNX file."""

    qnet: QuantNet
    graph: LayerGraph                      # layer graph of the float (shrunk) model
    onnx_path: Path
    qonnx_check: QonnxCheck
    accuracy_float: Optional[float]
    accuracy_quant: Optional[float]
    qat_epochs: int
    dataset: str
    x_test: np.ndarray                     # pixels 0..255, (N, C, H, W) float32
    y_test: np.ndarray
    zero_weights: int
    total_weights: int
    bits: Dict[str, Dict[str, Optional[int]]]
    timings_s: Dict[str, float] = field(default_factory=dict)


def prepare(model: nn.Module, deployment, onnx_path: os.PathLike, *, data, epochs: int = 2,
            lr: float = 1e-3, seed: int = 0, max_steps_per_epoch: Optional[int] = None,
            verify_images: int = 1000, progress: bool = True) -> Prepared:
    """Convert to the `deployment`'s bit widths (an FPGA edgeprune.deploy.Deployment),
    QAT-fine-tune on `data` (a dataset name, path or Dataset), export QONNX to `onnx_path` and
    verify it on test images."""
    wbits, abits = deployment.wbits, deployment.abits
    per_layer = dict(deployment.bits_per_layer) or None
    from ..data import Dataset, load_dataset
    from ..train import dataset_tensors, evaluate
    from .qat import qat

    timings: Dict[str, float] = {}
    t0 = time.time()
    torch.manual_seed(seed)
    graph = extract(model)
    parse_bits_map(per_layer, graph)
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    shape = graph.input_shape
    ds.check_fits(shape, graph.n_outputs)
    _, _, x_te01, y_te = dataset_tensors(ds, shape)
    acc_float = evaluate(model.eval(), x_te01, y_te)
    in_bits = getattr(deployment, "input_bits", 8)
    qnet = to_brevitas(model, wbits=wbits, abits=abits, per_layer=per_layer, input_bits=in_bits)
    res = qat(qnet, ds, epochs=epochs, lr=lr, seed=seed,
              max_steps_per_epoch=max_steps_per_epoch, progress=progress)
    timings["qat"] = time.time() - t0
    t1 = time.time()
    export_qonnx_model(qnet, onnx_path)
    timings["qonnx_export"] = time.time() - t1
    x_pix = pixels(ds.x_test, shape, in_bits)
    n = len(x_pix) if verify_images <= 0 else min(verify_images, len(x_pix))
    t2 = time.time()
    check = verify_qonnx(qnet, onnx_path, x_pix[:n])
    timings["qonnx_verify"] = time.time() - t2
    if not check.ok:
        raise FpgaPrepareError(
            f"QONNX execution differs from the Brevitas model: max |diff| "
            f"{check.max_abs_diff:.3g}, argmax agreement {100 * check.argmax_agreement:.2f} % "
            f"on {check.images} images")
    zeros = total = 0
    for l in qnet.layers:
        w = qnet.core[l.index].weight
        zeros += int((w == 0).sum())
        total += w.numel()
    return Prepared(qnet, graph, Path(onnx_path), check, acc_float, res.test_accuracy, epochs,
                    ds.name, x_pix, np.asarray(ds.y_test), zeros, total, qnet.bits_map(), timings)


def quant_summary(prep: Prepared) -> Dict[str, Any]:
    """The quantization facts every report.json carries."""
    return {"dataset": prep.dataset, "qat_epochs": prep.qat_epochs,
            "wbits": prep.qnet.wbits, "abits": prep.qnet.abits, "bits_per_layer": prep.bits,
            "input": ("bipolar +-1 pixels (binarized on the host: pixel >= 128 -> +1)"
                      if getattr(prep.qnet, "input_bits", 8) == 1 else
                      "uint8 pixels 0..255 (scale 1; the float model's 1/255 is folded into the "
                      "first layer)"),
            "output_scale": prep.qnet.output_scale(),
            "accuracy_float": prep.accuracy_float, "accuracy_quant": prep.accuracy_quant,
            "zero_weights": prep.zero_weights, "total_weights": prep.total_weights,
            "qonnx_vs_brevitas": prep.qonnx_check.to_dict()}
