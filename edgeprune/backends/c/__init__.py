"""edgeprune-c: an int8 TFLite model lowered to plain C99 (no runtime library).

Torch-free and tensorflow-free, so the cost model can read it too:
- ``ir``: the int8 graph read from the flatbuffer the TFLM exporter produces;
- ``lower``: kernel steps, arena buffers and the overlap each kernel allows;
- ``variants`` + ``costs``: weight encodings (dense, sparse, clustered) and the choice per layer;
- ``planner``: the static arena;
- ``codegen``: the C sources (kernels copied from ``kernels/``);
- ``build``: host and arm-none-eabi builds of the result.

The exporter is ``edgeprune.export.c`` (``edgeprune export c``); see docs/c_export.md.
"""
