"""ep_dwconv_dsp's 3x3 path (kernels/ep_dwconv.c: channel planes, SMLAD / SMLABB on int16
pairs, SMMULR requantization): the same output bytes as the plain depthwise kernel (itself
bit-exact with TFLM, tests/test_export_c.py) over strides, paddings, odd widths and channel
counts; on the host (portable C, and the SMMULR arithmetic of the Armv7E-M path compiled in C)
and, where QEMU and arm-none-eabi-gcc are installed, on the emulated Cortex-M4 (the inline asm).
Also: the Python mirror of the kernel's geometry (scratch size, cost terms) agrees with the C,
and the generator drops the output-over-input overlap for this path."""
from __future__ import annotations

import shutil
import subprocess
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

KDIR = Path(__file__).resolve().parent.parent / "edgeprune" / "backends" / "c" / "kernels"
# (H, W, C, k, stride, padding): stride 1 and 2, SAME and VALID, odd and even output widths,
# channel counts not a multiple of 4, a 1x1 input, and a 5x5 window (the other path)
SPECS = [(8, 8, 8, 3, 1, "SAME"), (7, 5, 7, 3, 1, "VALID"), (9, 6, 13, 3, 1, "SAME"),
         (8, 8, 12, 3, 2, "SAME"), (9, 9, 6, 3, 2, "VALID"), (10, 3, 16, 3, 2, "VALID"),
         (1, 1, 8, 3, 1, "SAME"), (5, 9, 8, 3, 2, "SAME"), (8, 8, 8, 5, 1, "SAME")]


def _graph(spec, seed, act="RELU"):
    """The synthetic depthwise layer (output zero point 2: RELU clamps at 2); act NONE: the
    full int8 range (the requantization without a lower bound)."""
    g = syn_graph("dwconv", spec, seed)
    g.ops[0].options["activation"] = act
    return g


def _outputs(gen, x, work: Path, flags=None):
    return host_outputs(gen, x, work, flags)


@pytest.mark.parametrize("flags", [None, ["-DEP_RQ_SMMULR=1"]], ids=["portable", "smmulr"])
def test_dsp_path_gives_the_plain_kernels_bytes(tmp_path, flags):
    for i, spec in enumerate(SPECS):
        g = _graph(spec, i, "NONE" if i % 3 == 2 else "RELU")
        dsp = generate(g, "cortex-m4", force="dense")
        plain = generate(g, "cortex-m0plus", force="dense")
        assert dsp.layers[0].kernel == "ep_dwconv_dsp" and plain.layers[0].kernel == "ep_dwconv_plain"
        n_in = int(np.prod(dsp.program.input_shape))
        x = np.random.default_rng(i).integers(-128, 128, size=(6, n_in), dtype=np.int8)
        a = _outputs(dsp, x, tmp_path / f"d{i}", flags)
        b = _outputs(plain, x, tmp_path / f"p{i}")
        assert np.array_equal(a, b), f"{spec}: {int((a != b).sum())} bytes differ"


def test_geometry_scratch_and_overlap(tmp_path):
    # the C chunk rule (EP_DW3_CHUNK) and the Python one agree
    gs = [{"out_w": w, "out_h": h} for w, h in ((5, 25), (48, 48), (3, 3), (600, 2), (256, 7), (1, 1))]
    prog = "#include <stdio.h>\n#include \"ep_kernels.h\"\nint main(void){ ep_window g;\n"
    for d in gs:
        prog += f" g.out_w = {d['out_w']}; g.out_h = {d['out_h']}; printf(\"%d\\n\", EP_DW3_CHUNK(&g));\n"
    prog += " return 0; }\n"
    work = tmp_path
    (work / "ep_config.h").write_text("")
    (work / "t.c").write_text(prog)
    subprocess.run([cbuild.host_cc(), "-std=c99", "-I", str(work), "-I", str(KDIR), "-o",
                    str(work / "t"), str(work / "t.c")], check=True)
    got = [int(v) for v in subprocess.run([str(work / "t")], capture_output=True, text=True,
                                          check=True).stdout.split()]
    assert got == [costs.dwconv_chunk(d) for d in gs]
    # a 3x3 layer runs the 3x3 path with its scratch, and its output does not overlay its input
    gen = generate(syn_graph("dwconv", (8, 8, 8, 3, 1, "SAME"), 0), "cortex-m4", force="dense")
    st = gen.program.steps[0]
    assert st.scratch and gen.program.buffers[st.scratch].size == costs.dwconv_scratch(st.params["g"])
    assert st.overlaps == []
    key, terms = costs.step_terms(st, st.params["encoding"])
    assert key == "dwconv-3x3" and terms["pair_steps"] == 8 * 8 * 4 and terms["single_steps"] == 0
    # a 5x5 layer keeps the other path, without scratch
    gen5 = generate(syn_graph("dwconv", (8, 8, 8, 5, 1, "SAME"), 0), "cortex-m4", force="dense")
    st5 = gen5.program.steps[0]
    assert not st5.scratch and costs.step_terms(st5, st5.params["encoding"])[0] == "dwconv-dsp"


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or cbuild.arm_gcc() is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed (make setup installs them)")
def test_emulated_m4_gives_the_host_bytes(tmp_path):
    """The inline asm (pixel pairs, requantization loop) on the emulated Cortex-M4."""
    from benchmarks.c_runtime_calibrate import model_dir
    from edgeprune.verify.c_runtime import verify_c
    cases = [((9, 6, 13, 3, 1, "SAME"), "RELU"), ((8, 8, 12, 3, 2, "SAME"), "RELU"),
             ((7, 5, 8, 3, 1, "VALID"), "NONE")]
    for i, (spec, act) in enumerate(cases):
        gen = generate(_graph(spec, i, act), "cortex-m4", force="dense")
        d = tmp_path / f"m{i}"
        model_dir(gen, d, "cortex-m4")
        x = np.random.default_rng(i).integers(-128, 128, size=(3, int(np.prod(gen.program.input_shape))),
                                              dtype=np.int8)
        _, _, emu = verify_c(d, "cortex-m4", x, trace=False, host_check=False)
        ref = _outputs(gen, x, tmp_path / f"h{i}")
        assert np.array_equal(np.asarray(emu).reshape(ref.shape), ref), spec
