"""What the edgeprune-c runtime does with each op kind (the support matrix's "c-runtime"
column, `edgeprune ops`), and the check the C export runs on a layer graph before it converts
anything: a kind this table marks unsupported is refused naming the layer.

The C runtime runs the TFLite op plan of ``backends/tflm/plan.py`` (the int8 model is the TFLM
export's flatbuffer), so a kind is supported here when the plan lowers it and a C kernel runs
the TFLite op it becomes. Torch-free.
"""
from __future__ import annotations

from typing import Dict

from ...layergraph import OpKind
from ..support import Support, fused, native, noop, unsupported
from .ir import CModelError

SUPPORT: Dict[OpKind, Support] = {
    OpKind.INPUT: native("int8 NHWC buffer in the arena, reused after its last reader"),
    OpKind.OUTPUT: native("int8 buffer in the arena, copied out unless read in place"),
    OpKind.CONV2D: native("ep_conv_*: dense (SMLAD on DSP cores, plain on the M0+), sparse or "
                          "clustered weights, chosen per layer"),
    OpKind.DWCONV2D: native("ep_dwconv_*: dense (SMLABB/SMLATT on DSP cores)"),
    OpKind.LINEAR: native("ep_fc_*: dense, sparse or clustered weights, chosen per layer"),
    OpKind.BATCHNORM: fused("folded into the conv/linear before it (TFLite plan)"),
    OpKind.RELU: fused("into the layer before it; else ep_relu"),
    OpKind.RELU6: fused("into the layer before it; else ep_relu"),
    OpKind.SIGMOID: unsupported("LOGISTIC has no edgeprune-c kernel"),
    OpKind.TANH: unsupported("TANH has no edgeprune-c kernel"),
    OpKind.MAXPOOL2D: native("ep_maxpool, may overlay its input"),
    OpKind.AVGPOOL2D: native("ep_avgpool, may overlay its input"),
    OpKind.GAP: native("ep_avgpool over the whole map"),
    OpKind.PAD: fused("into the next conv's padding (else ep_pad, backwards, may overlay its "
                      "input)"),
    OpKind.DROPOUT: noop(),
    OpKind.IDENTITY: noop(),
    OpKind.SOFTMAX: native("ep_softmax (gemmlowp fixed point), in place"),
    OpKind.FLATTEN: noop("RESHAPE: the same buffer"),
    OpKind.ADD: native("ep_add (same shapes), in place"),
    OpKind.CONCAT: native("ep_concat (inputs share the output's quantization)"),
}


def check_graph(graph) -> None:
    """Refuse, naming the first such layer, a graph with a kind the C runtime does not run."""
    for n in graph.nodes:
        s = SUPPORT.get(OpKind(n.op))
        if s is None or not s.supported:
            where = f"layer '{n.name}'" + (f" ({n.target})" if n.target else "")
            raise CModelError(f"{where}: op {n.op} is not supported by the C runtime "
                              f"({s.note if s is not None else 'no entry'})")
