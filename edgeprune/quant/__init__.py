"""Quantization: cluster quantization (weight sharing, `cluster`, `bits`, `runner`) and the
quantized FPGA twin (Brevitas conversion, QAT and verified QONNX: `brevitas_model`, `qat`,
`qonnx_io`, `fpga_prepare`; `fpga_support` is its op table). Submodules load torch/brevitas
when imported; this package itself is light."""
