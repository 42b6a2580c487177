"""ep_maxpool's word path (kernels/ep_pool.c, maxpool_words: four int8 lanes per SSUB8 + SEL on
the DSP cores) gives TFLite's max-pooling bytes: against a NumPy transcription of
reference_integer_ops::MaxPool (window clipped to the input, maximum from the lowest int8,
activation clamp) on the host (the portable lanes, -DEP_MAXPOOL_WORDS) and against the byte
loop it replaces, over window sizes, strides, channel counts that are not a multiple of 4,
SAME padding and narrow activation ranges; and, where QEMU and arm-none-eabi-gcc are installed,
the inline asm on the emulated Cortex-M4."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.c_synthetic import graph as syn_graph
from edgeprune.backends.c import build as cbuild
from c_helpers import host_outputs
from edgeprune.backends.c.codegen import generate

if cbuild.host_cc() is None:
    pytest.skip("no host C compiler (cc/gcc/clang)", allow_module_level=True)

# (H, W, C, k, stride, padding, act): LeNet-5's 2x2 / 2 pools, odd channel counts (tail bytes),
# overlapping windows, SAME padding (clipped windows), RELU6-like narrow ranges
SPECS = [(8, 8, 8, 2, 2, "VALID", "NONE"), (9, 9, 6, 3, 3, "VALID", "RELU"),
         (8, 8, 5, 3, 1, "VALID", "NONE"), (7, 6, 13, 3, 2, "SAME", "RELU6"),
         (5, 5, 3, 2, 2, "SAME", "NONE"), (6, 6, 64, 6, 6, "VALID", "RELU"),
         (24, 24, 20, 2, 2, "VALID", "NONE")]


def _graph(spec, seed):
    h, w, c, k, s, pad, act = spec
    g = syn_graph("maxpool", (h, w, c, k, s), seed)
    op = g.ops[0]
    op.options.update(padding=pad, activation=act)
    if pad == "SAME":
        out = g.tensors[op.outputs[0]]
        out.shape = (1, -(-h // s), -(-w // s), c)
    return g


def _reference(x: np.ndarray, spec, lo: int, hi: int) -> np.ndarray:
    h, w, c, k, s, pad, _ = spec
    oh, ow = ((-(-h // s), -(-w // s)) if pad == "SAME" else ((h - k) // s + 1, (w - k) // s + 1))
    pt = max((oh - 1) * s + k - h, 0) // 2 if pad == "SAME" else 0
    pl = max((ow - 1) * s + k - w, 0) // 2 if pad == "SAME" else 0
    x = x.reshape(h, w, c).astype(np.int32)
    y = np.empty((oh, ow, c), np.int32)
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * s - pt, ox * s - pl
            win = x[max(y0, 0):min(y0 + k, h), max(x0, 0):min(x0 + k, w)]
            y[oy, ox] = np.maximum(win.reshape(-1, c).max(0), -128)
    return np.clip(y, lo, hi).astype(np.int8).reshape(-1)


def _outputs(gen, x, work: Path, flags=None):
    return host_outputs(gen, x, work, flags)


def test_word_path_gives_the_reference_bytes(tmp_path):
    for i, spec in enumerate(SPECS):
        gen = generate(_graph(spec, i), "cortex-m4")
        st = gen.program.steps[0]
        lo, hi = st.params["act_min"], st.params["act_max"]
        n_in = int(np.prod(gen.program.input_shape))
        x = np.random.default_rng(i).integers(-128, 128, size=(4, n_in), dtype=np.int8)
        words = _outputs(gen, x, tmp_path / f"w{i}", ["-DEP_MAXPOOL_WORDS=1"])
        loop = _outputs(gen, x, tmp_path / f"b{i}")
        ref = np.stack([_reference(r, spec, lo, hi) for r in x])
        assert np.array_equal(words.reshape(ref.shape), ref), f"{spec}: word path differs"
        assert np.array_equal(loop.reshape(ref.shape), ref), f"{spec}: byte loop differs"
        if spec[-1] != "NONE":
            assert lo > -128 or hi < 127, spec        # the clamp is exercised


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or cbuild.arm_gcc() is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed (make setup installs them)")
def test_emulated_m4_gives_the_reference_bytes(tmp_path):
    """The SSUB8 / SEL inline asm on the emulated Cortex-M4."""
    from benchmarks.c_runtime_calibrate import model_dir
    from edgeprune.verify.c_runtime import verify_c
    for i in (0, 3, 6):
        spec = SPECS[i]
        gen = generate(_graph(spec, i), "cortex-m4")
        st = gen.program.steps[0]
        d = tmp_path / f"m{i}"
        model_dir(gen, d, "cortex-m4")
        x = np.random.default_rng(i).integers(-128, 128, size=(3, int(np.prod(gen.program.input_shape))),
                                              dtype=np.int8)
        _, _, emu = verify_c(d, "cortex-m4", x, trace=False, host_check=False)
        ref = np.stack([_reference(r, spec, st.params["act_min"], st.params["act_max"]) for r in x])
        assert np.array_equal(np.asarray(emu).reshape(ref.shape), ref), spec
