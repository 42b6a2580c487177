"""What the FPGA exporters (finn, hls) share: the target check, the staged output directory, the
quantized and verified model, and the folding + estimate of exactly the deployment they build."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..artifacts import staged_output
from ..deploy import Deployment, as_deployment
from ..errors import EdgepruneError
from ..targets import require_kind


class FpgaExportError(EdgepruneError, ValueError):
    pass


@dataclass
class FpgaBuild:
    """An FPGA export in progress (inside its staging directory)."""

    dir: Path                 # the staging directory; renamed to OUT when the export succeeds
    prep: object              # edgeprune.quant.fpga_prepare.Prepared
    deployment: Deployment    # the requested deployment with the quantized model's per-layer bits
    folding: object           # edgeprune.backends.finn.folding.Folding
    estimate: object          # edgeprune.cost.CostReport of exactly this folding


@contextmanager
def fpga_export(model, deployment, out: os.PathLike, *, data, epochs: int = 2, lr: float = 1e-3,
                seed: int = 0, max_steps_per_epoch: Optional[int] = None,
                verify_images: int = 1000, overwrite: bool = False, progress: bool = True,
                what: str = "the FPGA export") -> Iterator[FpgaBuild]:
    """Stage OUT, quantize `model` to the deployment's bits (QAT on `data`), export and verify
    QONNX (OUT/model.onnx), fold it for the deployment's target and fps, and estimate that
    folding. The caller writes its files into ``build.dir``; OUT appears only on success."""
    from ..backends.finn.folding import auto_fold
    from ..cost.fpga import estimate_fpga
    from ..quant.fpga_prepare import prepare

    dep = as_deployment(deployment)
    require_kind(dep.target, "fpga", what, "use 'edgeprune export tflm' for MCU targets")
    if data is None:
        raise FpgaExportError(f"{what} needs --data: quantization-aware training and the "
                              f"verification run on real images")
    with staged_output(out, overwrite) as tmp:
        prep = prepare(model, dep, tmp / "model.onnx", data=data, epochs=epochs, lr=lr,
                       seed=seed, max_steps_per_epoch=max_steps_per_epoch,
                       verify_images=verify_images, progress=progress)
        built = dep.with_(bits_per_layer=prep.bits)
        folding = auto_fold(prep.graph, built.target, wbits=built.wbits, abits=built.abits,
                            target_fps=built.fps, input_bits=built.input_bits,
                            weight_bits_per_layer=built.weight_bits_per_layer(),
                            act_bits_per_layer=built.act_bits_per_layer())
        est = estimate_fpga(prep.graph, built, folding=folding)
        yield FpgaBuild(tmp, prep, built, folding, est)
