"""What the FPGA exporters (finn, hls) share: the target check, the staged output directory, the
quantized and verified model, and the folding + estimate of exactly the deployment they build."""
from __future__ import annotations

import dataclasses
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

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


def overflow(report) -> List[str]:
    """The resources an FPGA CostReport uses beyond the part's utilisation ceilings."""
    t = report.totals
    return [f"{r} {t[r]:,} = {t['utilisation_pct'][r]:.0f} % of the part > the "
            f"{t['util_limits_pct'][r]:.0f} % ceiling" for r in ("lut", "bram18", "uram", "dsp")
            if t["utilisation_pct"][r] > t["util_limits_pct"][r]]


def check_fits(model, deployment, what: str = "the FPGA export") -> None:
    """Raise the exporters' "does not fit" FpgaExportError if `model`'s float graph, folded for
    `deployment`, overflows the part (the check every export makes before its QAT)."""
    from ..cost.fpga import estimate_fpga
    from ..graph import extract

    dep = as_deployment(deployment)
    _refuse_overflow(estimate_fpga(extract(model), dep), dep.target, what)


def _check_prepared(prepared, dep: Deployment, what: str) -> None:
    """A model quantized earlier (`prepare`) must have been quantized for this deployment."""
    q = prepared.qnet
    want = {"wbits": dep.wbits, "abits": dep.abits, "input_bits": dep.input_bits}
    got = {"wbits": q.wbits, "abits": q.abits, "input_bits": getattr(q, "input_bits", 8)}
    if got != want:
        raise FpgaExportError(f"{what}: the prepared model was quantized at {got}, the "
                              f"deployment asks for {want}")
    for name, bits in dict(dep.bits_per_layer).items():
        have = prepared.bits.get(name, {})
        if any(bits.get(k) is not None and have.get(k) != bits[k] for k in ("w", "a")):
            raise FpgaExportError(f"{what}: the prepared model has bits {have} at {name}, the "
                                  f"deployment asks for {bits}")


def _refuse_overflow(report, target, what: str) -> None:
    over = overflow(report)
    if over:
        raise FpgaExportError(f"does not fit {target.name} ({target.part}) even fully folded: "
                              f"{'; '.join(over)} ({what}: nothing written; fewer bits, more "
                              f"pruning, a larger part, or --allow-overflow)")


@contextmanager
def fpga_export(model, deployment, out: os.PathLike, *, data, epochs: int = 2, lr: float = 1e-3,
                seed: int = 0, max_steps_per_epoch: Optional[int] = None,
                verify_images: int = 1000, overwrite: bool = False, progress: bool = True,
                allow_overflow: bool = False, prepared=None,
                what: str = "the FPGA export") -> Iterator[FpgaBuild]:
    """Stage OUT, quantize `model` to the deployment's bits (QAT on `data`), export and verify
    QONNX (OUT/model.onnx), fold it for the deployment's target and fps, and estimate that
    folding. The caller writes its files into ``build.dir``; OUT appears only on success. A
    design that does not fit the part is an FpgaExportError (checked before the QAT, on the
    float model's graph), unless `allow_overflow`.

    `prepared`: the result of an earlier `edgeprune.quant.fpga_prepare.prepare` of this model
    at this deployment's bits (its QONNX file already verified); it is used as is - no QAT, its
    model.onnx bytes copied - so several exports of one model share one training run."""
    from ..backends.finn.folding import auto_fold
    from ..cost.fpga import estimate_fpga
    from ..graph import extract
    from ..quant.fpga_prepare import prepare

    dep = as_deployment(deployment)
    require_kind(dep.target, "fpga", what, "use 'edgeprune export tflm' for MCU targets")
    if data is None and prepared is None:
        raise FpgaExportError(f"{what} needs --data: quantization-aware training and the "
                              f"verification run on real images")
    if not allow_overflow:
        check_fits(model, dep, what)
    if prepared is not None:
        _check_prepared(prepared, dep, what)
    with staged_output(out, overwrite) as tmp:
        if prepared is None:
            prep = prepare(model, dep, tmp / "model.onnx", data=data, epochs=epochs, lr=lr,
                           seed=seed, max_steps_per_epoch=max_steps_per_epoch,
                           verify_images=verify_images, progress=progress)
        else:
            shutil.copyfile(prepared.onnx_path, tmp / "model.onnx")
            prep = dataclasses.replace(prepared, onnx_path=tmp / "model.onnx")
        built = dep.with_(bits_per_layer=prep.bits)
        folding = auto_fold(prep.graph, built.target, wbits=built.wbits, abits=built.abits,
                            target_fps=built.fps, input_bits=built.input_bits,
                            weight_bits_per_layer=built.weight_bits_per_layer(),
                            act_bits_per_layer=built.act_bits_per_layer())
        est = estimate_fpga(prep.graph, built, folding=folding)
        if not allow_overflow:
            _refuse_overflow(est, built.target, what)
        yield FpgaBuild(tmp, prep, built, folding, est)
