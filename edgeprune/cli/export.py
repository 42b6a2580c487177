"""`edgeprune export {tflm,finn,hls,c} MODEL --target T -o OUT`.

Each exporter module in ``edgeprune.export`` has an ``add_arguments(parser)`` (light) and a
``run(args)``; the heavy imports happen in run.
"""
from __future__ import annotations

import importlib

EXPORTERS = {
    "tflm": "TFLite-Micro flatbuffer + C sources for an MCU firmware",
    "finn": "FINN build project (QONNX + folding + build.py) for an FPGA",
    "hls": "hls4ml HLS dataflow project with a bit-exact C-simulation",
    "c": "plain-C int8 inference code (edgeprune-c runtime) for an MCU firmware",
}


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model to an MCU or FPGA project")
    esub = p.add_subparsers(dest="exporter", metavar="FORMAT")
    esub.required = True
    for name, help_text in EXPORTERS.items():
        try:
            mod = importlib.import_module(f"edgeprune.export.{name}_cli")
        except ModuleNotFoundError as e:
            if e.name == f"edgeprune.export.{name}_cli":
                continue
            raise
        ep = esub.add_parser(name, help=help_text)
        mod.add_arguments(ep)
        ep.set_defaults(func=mod.run)
