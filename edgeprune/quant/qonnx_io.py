"""QONNX export of a `QuantNet` (Brevitas ``export_qonnx``) and its verification with QONNX's
own executor (``qonnx.core.onnx_exec.execute_onnx``) on real images.

The written model.onnx is Brevitas' export after ``qonnx.util.cleanup.cleanup_model``, with one
change: the input quantizer (8-bit unsigned, scale 1, zero point 0 - the identity on pixels
0..255) is removed and the graph input annotated ``UINT8`` instead. That is how FINN wants an
integer input (a Quant node there would become a 255-step MultiThreshold layer in hardware), and
hls4ml gets the same information from its input precision ``ufixed<8,8>``. On integer pixels the
two graphs compute the same function; the verification runs the written file. A 1-bit input
(``QuantNet.input_bits == 1``: pixels binarized on the host) is a scale-1 ``BipolarQuant`` there,
the identity on +-1, stripped likewise; the input is annotated ``BIPOLAR``.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ..errors import EdgepruneError
from .brevitas_model import BIPOLAR, INPUT_BITS, QuantNet, binarize_pixels


class QonnxError(EdgepruneError, RuntimeError):
    pass


@dataclass
class QonnxCheck:
    """Result of running the QONNX file against the Brevitas model."""

    images: int
    max_abs_diff: float
    argmax_agreement: float        # fraction in [0, 1]
    exact_integer_outputs: float   # fraction of images whose integer-scaled outputs are equal
    output_scale: float            # outputs / output_scale are integers

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= 1e-5 and self.argmax_agreement == 1.0

    def to_dict(self) -> Dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def export_qonnx_model(qnet: QuantNet, path: os.PathLike) -> Path:
    """Export ``qnet.core`` to QONNX at `path` (atomic write). Same weights -> same bytes."""
    from brevitas.export import export_qonnx
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from .brevitas_model import fold_sign_batchnorms

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qnet.eval()
    fold_sign_batchnorms(qnet)      # a net not trained by qat(): its BNN BatchNorms still there
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "brevitas.onnx"
        example = torch.zeros((1,) + tuple(qnet.input_shape))
        import contextlib
        import io
        # torch.onnx prints its progress; keep the CLI output to edgeprune's own lines.
        with contextlib.redirect_stdout(io.StringIO()):
            export_qonnx(qnet.core, args=example, export_path=str(raw))
        model = cleanup_model(ModelWrapper(str(raw)))
        in_bits = getattr(qnet, "input_bits", INPUT_BITS)
        model = _strip_input_quant(model, in_bits)
        model.set_tensor_datatype(model.graph.input[0].name,
                                  DataType["BIPOLAR" if in_bits == BIPOLAR else
                                           f"UINT{INPUT_BITS}"])
        model.model.producer_name = "edgeprune"
        model.model.producer_version = ""
        model.model.doc_string = ""
        out = Path(tmp) / "model.onnx"
        model.save(str(out))
        os.replace(out, path)
    return path


def _strip_input_quant(model, input_bits: int = INPUT_BITS):
    """Remove the identity input quantizer (uint8, scale 1, zero point 0; or, for a 1-bit input,
    a scale-1 BipolarQuant, the identity on +-1) after the graph input."""
    from qonnx.util.basic import get_by_name

    gin = model.graph.input[0].name
    consumers = model.find_consumers(gin)
    want = "BipolarQuant" if input_bits == BIPOLAR else "Quant"
    if len(consumers) != 1 or consumers[0].op_type != want:
        raise QonnxError("exported QONNX does not start with the input quantizer")
    q = consumers[0]
    if want == "BipolarQuant":
        scale = model.get_initializer(q.input[1])
        if scale is None or not np.all(scale == 1.0):
            raise QonnxError("input quantizer is not the scale-1 BipolarQuant; refusing to "
                             "strip it")
        return _bypass(model, q, gin)
    scale = model.get_initializer(q.input[1])
    zp = model.get_initializer(q.input[2])
    bw = model.get_initializer(q.input[3])
    signed = get_by_name(q.attribute, "signed")
    narrow = get_by_name(q.attribute, "narrow")
    if (scale is None or zp is None or bw is None or not np.all(scale == 1.0)
            or not np.all(zp == 0) or int(np.asarray(bw).item()) != INPUT_BITS
            or (signed is not None and signed.i) or (narrow is not None and narrow.i)):
        raise QonnxError("input quantizer is not the uint8 scale-1 identity; refusing to strip it")
    return _bypass(model, q, gin)


def _bypass(model, q, gin):
    out_name = q.output[0]
    for n in model.graph.node:
        for i, t in enumerate(n.input):
            if t == out_name:
                n.input[i] = gin
    model.graph.node.remove(q)
    from qonnx.util.cleanup import cleanup_model
    return cleanup_model(model)


# Images per execute_onnx call. qonnx's executor spends its time per call, not per image: it
# re-walks the graph (shape and datatype look-ups, one onnxruntime session per standard node) on
# every call, 2-3 s a call for mobilenetv1_025's 142 nodes whatever the batch size (measured:
# 4 images one at a time 11.1 s, 40 images in one call 2.9 s, identical outputs). 100 images of
# the largest zoo input (3x96x96) keep every activation under ~30 MB.
QONNX_BATCH = 100


def _batched(model, bsize: int):
    """A copy of `model` with batch size `bsize` (qonnx's ChangeBatchSize: graph input/output,
    constant Reshape shapes; intermediate shapes re-inferred)."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    m = ModelWrapper(copy.deepcopy(model.model))
    return m.transform(ChangeBatchSize(bsize)).transform(InferShapes())


