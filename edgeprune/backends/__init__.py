"""Torch-free lowerings that both the cost models and the exporters read.

- `backends.tflm`: the TFLite op plan of a layer graph, its canonical flatbuffer, the LUT
  compression rules and TFLM's flash and arena (`edgeprune estimate` and `export tflm`);
- `backends.finn`: the FINN-style hardware layers of a layer graph with their analytic costs, and
  the folding search (`edgeprune estimate` on FPGA targets, `export finn`, `export hls`);
- `backends.c`: the edgeprune-c runtime: the int8 model as kernel calls, weight encodings and
  their choice per layer, the arena planner, C code generation (`export c`);
- `backends.support`: what each backend does with each op kind (`edgeprune ops`).

Nothing here imports torch, tensorflow or the exporters' libraries at module level.
"""
