"""ep_conv_dense_dsp (kernels/ep_conv.c: 2 x 2 SMLAD blocks, im2col rows expanded from the input,
filled with the zero point or staged at the edges) and ep_fc_dense_dsp (four-row blocks): the
same output bytes as the plain kernels (bit-exact with TFLM, tests/test_export_c.py) over window
rows that are and are not whole groups of four, stride 1 and 2, SAME and VALID, direct 1 x 1
columns, odd pixel and channel counts and every count of groups mod 4; on the host (portable C)
and, where QEMU and arm-none-eabi-gcc are installed, on the emulated Cortex-M4 (the inline asm).
Also: the Python mirror of the im2col work (costs.conv_dsp_im2col_counts) adds up, and ep_add's asm
(kernels/ep_add.c) gives the host bytes on the emulated M4."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.c_synthetic import graph as syn_graph
from edgeprune.backends.c import build as cbuild
from c_helpers import host_outputs
from edgeprune.backends.c import costs
from edgeprune.backends.c.codegen import generate

if cbuild.host_cc() is None:
    pytest.skip("no host C compiler (cc/gcc/clang)", allow_module_level=True)

# (H, W, Cin, Cout, k, stride, padding): rows of k_w * in_c bytes a multiple of 4 with edge and
# padding rows (in_c 4, 8, 16; stride 1 and 2), rows that are not (in_c 1, 3, 5: staged whole),
# a 4-wide window over one channel (DS-CNN's first layer: whole groups, staged one byte per
# piece at the edges), direct 1 x 1 columns (K / 4 = 1, 2, 3, 5 groups: every remainder mod 4),
# a strided 1 x 1 (not direct), odd pixel counts and odd output channel counts; 3 x 3 windows
# over 3 channels (interior windows packed straight from the input, from the input's first
# byte on: VALID)
CONV = [(6, 6, 16, 6, 3, 1, "SAME"), (7, 5, 8, 5, 3, 2, "SAME"), (5, 7, 4, 4, 3, 1, "VALID"),
        (7, 7, 3, 8, 3, 2, "SAME"), (5, 5, 1, 3, 3, 1, "SAME"), (6, 5, 5, 4, 3, 1, "VALID"),
        (9, 6, 1, 6, 4, 2, "SAME"), (3, 5, 4, 6, 1, 1, "VALID"), (4, 4, 8, 7, 1, 1, "VALID"),
        (3, 3, 12, 4, 1, 1, "VALID"), (5, 3, 20, 9, 1, 1, "VALID"), (6, 6, 8, 8, 1, 2, "VALID"),
        (4, 4, 32, 16, 3, 1, "SAME"), (6, 5, 3, 4, 3, 1, "VALID")]
# (in_n, out_n): in_n % 4 and out_n % 4 non-zero, odd and even group counts
FC = [(37, 10), (8, 5), (64, 16), (12, 3), (132, 9)]


def _graph(kind, spec, seed, act):
    g = syn_graph(kind, spec, seed)
    g.ops[0].options["activation"] = act
    return g


def _outputs(gen, x, work: Path, flags=None):
    return host_outputs(gen, x, work, flags)


def _cases():
    return [("conv", s) for s in CONV] + [("fc", s) for s in FC]


@pytest.mark.parametrize("flags", [None, ["-DEP_RQ_SMMULR=1"]], ids=["portable", "smmulr"])
def test_dsp_kernels_give_the_plain_kernels_bytes(tmp_path, flags):
    for i, (kind, spec) in enumerate(_cases()):
        if flags and i % 2:
            continue           # the SMMULR arithmetic on every other case: it is the same code
        g = _graph(kind, spec, i, "NONE" if i % 3 == 2 else "RELU")
        dsp = generate(g, "cortex-m4", force="dense")
        plain = generate(g, "cortex-m0plus", force="dense")
        assert dsp.layers[0].kernel == f"ep_{kind}_dense_dsp", spec
        assert plain.layers[0].kernel == f"ep_{kind}_dense_plain", spec
        n_in = int(np.prod(dsp.program.input_shape))
        x = np.random.default_rng(i).integers(-128, 128, size=(4, n_in), dtype=np.int8)
        a = _outputs(dsp, x, tmp_path / f"d{i}", flags)
        b = _outputs(plain, x, tmp_path / f"p{i}")
        assert np.array_equal(a, b), f"{kind} {spec}: {int((a != b).sum())} bytes differ"


def test_im2col_counts_add_up():
    for spec in CONV:
        gen = generate(syn_graph("conv", spec, 0), "cortex-m4", force="dense")
        g = gen.program.steps[0].params["g"]
        c = costs.conv_dsp_im2col_counts(g)
        pixels = g["out_h"] * g["out_w"]
        kk = g["k_h"] * g["k_w"] * g["in_c"]
        groups = (kk + 3) // 4
        run = g["k_w"] * g["in_c"]
        if costs.conv_direct(g):
            assert c == {"expand": pixels * groups, "fill": 0, "rows": 0, "copy_bytes": 0,
                         "copy_calls": 0, "win27": 0}, spec
        elif run % 4 == 0:
            # every window row is expanded or filled, once
            assert c["expand"] + c["fill"] == pixels * groups, spec
            assert c["copy_bytes"] == run * c["copy_calls"] // g["k_w"], spec
            if spec[6] == "VALID":
                assert c["fill"] == 0 and c["copy_bytes"] == 0, spec
            else:
                assert c["fill"] > 0 and c["copy_bytes"] > 0, spec
        else:
            # staged whole, except the interior 3 x 3 x 3 windows
            staged = pixels - c["win27"]
            assert (c["win27"] > 0) == costs.conv_win27(g), spec
            assert c["expand"] == staged * groups and c["copy_bytes"] == staged * kk, spec
            assert c["copy_calls"] >= staged * g["k_h"], spec


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or cbuild.arm_gcc() is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed (make setup installs them)")
def test_emulated_m4_gives_the_host_bytes(tmp_path):
    """The inline asm (2 x 2 blocks with 1, 2 and 4 groups per step, four-row fc blocks) on the
    emulated Cortex-M4."""
    from benchmarks.c_runtime_calibrate import model_dir
    from edgeprune.verify.c_runtime import verify_c
    cases = [("conv", (6, 6, 16, 6, 3, 1, "SAME"), "RELU"), ("conv", (7, 7, 3, 8, 3, 2, "SAME"), "NONE"),
             ("conv", (5, 3, 20, 9, 1, 1, "VALID"), "RELU"), ("fc", (37, 10), "RELU")]
    for i, (kind, spec, act) in enumerate(cases):
        gen = generate(_graph(kind, spec, i, act), "cortex-m4", force="dense")
        d = tmp_path / f"m{i}"
        model_dir(gen, d, "cortex-m4")
        x = np.random.default_rng(i).integers(-128, 128, size=(3, int(np.prod(gen.program.input_shape))),
                                              dtype=np.int8)
        _, _, emu = verify_c(d, "cortex-m4", x, trace=False, host_check=False)
        ref = _outputs(gen, x, tmp_path / f"h{i}")
        assert np.array_equal(np.asarray(emu).reshape(ref.shape), ref), (kind, spec)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or cbuild.arm_gcc() is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed (make setup installs them)")
def test_emulated_m4_add_gives_the_host_bytes(tmp_path):
    """ep_add's asm (two elements per pass, kernels/ep_add.c) on the emulated Cortex-M4: no
    activation (act_min -128, SSAT only) over an even count, RELU (act_min above -128) over an
    odd count (the last element in C)."""
    from benchmarks.c_runtime_calibrate import model_dir
    from edgeprune.verify.c_runtime import verify_c
    for i, (spec, act) in enumerate([((9, 7, 16), "NONE"), ((5, 5, 13), "RELU")]):
        g = syn_graph("add", spec, i)
        g.ops[1].options["activation"] = act
        gen = generate(g, "cortex-m4")
        assert gen.program.steps[-1].kind == "add"
        d = tmp_path / f"m{i}"
        model_dir(gen, d, "cortex-m4")
        x = np.random.default_rng(i).integers(-128, 128, size=(3, int(np.prod(gen.program.input_shape))),
                                              dtype=np.int8)
        _, _, emu = verify_c(d, "cortex-m4", x, trace=False, host_check=False)
        ref = _outputs(gen, x, tmp_path / f"h{i}")
        assert np.array_equal(np.asarray(emu).reshape(ref.shape), ref), (spec, act)