def qonnx_execute(path_or_model, x_pixels: np.ndarray, batch_size: int = QONNX_BATCH) -> np.ndarray:
    """Run the QONNX model on pixels (N, C, H, W) with values 0..255 with qonnx's execute_onnx,
    `batch_size` images per call (1: one image at a time, on the file's own batch-1 graph)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    model = path_or_model if not isinstance(path_or_model, (str, os.PathLike)) else \
        ModelWrapper(str(path_or_model))
    iname = model.graph.input[0].name
    oname = model.graph.output[0].name
    x = np.asarray(x_pixels, dtype=np.float32)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    models = {1: model}
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        if len(xb) not in models:
            models[len(xb)] = _batched(model, len(xb))
        outs.append(execute_onnx(models[len(xb)], {iname: xb})[oname])
    return np.concatenate(outs, axis=0)


@torch.no_grad()
def brevitas_execute(qnet: QuantNet, x_pixels: np.ndarray, batch_size: int = 500) -> np.ndarray:
    qnet.eval()
    outs = []
    for i in range(0, len(x_pixels), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x_pixels[i:i + batch_size], dtype=np.float32))
        y = qnet.core(xb)
        outs.append((y.value if hasattr(y, "value") else y).numpy())
    return np.concatenate(outs, axis=0)


def verify_qonnx(qnet: QuantNet, path: os.PathLike, x_pixels: np.ndarray,
                 reference: Optional[np.ndarray] = None) -> QonnxCheck:
    """Compare QONNX execution of `path` with the Brevitas model on `x_pixels` (0..255)."""
    ref = brevitas_execute(qnet, x_pixels) if reference is None else reference
    got = qonnx_execute(path, x_pixels).reshape(ref.shape)
    scale = qnet.output_scale()
    ints_ref = np.round(ref / scale)
    ints_got = np.round(got / scale)
    return QonnxCheck(
        images=int(len(x_pixels)),
        max_abs_diff=float(np.max(np.abs(ref - got))) if len(ref) else 0.0,
        argmax_agreement=float(np.mean(ref.argmax(1) == got.argmax(1))) if len(ref) else 1.0,
        exact_integer_outputs=float(np.mean(np.all(ints_ref == ints_got, axis=1))) if len(ref) else 1.0,
        output_scale=scale)


def pixels(x_uint8: np.ndarray, input_shape, input_bits: int = INPUT_BITS) -> np.ndarray:
    """uint8 images -> float32 (N, C, H, W) pixel values 0..255 (what the FPGA design takes);
    with input_bits 1, the binarized +-1 pixels."""
    x = np.asarray(x_uint8)
    x = x.reshape((len(x),) + tuple(input_shape)).astype(np.float32)
    return binarize_pixels(x) if input_bits == BIPOLAR else x
