"""FPGA path: Brevitas conversion and QAT, QONNX export and verification.

Heavy libraries (torch, brevitas, qonnx) load when these submodules are imported:
- `brevitas_model`: `to_brevitas(model, wbits, abits, per_layer) -> QuantNet`
- `qat`: `qat(qnet, ds, epochs, ...)`, `KeepZerosHook`
- `qonnx_io`: `export_qonnx_model(qnet, path)`, `verify_qonnx(qnet, path, pixels)`
- `pipeline`: `prepare(...)` (all of the above, used by edgeprune.export.finn / .hls)
"""
