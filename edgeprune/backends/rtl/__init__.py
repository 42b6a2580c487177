"""RTL dataflow backend: synthesizable Verilog for open FPGA flows (yosys / nextpnr / Verilator).
Torch-free: `ir` (the integer network), `plan` (hardware units, cycles, resource terms),
`verilog` (generation), `sim` (Verilator), `synth` (yosys, nextpnr-ice40, icepack)."""
