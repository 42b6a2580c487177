"""`edgeprune verify OUT --qemu CORE` on edgeprune-c exports: a small model using every kernel
and LeNet-5 (untrained weights, dense and sparse), built for the emulated Cortex-M4
(mps2-an386), run on real Fashion-MNIST images; the output bytes must be identical to LiteRT's
(reference kernels) resp. TFLM's, the instruction counts exact (the -icount timer and the
execution trace agree) and the sizes consistent with the export's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeprune.data import FASHION_MNIST_DIR  # noqa: E402
from edgeprune.verify import boards  # noqa: E402

for tool in ("qemu-system-arm", "arm-none-eabi-gcc"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make setup installs it)", allow_module_level=True)
pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
M4 = "stm32l4r5-m4"


def _fashion(n: int) -> np.ndarray:
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} absent (Debian package dataset-fashion-mnist)")
    from edgeprune.data import load_dataset
    return load_dataset("fashion-mnist").x_test[:n]


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """The Small model of test_export_c (every kernel), exported with TFLM rounding; inputs:
    Fashion-MNIST images cropped and 2x2-averaged to 12 x 12, grey over the 3 channels."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_export_c import Small, _randomize_bn
    from edgeprune.export.c import export_c
    torch.manual_seed(1)
    model = _randomize_bn(Small(), 1)
    out = tmp_path_factory.mktemp("small") / "c"
    export_c(model, M4, out, None, n_eval=16)
    img = _fashion(6)[:, 2:26, 2:26].astype(np.float32) / 255.0
    img = img.reshape(6, 12, 2, 12, 2).mean(axis=(2, 4))
    x = np.repeat(img[:, :, :, None], 3, axis=3)            # NHWC
    return out, x


@pytest.fixture(scope="module")
def lenet_exports(tmp_path_factory):
    """LeNet-5 with seeded untrained weights, 90 % of them zeroed, exported dense and sparse
    with LiteRT rounding (calibrated on Fashion-MNIST)."""
    _fashion(1)
    from edgeprune.export.c import export_c
    from edgeprune.models import build
    torch.manual_seed(0)
    model = build("lenet5").eval()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "weight") and m.weight is not None and m.weight.dim() > 1:
                w = m.weight
                thr = w.abs().flatten().kthvalue(int(0.9 * w.numel())).values
                w.mul_((w.abs() > thr).float())
    base = tmp_path_factory.mktemp("lenet")
    outs = {}
    for variant in ("dense", "sparse"):
        outs[variant] = base / variant
        export_c(model, M4, outs[variant], "fashion-mnist", n_eval=8, variant=variant,
                 rounding="litert")
    return outs


def test_small_model_bit_exact_on_m4(small_export):
    from edgeprune.verify.c_runtime import read_export, quantize_inputs, verify_c
    out, x = small_export
    rep = read_export(out)
    res, elf, emu = verify_c(out, "cortex-m4", quantize_inputs(x, rep["io"]))
    assert res["board"] == "mps2-an386"
    assert res["outputs_vs_host"]["tflm"]["identical"], res["outputs_vs_host"]
    assert res["outputs_vs_host"]["host_c"]["identical"]
    assert res["identical"] and res["return_codes_zero"]
    # every kernel ran, and the counts are exact: the timer and the trace agree, per layer too
    assert {"ep_conv_dense_dsp", "ep_dwconv_dsp", "ep_add", "ep_concat", "ep_relu", "ep_maxpool",
            "ep_avgpool", "ep_fc_dense_dsp", "ep_softmax"} <= {l["kernel"] for l in res["layers"]}
    assert res["trace_instructions_equal_icount"]
    assert all(l["trace_instructions_equal_icount"] for l in res["layers"])
    lo, hi = res["instructions_per_invoke_min_max"]       # softmax and clamps depend on data
    assert lo <= res["instructions_per_invoke"] <= hi and hi - lo < 0.002 * hi
    assert 0 <= res["instructions_outside_layers"] < 200
    assert res["cycles_trm"] > res["instructions_per_invoke"] > 1000
    # sizes: the model's objects in the linked image are what the export's cross build measured
    cross = rep["cross"]
    assert res["flash_bytes"] == cross["flash_bytes"]
    assert res["model_sections"]["bss"] == cross["sections"]["bss"]
    # the export's static bound (deepest call chain) holds, up to newlib's memcpy it leaves out
    assert 0 < res["stack_bytes_measured"] <= cross["stack_bytes"] + 64
    assert elf[:4] == b"\x7fELF"


