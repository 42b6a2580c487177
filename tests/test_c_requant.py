"""ep_rq_apply (one SMLAL from a precomputed per-channel record, kernels/ep_common.h) gives the
same bytes as ep_requantize_{double,single} (TFLite's MultiplyByQuantizedMultiplier) for every
shift it is used with (-31 .. 0) and every accumulator below 2^30; quant.requantize (the Python
used for ADD's tables) agrees with both; the generator only enables the records where they hold.
Host C compiler only."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeprune.backends.c import build as cbuild
from edgeprune.backends.c import quant

if cbuild.host_cc() is None:
    pytest.skip("no host C compiler (cc/gcc/clang)", allow_module_level=True)

KDIR = Path(__file__).resolve().parent.parent / "edgeprune" / "backends" / "c" / "kernels"
LIM = quant.RQ_ACC_LIMIT


def _cases(seed: int = 0):
    rng = np.random.default_rng(seed)
    ms = [1 << 30, (1 << 30) + 1, (1 << 31) - 1, 0] + [int(v) for v in rng.integers(1 << 30, 1 << 31, 6)]
    xs = [0, 1, -1, 2, -2, 3, -3, LIM - 1, -(LIM - 1), -LIM + 1]
    cases = []
    for s in range(-31, 1):
        e = -s
        # around every rounding boundary of the right shift: x * m near k * 2^(31+e) +- half
        for m in ms:
            for x in xs:
                cases.append((x, m, s))
            for _ in range(40):
                x = int(rng.integers(-LIM + 1, LIM))
                cases.append((x >> int(rng.integers(0, 30)), m, s))
            if m:
                for k in (-3, -1, 1, 2, 5):
                    for half in (0, 1):
                        target = (2 * k + half) << (30 + e) if e else (2 * k + half) << 30
                        x0 = target // m
                        for d in (-1, 0, 1):
                            if abs(x0 + d) < LIM:
                                cases.append((x0 + d, m, s))
    return cases


def _run(tmp_path, cases, flags=()):
    (tmp_path / "ep_config.h").write_text("")
    (tmp_path / "t.c").write_text(
        '#include <stdio.h>\n#include "ep_common.h"\nint main(void){ long x, m, s, r, w;\n'
        ' while (scanf("%ld %ld %ld %ld %ld", &x, &m, &s, &r, &w) == 5) {\n'
        '  const ep_rq rd = {(int32_t)m, (int32_t)r, (int32_t)w};\n'
        '  printf("%ld %ld %ld\\n", (long)ep_requantize_double((int32_t)x, (int32_t)m, (int32_t)s),'
        ' (long)ep_rq_apply(&rd, (int32_t)x, 0), (long)ep_requantize_single((int32_t)x, (int32_t)m,'
        ' (int32_t)s));\n'
        '  } return 0; }\n')
    exe = tmp_path / "t"
    subprocess.run([cbuild.host_cc(), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *flags, "-I",
                    str(tmp_path), "-I", str(KDIR), "-o", str(exe), str(tmp_path / "t.c")], check=True)
    return exe


def test_rq_records_match_both_roundings(tmp_path):
    cases = _cases()
    assert len(cases) > 10000
    m = np.array([c[1] for c in cases])
    s = np.array([c[2] for c in cases])
    rd = quant.rq_records(m, s, single=False)
    rs = quant.rq_records(m, s, single=True)
    exe = _run(tmp_path, cases)
    lines = [f"{x} {mm} {ss} {r[1]} {r[2]}" for (x, mm, ss), r in zip(cases, rd)]
    out = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True, text=True,
                         check=True).stdout.split("\n")
    got = [tuple(map(int, l.split())) for l in out if l]
    assert len(got) == len(cases)
    bad = [(c, g) for c, g in zip(cases, got) if g[0] != g[1]]
    assert not bad, f"double rounding: {len(bad)} mismatches, e.g. {bad[:3]}"
    # single rounding: same program, records in their single-rounding encoding
    (tmp_path / "t.c").write_text((tmp_path / "t.c").read_text().replace(
        "ep_rq_apply(&rd, (int32_t)x, 0)", "ep_rq_apply(&rd, (int32_t)x, 1)"))
    exe = _run2(tmp_path)
    lines = [f"{x} {mm} {ss} {r[1]} {r[2]}" for (x, mm, ss), r in zip(cases, rs)]
    out = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True, text=True,
                         check=True).stdout.split("\n")
    got1 = [tuple(map(int, l.split())) for l in out if l]
    bad = [(c, g) for c, g in zip(cases, got1) if g[2] != g[1]]
    assert not bad, f"single rounding: {len(bad)} mismatches, e.g. {bad[:3]}"
    # the Python arithmetic (ADD's tables) is the C arithmetic
    idx = np.random.default_rng(1).choice(len(cases), 3000, replace=False)
    for i in idx:
        x, mm, ss = cases[i]
        assert quant.requantize(x, mm, ss, False) == got[i][0]
        assert quant.requantize(x, mm, ss, True) == got1[i][2]


def test_smmulr_records_match_double_rounding(tmp_path):
    """The DSP cores' ep_rq_apply (SMMULR of 2x, the sign correction from the product's sign;
    compiled here in portable C with EP_RQ_SMMULR) against ep_requantize_double."""
    cases = _cases(2)
    rd = quant.rq_records(np.array([c[1] for c in cases]), np.array([c[2] for c in cases]),
                          single=False)
    exe = _run(tmp_path, cases, ["-DEP_RQ_SMMULR=1"])
    lines = [f"{x} {mm} {ss} {r[1]} {r[2]}" for (x, mm, ss), r in zip(cases, rd)]
    out = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True, text=True,
                         check=True).stdout.split("\n")
    got = [tuple(map(int, l.split())) for l in out if l]
    assert len(got) == len(cases) > 10000
    bad = [(c, g) for c, g in zip(cases, got) if g[0] != g[1]]
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:3]}"


def _run2(tmp_path):
    exe = tmp_path / "t1"
    subprocess.run([cbuild.host_cc(), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                    str(tmp_path), "-I", str(KDIR), "-o", str(exe), str(tmp_path / "t.c")], check=True)
    return exe


def test_rq_records_refuse_left_shifts():
    with pytest.raises(ValueError):
        quant.rq_records(np.array([1 << 30]), np.array([1]), single=False)


def test_python_requantize_left_shift_wraps_like_c():
    # shift > 0: x << shift wraps in int32 before the multiply (TFLite's x * (1 << shift))
    x, m = (1 << 29) + 5, (1 << 30) + 12345
    wrapped = quant._wrap32(x << 3)
    assert quant.requantize(x, m, 3, False) == quant.requantize(wrapped, m, 0, False)


def test_generator_enables_records_only_within_their_range():
    from edgeprune.backends.c.codegen import acc_bound, rq_fast
    from edgeprune.backends.c.lower import Program, Step, Weighted

    def prog(w, bias, shift):
        wq = Weighted(np.array(w, dtype=np.int8), np.array(bias, dtype=np.int64),
                      np.array([1 << 30] * len(bias)), np.array(shift), 0, 0, -128, 127)
        st = Step(0, "fc", "fc", "FULLY_CONNECTED", ["in"], "out", weighted=wq)
        return Program([st], {}, "in", "out", (2,), (len(bias),), 1.0, 0, 1.0, 0), st

    p, st = prog([[127, -128], [1, 1]], [10, -20], [-3, -1])
    assert acc_bound(st) == 10 + 128 * 255
    assert rq_fast(p)
    assert not rq_fast(prog([[1, 1]], [5], [1])[0])                  # a left shift
    assert not rq_fast(prog([[1, 1]], [LIM - 200], [-2])[0])         # accumulators may reach 2^30


def test_records_and_tables_give_the_bytes_of_the_generic_arithmetic(tmp_path, monkeypatch):
    """A whole model (ResNet-8's graph, synthetic quantization: conv, ADD, pooling, fc) built
    three ways on the host: with ep_rq records + ADD's fast output path + the SSAT clamp (what
    the generator picks), with the generic requantization everywhere (records disabled), and
    without the act_max = 127 clamp shortcut: the same output bytes. (The host compiles the C
    paths; the Armv7E-M inline asm of the same functions, ASR by register and SSAT, is checked
    on the emulated cores by tests/test_verify_qemu.py and benchmarks/c_runtime_qemu.py.)"""
    import re
    from edgeprune.backends.c import codegen
    from edgeprune.cost.mcu_c import c_graph
    from edgeprune.zoo_graphs import cached_graph
    g = cached_graph("resnet8")
    if g is None:
        pytest.skip("no cached zoo graph for resnet8")
    rng = np.random.default_rng(0)

    def build(tag, files):
        d = tmp_path / tag
        d.mkdir()
        for k, v in files.items():
            (d / k).write_text(v)
        return cbuild.build_host(d, tmp_path / f"b-{tag}")

    gen = codegen.generate(c_graph(g), "cortex-m4")
    cfg = gen.files["ep_config.h"]
    assert "#define EP_RQ_FAST 1" in cfg and "#define EP_ACT_MAX_127 1" in cfg
    assert re.search(r"\{L\d+_t1, L\d+_t2, \{-?\d+, -?\d+, -?\d+\}, 1,", gen.files["edgeprune_model.c"])
    n_in = int(np.prod(gen.program.input_shape))
    n_out = int(np.prod(gen.program.output_shape))
    x = rng.integers(-128, 128, size=(6, n_in), dtype=np.int8)
    fast = cbuild.run_host(build("fast", gen.files), x, n_out)
    monkeypatch.setattr(codegen, "RQ_ACC_LIMIT", 0)
    monkeypatch.setattr(codegen, "rq_fast", lambda prog: False)
    slow_gen = codegen.generate(c_graph(g), "cortex-m4")
    assert "#define EP_RQ_FAST 0" in slow_gen.files["ep_config.h"]
    assert re.search(r"\{L\d+_t1, L\d+_t2, \{0, 0, 0\}, 0,", slow_gen.files["edgeprune_model.c"])
    slow = cbuild.run_host(build("slow", slow_gen.files), x, n_out)
    no_ssat = dict(gen.files, **{"ep_config.h": cfg.replace("#define EP_ACT_MAX_127 1",
                                                             "#define EP_ACT_MAX_127 0")})
    plain_clamp = cbuild.run_host(build("clamp", no_ssat), x, n_out)
    assert len(np.unique(fast)) > 1
    assert np.array_equal(fast, slow) and np.array_equal(fast, plain_clamp)
