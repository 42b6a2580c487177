"""What the FPGA exporters' quantized twin (Brevitas -> QONNX -> FINN / hls4ml) does with each op
kind. Torch-free: ``edgeprune ops`` and ``edgeprune estimate`` read it; the converter
(``quant.brevitas_model``) refuses exactly the kinds marked unsupported here."""
from __future__ import annotations

from typing import Dict

from ..backends.support import Support, fused, native, noop, unsupported
from ..layergraph import OpKind

# FINN's AddStreams / StreamingConcat take integer streams of one data type: both inputs need
# the same scale and sign. Brevitas' FINN-targeted ResNet (brevitas_examples/bnn_pynq/models/
# resnet.py, "FINN requires the same sign along residual adds") gets it by sharing one
# quantizer instance between the branches; so does edgeprune (signed, so no ReLU is added).
_SHARED = "one shared signed quantizer on every input (equal scale and sign, as FINN needs)"

SUPPORT: Dict[OpKind, Support] = {
    OpKind.INPUT: native("uint8 pixels/features, scale 1 (the 1/255 is folded into the first "
                         "layer)"),
    OpKind.OUTPUT: native("the last layer's accumulator (FINN noActivation=1)"),
    OpKind.CONV2D: native("QuantConv2d, power-of-two weight scale; groups/dilation > 1 refused"),
    OpKind.DWCONV2D: native("depthwise QuantConv2d (FINN VVAU, hls4ml DepthwiseConv2D)"),
    OpKind.LINEAR: native("QuantLinear, power-of-two weight scale"),
    OpKind.BATCHNORM: fused("folded into the conv/linear before it, before QAT"),
    OpKind.RELU: fused("the producer's QuantReLU (unsigned activation quantizer), else a "
                       "requantizing QuantReLU"),
    OpKind.RELU6: fused("the producer's QuantReLU"),
    OpKind.SIGMOID: unsupported("no quantized sigmoid in the converter"),
    OpKind.TANH: unsupported("no quantized tanh in the converter"),
    OpKind.MAXPOOL2D: native("MaxPool2d on the quantized stream"),
    OpKind.AVGPOOL2D: native("exact window sum (all-ones depthwise conv) + requantizer; the 1/N "
                             "is folded into the next conv/linear"),
    OpKind.GAP: native("exact sum over the map (all-ones depthwise conv) + requantizer; the 1/N "
                       "is folded into the next conv/linear"),
    OpKind.PAD: native("ZeroPad2d on the quantized stream (zero is exact: zero point 0)"),
    OpKind.DROPOUT: noop(),
    OpKind.IDENTITY: noop(),
    OpKind.SOFTMAX: noop("at the output only: argmax-invariant, left to the host"),
    OpKind.FLATTEN: native("Flatten"),
    OpKind.ADD: native("residual add: " + _SHARED),
    OpKind.CONCAT: native("channel concat: " + _SHARED),
}
