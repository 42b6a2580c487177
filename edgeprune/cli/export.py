"""`edgeprune export {tflm,finn,hls,c} MODEL --target T -o OUT`.

Each exporter has an argparse module ``edgeprune.cli.export_<name>`` with ``add_arguments(parser)``
(light) and ``run(args)``; the work is in ``edgeprune.export.<name>``, imported inside run.
"""
from __future__ import annotations

import importlib

EXPORTERS = {
    "tflm": "TFLite-Micro flatbuffer + C sources for an MCU firmware",
    "finn": "FINN build project (QONNX + folding + build.py) for an FPGA",
    "hls": "hls4ml HLS dataflow project with a bit-exact C-simulation",
    "c": "plain-C int8 inference code (edgeprune-c runtime) for an MCU firmware",
    "rtl": "Verilog dataflow for open FPGA flows, Verilator-checked, iCE40 bitstream",
}


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model to an MCU or FPGA project")
    esub = p.add_subparsers(dest="exporter", metavar="FORMAT")
    esub.required = True
    for name, help_text in EXPORTERS.items():
        try:
            mod = importlib.import_module(f"edgeprune.cli.export_{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edgeprune.cli.export_{name}":
                continue
            raise
        ep = esub.add_parser(name, help=help_text)
        mod.add_arguments(ep)
        ep.set_defaults(func=mod.run)
