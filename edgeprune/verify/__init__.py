"""Running exported models on emulated Cortex-M cores (QEMU) and measuring them exactly.

- ``boards``: the QEMU board of each core (memory map, timer), and the cores that have none;
- ``cpi``: instructions -> cycles with the timings of each core's Technical Reference Manual;
- ``firmware``: bare-metal start-up, linker script and harness, built with arm-none-eabi-gcc;
- ``qemu``: runs a firmware with ``-icount`` (exact instruction counts from a timer) or with an
  execution trace (the instruction stream, for the TRM cycle conversion);
- ``c_runtime``: ``verify_c``, the ``edgeprune verify OUT --qemu CORE`` of an ``export c`` output.

Torch-free; TensorFlow / LiteRT only for the host reference of a model (imported lazily).
"""