def test_lenet5_dense_and_sparse_identical_to_litert_on_m4(lenet_exports):
    from edgeprune.verify.run import verify_command
    results = {}
    for variant, out in lenet_exports.items():
        vout = out.parent / f"{variant}-verify"
        res = verify_command(out, "cortex-m4", vout, data="fashion-mnist", samples=4,
                             cycles=(variant == "sparse"))
        assert res["outputs_vs_host"]["litert_reference"]["identical"], res["outputs_vs_host"]
        assert res["identical"]
        assert json.loads((vout / "verify.json").read_text())["instructions_per_invoke"] == \
            res["instructions_per_invoke"]
        assert (vout / "firmware.elf").is_file()
        results[variant] = res
    d, s = results["dense"], results["sparse"]
    assert [l["variant"] for l in d["layers"] if l["variant"]] == ["dense"] * 4
    assert [l["variant"] for l in s["layers"] if l["variant"]] == ["sparse"] * 4
    # 90 % zero weights: the sparse kernels execute fewer instructions and store fewer bytes
    # (at 80 % the dense SMLAD kernels, about 1.2 cycles per MAC, run about as fast)
    assert s["instructions_per_invoke"] < d["instructions_per_invoke"]
    assert s["flash_bytes"] < d["flash_bytes"]
    assert "cycles_trm" not in d and s["trace_instructions_equal_icount"]
    for res in results.values():
        fc = [l for l in res["layers"] if l["op"] == "FULLY_CONNECTED"]
        assert len(fc) == 2 and all(l["instructions"] > 0 for l in fc)


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_m0plus_trace_equals_timer_on_several_inputs(tmp_path):
    """The Cortex-M0+ binary on mps2-an385: the whole invoke counted by the execution trace
    (a firmware built with one input) equals the -icount timer's count (a firmware built with
    several). They once differed by one instruction: the harness's loop count was a
    compile-time constant and GCC compiled the call of the invoke differently for 1 and for N
    inputs (firmware.inputs_source)."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_export_c import Small, _randomize_bn
    from edgeprune.export.c import export_c
    from edgeprune.verify.c_runtime import read_export, quantize_inputs, verify_c
    torch.manual_seed(1)
    out = tmp_path / "c"
    export_c(_randomize_bn(Small(), 1), "rp2040-m0plus", out, None, n_eval=4)
    x = np.random.default_rng(0).integers(-128, 128, (3, 12 * 12 * 3)).astype(np.int8)
    res, _, _ = verify_c(out, "cortex-m0plus", quantize_inputs(x, read_export(out)["io"]))
    assert res["board"] == "mps2-an385" and res["identical"]
    assert res["trace_instructions_equal_icount"]
    assert all(l["trace_instructions_equal_icount"] for l in res["layers"])
    assert "ep_conv_dense_plain" in {l["kernel"] for l in res["layers"]}      # no DSP path


def test_m0plus_board_traps_unaligned_loads_as_an_m0plus(tmp_path):
    """mps2-an385 is a Cortex-M3 (Armv7-M: unaligned word loads allowed); for an Armv6-M binary
    the start-up sets CCR.UNALIGN_TRP, so an unaligned load faults there as on a real M0+,
    while the M4 board runs it."""
    from edgeprune.verify import firmware as fw
    from edgeprune.verify.qemu import QemuError, run_icount
    main = ('#include <stdint.h>\n#include "epv_support.h"\n'
            'static uint8_t buf[16] __attribute__((aligned(4)));\nvolatile int off = 1;\n'
            'int main(void) { epv_timer_init(); epv_calibrate();\n'
            '  volatile uint32_t v = *(volatile uint32_t *)(buf + off); (void)v;\n'
            '  epv_print("done", 0, 0); return 0; }\n')
    ran = {}
    for core in ("cortex-m0plus", "cortex-m4"):
        b, d = boards.board_for(core), tmp_path / core
        d.mkdir()
        for name, text in {**fw.support_files(b, 1), "m.c": main}.items():
            (d / name).write_text(text)
        objs = []
        for name in ("epv_startup.c", "epv_support.c", "m.c"):
            fw.compile_c(b, d / name, d / (name + ".o"), ["-O2", "-std=gnu11"], [d])
            objs.append(d / (name + ".o"))
        elf = fw.link(b, objs, d / "f.elf")
        try:
            ran[core] = bool(run_icount(b, elf.path, timeout=60).get("done"))
        except QemuError as e:
            assert "fault" in str(e)
            ran[core] = False
    assert ran == {"cortex-m0plus": False, "cortex-m4": True}


def test_cli_writes_report_and_refuses_to_overwrite(small_export, tmp_path):
    out, x = small_export
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    vout = tmp_path / "v"
    p = _cli("verify", str(out), "--qemu", "cortex-m4", "--inputs", str(tmp_path / "x.npy"),
             "--no-cycles", "--no-layers", "-o", str(vout))
    assert p.returncode == 0, p.stderr
    assert "mps2-an386" in p.stdout and "tflm: identical" in p.stdout
    res = json.loads((vout / "verify.json").read_text())
    assert res["inputs"]["count"] == len(x) and "layers" not in res
    before = (vout / "verify.json").read_bytes()
    p = _cli("verify", str(out), "--qemu", "cortex-m4", "-o", str(vout))
    assert p.returncode == 2 and p.stderr.startswith("edgeprune: error:")
    assert len(p.stderr.strip().splitlines()) == 1
    assert (vout / "verify.json").read_bytes() == before


def test_cores_without_a_board_are_refused(tmp_path):
    with pytest.raises(boards.NoBoardError, match="no QEMU board for cortex-m3"):
        boards.board_for("cortex-m3")
    p = _cli("verify", str(tmp_path), "--qemu", "cortex-m4", "-o", str(tmp_path / "v"))
    assert p.returncode == 2 and "not an 'edgeprune export c' output" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "v").exists()


def test_boards_cover_every_mcu_core():
    from edgeprune.targets import MCU_CORES
    assert {c: b.machine for c, b in boards.BOARDS.items()} == {
        "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500", "cortex-m33": "mps2-an505",
        "cortex-m55": "mps3-an547", "cortex-m0plus": "mps2-an385"}
    assert set(MCU_CORES) == set(boards.BOARDS) and not boards.NO_BOARD
    assert boards.BOARDS["cortex-m0plus"].cflags[0] == "-mcpu=cortex-m0plus"   # Armv6-M binary
    for b in boards.BOARDS.values():
        assert b.ticks_per_instruction > 2          # the rounding n = round(ticks / r) is exact


MVE_ASM = """
.syntax unified
.thumb
.text
.thumb_func
f:
  dlstp.8 lr, r2
