"""What the FPGA exporters' quantized twin (Brevitas -> QONNX -> FINN / hls4ml) does with each op
kind. Torch-free: ``edgeprune ops`` and ``edgeprune estimate`` read it; the converter
(``quant.brevitas_model``) refuses exactly the kinds marked unsupported here."""
from __future__ import annotations

from typing import Dict

from ..backends.support import Support, fused, native, noop, unsupported
from ..layergraph import OpKind

_CHAIN = "the FPGA export converts a single chain of layers (issue: residual/concat branches)"

SUPPORT: Dict[OpKind, Support] = {
    OpKind.INPUT: native("uint8 pixels, scale 1 (the 1/255 is folded into the first layer)"),
    OpKind.OUTPUT: native("the last layer's accumulator (FINN noActivation=1)"),
    OpKind.CONV2D: native("QuantConv2d, power-of-two weight scale; groups/dilation > 1 refused"),
    OpKind.DWCONV2D: unsupported("depthwise convolutions are not converted yet (FINN VVAU)"),
    OpKind.LINEAR: native("QuantLinear, power-of-two weight scale"),
    OpKind.BATCHNORM: fused("folded into the conv/linear before it, before QAT"),
    OpKind.RELU: fused("the producer's QuantReLU (unsigned activation quantizer)"),
    OpKind.RELU6: fused("the producer's QuantReLU"),
    OpKind.SIGMOID: unsupported("no quantized sigmoid in the converter"),
    OpKind.TANH: unsupported("no quantized tanh in the converter"),
    OpKind.MAXPOOL2D: native("MaxPool2d on the quantized stream"),
    OpKind.AVGPOOL2D: unsupported("average pooling is not converted yet (FINN Pool/QuantAvgPool)"),
    OpKind.GAP: unsupported("global average pooling is not converted yet (FINN GlobalAccPool)"),
    OpKind.PAD: unsupported("explicit padding layers are not converted yet (FINN FMPadding)"),
    OpKind.DROPOUT: noop(),
    OpKind.IDENTITY: noop(),
    OpKind.SOFTMAX: noop("at the output only: argmax-invariant, left to the host"),
    OpKind.FLATTEN: native("Flatten"),
    OpKind.ADD: unsupported("residual adds are not converted yet: " + _CHAIN),
    OpKind.CONCAT: unsupported("concatenation is not converted yet: " + _CHAIN),
}
