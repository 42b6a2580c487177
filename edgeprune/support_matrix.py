"""The support matrix: every backend's table over `OpKind` (see edgeprune.backends.support).

It names modules of several layers (backends, cost, quant), so it sits at the top with the
exporters; `edgeprune ops` prints it and `edgeprune estimate` reads the export columns.
Every module named here is torch-free.
"""
from __future__ import annotations

import importlib
from typing import Dict, List, Tuple

from .backends.support import Support
from .layergraph import OpKind

# The backends of the support matrix: column name -> (module, attribute, what the column means).
# Imported lazily; every module named here must stay torch-free.
BACKENDS: Dict[str, Tuple[str, str, str]] = {
    "tflm-plan": ("edgeprune.backends.tflm.plan", "SUPPORT",
                  "TFLite-Micro op plan (export tflm, flash/arena model)"),
    "mcu-cycles": ("edgeprune.cost.mcu", "SUPPORT", "MCU cycle model (estimate on MCU targets)"),
    "fpga-cost": ("edgeprune.backends.finn.layers", "SUPPORT",
                  "FINN-style HW layers (estimate on FPGA targets, folding)"),
    "fpga-export": ("edgeprune.quant.fpga_support", "SUPPORT",
                    "Brevitas/QONNX twin (export finn, export hls)"),
    "c-runtime": ("edgeprune.backends.c.support", "SUPPORT",
                  "edgeprune-c kernels (export c)"),
    "rtl-export": ("edgeprune.backends.rtl.plan", "SUPPORT",
                   "RTL dataflow units (export rtl: Verilog, Verilator, yosys/nextpnr)"),
}


def table(backend: str) -> Dict[OpKind, Support]:
    module, attr, _ = BACKENDS[backend]
    return getattr(importlib.import_module(module), attr)


def matrix() -> Dict[str, Dict[OpKind, Support]]:
    """{backend: {op kind: Support}} for every backend of the matrix."""
    return {name: table(name) for name in BACKENDS}


# What each kind of target is exported with (the columns `edgeprune estimate` checks).
EXPORT_BACKENDS = {"mcu": ("tflm-plan", "export tflm"), "fpga": ("fpga-export", "export finn/hls")}


def export_notes(graph, kind: str) -> List[str]:
    """Notes for an estimate on a `kind` target: the layers its exporter cannot convert yet."""
    backend, what = EXPORT_BACKENDS[kind]
    t = table(backend)
    bad: Dict[OpKind, List[str]] = {}
    for n in graph.nodes:
        if not t[n.op].supported:
            bad.setdefault(n.op, []).append(n.name)
    return [f"{what} cannot convert this model yet: {kind_} (layer{'s' if len(names) > 1 else ''} "
            f"{', '.join(names)}): {t[kind_].note}" for kind_, names in bad.items()]