1:
  vldrb.u8 q0, [r0], #16
  vmladava.s8 r4, q0, q1
  vpst
  vaddt.i32 q0, q0, q1
  letp lr, 1b
  bx lr
"""


def test_m55_stream_is_decoded_from_the_elf(tmp_path):
    """QEMU 7.2's in_asm (capstone) splits each MVE / low-overhead-loop instruction into a
    `.byte` pair and a bogus 16-bit one; the trace counter re-decodes each block's bytes from
    the ELF with objdump, so the stream has the real instructions (and their count)."""
    from edgeprune.verify.cpi import InAsmParser, elf_instructions, instr_cycles
    src = tmp_path / "t.S"
    src.write_text(MVE_ASM)
    elf = tmp_path / "t.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-nostdlib", "-Ttext=0",
                    "-Wl,-ef", str(src), "-o", str(elf)], check=True, capture_output=True)
    table = elf_instructions(elf, boards.BOARDS["cortex-m55"].disas_arch)
    # the loop body block as QEMU's capstone lists it (bytes right, boundaries wrong)
    qemu_lines = ["IN: ", "0x00000004:  ecb0 1e10  ldc      p14, c1, [r0], #0x40",
                  "0x00000008:  eef0       .byte    0xf0, 0xee",
                  "0x0000000a:  0f20       lsrs     r0, r4, #0x1c",
                  "0x0000000c:  fe71       .byte    0x71, 0xfe",
                  "0x0000000e:  0f4d       lsrs     r5, r1, #0x1d",
                  "0x00000010:  ef20 0842  vadd.i32 q0, q0, q1",
                  "0x00000014:  f01f       .byte    0x1f, 0xf0",
                  "0x00000016:  c009       stm      r0!, {r0, r3}", ""]
    for decode, n in ((None, 8), (table, 5)):
        p = InAsmParser(decode)
        for line in qemu_lines:
            p.feed(line)
        p.flush()
        assert len(p.blocks[4]) == n
    block = InAsmParser(table)
    for line in qemu_lines:
        block.feed(line)
    block.flush()
    mn = [m for _, _, m, _ in block.blocks[4]]
    assert mn[0].startswith("vldrb") and mn[1].startswith("vmlava")   # objdump names vmladava so and mn[2] == "vpst"
    assert mn[-1] == "letp" and sum(s for _, s, _, _ in block.blocks[4]) == 0x18 - 4
    assert instr_cycles("cortex-m55", mn[0], "", False, False) == 2     # one MVE instruction
