"""What the C kernel tests (test_c_conv_dsp, test_c_dwconv, test_c_pool, test_c_sparse) share:
build a generated model with the host compiler and run it on int8 inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeprune.backends.c import build as cbuild


def host_outputs(gen, x, work: Path, flags=None) -> np.ndarray:
    """The output bytes of `gen` (a codegen.generate result) built on the host in `work`."""
    src = work / "src"
    src.mkdir(parents=True)
    for k, v in gen.files.items():
        (src / k).write_text(v)
    b = cbuild.build_host(src, work / "build", flags)
    return cbuild.run_host(b, x, int(np.prod(gen.program.output_shape)))
