"""The edgeprune-c runtime (`edgeprune export c`): generated C bit-exact with TFLM and LiteRT on
the host, for a small model exercising every kernel and for LeNet-5 (dense, sparse, clustered),
warning-free cross-compilation for Cortex-M4 and M0+, refusal of unsupported ops,
determinism, the planner's overlap rules and the requantization arithmetic.

Each model is converted to int8 once per module (TensorFlow import and conversion are slow).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeprune.backends.c import build as cbuild  # noqa: E402
from edgeprune.backends.c import planner, quant  # noqa: E402
from edgeprune.backends.c.codegen import generate  # noqa: E402
from edgeprune.backends.c.ir import CModelError, read_tflite  # noqa: E402
from edgeprune.data import FASHION_MNIST_DIR  # noqa: E402
from edgeprune.models import build  # noqa: E402

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tensorflow")
if cbuild.host_cc() is None:
    pytest.skip("no host C compiler (cc/gcc/clang)", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
M4 = "stm32l4r5-m4"
HAVE_ARM = cbuild.arm_gcc() is not None


class Small(nn.Module):
    """Every kernel of the runtime in a few layers: conv + BN + ReLU, depthwise, residual ADD,
    concatenation, stand-alone ReLU, explicit ZeroPad2d + strided conv (PAD folded), max pool,
    global average pool, flatten, fully connected, softmax."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.relu2 = nn.ReLU()
        self.side = nn.Conv2d(8, 4, 1)
        self.relu3 = nn.ReLU()
        self.pad = nn.ZeroPad2d(1)        # not TFLite SAME for stride 2: an explicit PAD
        self.conv2 = nn.Conv2d(12, 16, 3, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        a = self.relu1(self.bn1(self.conv1(x)))
        b = self.relu2(self.dw(a)) + a
        c = self.relu3(torch.cat([b, self.side(b)], dim=1))
        d = self.pool(self.conv2(self.pad(c)))
        return self.softmax(self.fc(self.flatten(self.gap(d))))


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def _convert(model, cal):
    """(int8 flatbuffer, layer names per op) as export_c converts."""
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.export.c import quantize
    from edgeprune.export.tflm import match_ops
    from edgeprune.graph import extract
    graph = extract(model)
    plan = tflm_plan.lower(graph)
    plain, _ = quantize(model, graph, plan, cal)
    names = [n for n, _ in sorted(match_ops(plain, plan), key=lambda p: p[1])]
    return plain, names


def _run_c(files, x_int8, out_bytes, tmp: Path):
    src = tmp / "src"
    src.mkdir(parents=True)
    for name, text in files.items():
        (src / name).write_text(text)
    hb = cbuild.build_host(src, tmp / "host", ["-Werror"])
    return cbuild.run_host(hb, x_int8, out_bytes), src


def _reference(plain, x_int8, rounding):
    from edgeprune.export.tflm import run_litert, run_tflm
    if rounding == "tflm":
        out, _, _ = run_tflm(plain, x_int8)
    else:
        out = run_litert(plain, x_int8)
    return out.reshape(len(x_int8), -1)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = _randomize_bn(Small())
    rng = np.random.default_rng(0)
    cal = rng.random((64,) + Small.input_shape, dtype=np.float32)
    plain, names = _convert(model, cal)
    x = rng.integers(-128, 128, size=(48, 12, 12, 3), dtype=np.int8)
    return model, plain, names, x


def test_small_model_uses_every_kernel(small):
    _, plain, names, _ = small
    gen = generate(read_tflite(plain, names), "cortex-m4")
    kinds = {st.kind for st in gen.program.steps}
    assert kinds == {"conv", "dwconv", "add", "concat", "relu", "maxpool", "avgpool", "fc",
                     "softmax"}
    conv2 = [st for st in gen.program.steps if st.layer == "conv2"][0]
    assert conv2.folded == ["PAD"]                     # the PAD op folded into the conv
    assert conv2.params["g"]["pad_top"] == 1 and conv2.params["g"]["out_h"] == 6
    assert "PAD" in [op.opcode for op in read_tflite(plain, names).ops]
    # Never worse than TFLM's greedy plan of the same buffers (here the peak is the concat,
    # whose inputs and output must coexist), and the plan is legal.
    assert gen.arena_bytes <= gen.arena_bytes_tflm_greedy
    planner.verify(gen.program)


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m0plus"])
@pytest.mark.parametrize("rounding", ["tflm", "litert"])
def test_small_model_bit_exact(small, tmp_path, core, rounding):
    _, plain, names, x = small
    gen = generate(read_tflite(plain, names), core, rounding=rounding)
    ref = _reference(plain, x, rounding)
    out, _ = _run_c(gen.files, x, ref.shape[1], tmp_path)
    assert np.array_equal(out, ref), f"{int((out != ref).sum())} outputs differ"


def test_runtimes_differ_where_rounding_says(small):
    """LiteRT rounds its fully-connected requantization once, TFLM twice: on the same int8
    model they disagree somewhere, which is why --rounding exists (checked, not assumed)."""
    _, plain, _, _ = small
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(400, 12, 12, 3), dtype=np.int8)
    a, b = _reference(plain, x, "tflm"), _reference(plain, x, "litert")
    assert np.abs(a.astype(int) - b).max() <= 1


# --------------------------------------------------------------------------------------------
# LeNet-5, trained briefly on Fashion-MNIST, pruned and clustered

def _prune_and_cluster(model: nn.Module, keep: float = 0.1, values: int = 7) -> nn.Module:
    """Keep the largest `keep` fraction of each layer's weights, then snap the survivors to
    `values` per-layer centroids (quantiles): sparse and 3-bit clustered (with zero) at once."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                w = m.weight
                thr = w.abs().flatten().kthvalue(int((1 - keep) * w.numel())).values
                mask = w.abs() > thr
                nz = w[mask]
                cents = torch.quantile(nz, torch.linspace(0.05, 0.95, values))
                snapped = cents[(nz[:, None] - cents[None, :]).abs().argmin(1)]
                w.zero_()
                w[mask] = snapped
    return model


@pytest.fixture(scope="module")
def lenet():
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} absent (Debian package dataset-fashion-mnist)")
    from edgeprune.data import load_dataset, to_tensors
    from edgeprune.export.keras_mirror import to_nhwc
    from edgeprune.export.tflm import quantize_input
    from edgeprune.train import TrainConfig, Trainer
    ds = load_dataset("fashion-mnist").subset(n_train=4000, n_test=300)
    torch.manual_seed(0)   # before the model: torch 2.13 seeds its generator at random on start-up
    model = build("lenet5")
    Trainer(model, ds, TrainConfig(epochs=1, batch_size=64, max_steps_per_epoch=40,
                                   progress=False)).fit()
    model = _prune_and_cluster(model.eval())
    xtr, _ = to_tensors(ds.x_train[:256], ds.y_train[:256])
    plain, names = _convert(model, xtr.numpy())
    xte, yte = to_tensors(ds.x_test, ds.y_test)
    with torch.no_grad():
        acc_float = float((model(xte).argmax(1).numpy() == yte.numpy()).mean())
    x = quantize_input(to_nhwc(xte.numpy()), 1 / 255, -128)
    return plain, names, x, yte.numpy(), acc_float


@pytest.mark.parametrize("variant", ["dense", "sparse", "clustered"])
def test_lenet5_variants_bit_exact_with_litert(lenet, tmp_path, variant):
    plain, names, x, labels, acc_float = lenet
    gen = generate(read_tflite(plain, names), "cortex-m4", force=variant, rounding="litert")
    weighted = [l for l in gen.layers]
    assert [l.variant for l in weighted] == [variant] * 4
    ref = _reference(plain, x, "litert")
    out, _ = _run_c(gen.files, x, 10, tmp_path)
    assert np.array_equal(out, ref), f"{int((out != ref).sum())} outputs differ from LiteRT"
    acc = float((out.argmax(1) == labels).mean())
    # real test images; briefly trained, then pruned and clustered without fine-tuning
    assert acc_float > 0.3 and acc >= acc_float - 0.02, (acc, acc_float)


@pytest.mark.parametrize("variant,core", [("dense", "cortex-m4"), ("sparse", "cortex-m0plus"),
                                          ("clustered", "cortex-m0plus")])
def test_lenet5_bit_exact_with_tflm(lenet, tmp_path, variant, core):
    plain, names, x, _, _ = lenet
    gen = generate(read_tflite(plain, names), core, force=variant, rounding="tflm")
    ref = _reference(plain, x, "tflm")
    out, _ = _run_c(gen.files, x, 10, tmp_path)
    assert np.array_equal(out, ref), f"{int((out != ref).sum())} outputs differ from TFLM"


def test_lenet5_sparse_and_clustered_weights_pay(lenet):
    """10 % of the weights kept, 3-bit (7 values + zero) per layer: the sparse encoding stores
    3 bytes per kept weight plus 2 per row, the clustered one 3.2 bits per weight plus 8
    codebook bytes per channel; and the cycle objective picks the sparse kernels for the large
    layers."""
    plain, names, _, _, _ = lenet
    g = read_tflite(plain, names)
    dense = generate(g, "cortex-m4", force="dense")
    sparse = generate(g, "cortex-m4", force="sparse")
    clus = generate(g, "cortex-m4", force="clustered")
    wd = sum(l.weight_bytes for l in dense.layers)
    assert sum(l.weight_bytes for l in sparse.layers) <= 0.35 * wd
    assert sum(l.weight_bytes for l in clus.layers) <= 0.45 * wd
    assert all(l.alternatives["clustered"]["weight_bytes"] for l in clus.layers)
    auto = generate(g, "cortex-m4", objective="cycles")
    by_layer = {l.layer: l.variant for l in auto.layers}
    assert by_layer["fc1"] == "sparse"
    flash = generate(g, "cortex-m4", objective="flash")
    assert sum(l.weight_bytes for l in flash.layers) <= min(
        sum(l.weight_bytes for l in x.layers) for x in (dense, sparse, clus))


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc absent (Debian gcc-arm-none-eabi)")
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m0plus"])
def test_cross_compiles_warning_free(small, lenet, tmp_path, core):
    """-Wall -Wextra -Werror with arm-none-eabi-gcc -O2 for every kernel the two models use."""
    builds = []
    for i, (plain, names, variant) in enumerate([(small[1], small[2], None),
                                                 (lenet[0], lenet[1], "sparse"),
                                                 (lenet[0], lenet[1], "clustered")]):
        gen = generate(read_tflite(plain, names), core, force=variant)
        src = tmp_path / f"m{i}"
        src.mkdir()
        for name, text in gen.files.items():
            (src / name).write_text(text)
        cb = cbuild.cross_compile(src, core, tmp_path / f"o{i}", ["-Werror"])
        assert cb.warnings.strip() == ""
        assert cb.sections["bss"] == (gen.arena_bytes + 3) // 4 * 4     # the arena is the bss
        assert cb.sections["data"] == 0
        assert cb.stack_bytes and 0 < cb.stack_bytes < 1024
        builds.append(cb)
    assert builds[0].flash_bytes > 0


# --------------------------------------------------------------------------------------------
# The exporter: end to end, determinism, refusals

def test_export_c_end_to_end_and_deterministic(tmp_path):
    from edgeprune.export.c import export_c
    from edgeprune.deploy import Deployment
    torch.manual_seed(3)
    model = _randomize_bn(Small(), 3)
    r1 = export_c(model, Deployment.for_target(M4), tmp_path / "a", None, n_eval=24)
    r2 = export_c(model, M4, tmp_path / "b", None, n_eval=24)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    for f in ("edgeprune_model.c", "edgeprune_model.h", "ep_config.h", "edgeprune_c.mk",
              "README.md", "report.json", "model.tflite"):
        assert (tmp_path / "a" / f).is_file(), f
    assert r1["verification"]["identical_vs_tflm"]
    assert r1["arena_bytes"] == r2["arena_bytes"] <= r1["arena_bytes_tflm_greedy_plan"]
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert rep["layers"] == r1["layers"]
    if HAVE_ARM:
        assert r1["cross"]["flash_bytes"] > rep["weight_bytes"]
        assert r1["cross"]["ram_bytes"] >= r1["arena_bytes"]
        assert r1["fits_target"]["flash_fits"] and r1["fits_target"]["ram_fits"]


def test_unsupported_op_is_refused_naming_it(tmp_path):
    from edgeprune.export.c import export_c

    class WithSigmoid(nn.Module):
        input_shape = (1, 8, 8)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.act = nn.Sigmoid()

        def forward(self, x):
            return self.act(self.conv(x))
    with pytest.raises(CModelError, match=r"layer 'act' \(act\): op sigmoid is not supported "
                                          r"by the C runtime \(LOGISTIC has no"):
        export_c(WithSigmoid().eval(), M4, tmp_path / "out", None, n_eval=4)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_fpga_target_in_one_line(tmp_path):
    out = tmp_path / "o"
    p = subprocess.run([sys.executable, "-m", "edgeprune", "export", "c", "lenet5", "--target",
                        "pynq-z2", "-o", str(out)], capture_output=True, text=True, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 2
    assert p.stderr.strip().startswith("edgeprune: error:") and len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Arithmetic and planner units

def _mbqm_double(x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    a = np.int64(np.int32(np.uint32((x << left) & 0xFFFFFFFF)))   # wraps like the reference
    ab = int(a) * m
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    v = _trunc_div(ab + nudge, 1 << 31)
    mask = (1 << right) - 1
    rem = v & mask
    thr = (mask >> 1) + (1 if v < 0 else 0)
    return (v >> right) + (1 if rem > thr else 0)


def _trunc_div(a, b):
    q = abs(a) // b
    return q if a >= 0 else -q


def _mbqm_single(x, m, shift):
    total = 31 - shift
    return (x * m + (1 << (total - 1))) >> total


def test_requantize_matches_tflite_formulas(tmp_path):
    """ep_requantize_{double,single} against TFLite's formulas written out in Python, on random
    accumulators, multipliers from QuantizeMultiplier, and shifts -31 .. 7."""
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(4000):
        m, s = quant.quantize_multiplier(float(rng.uniform(1e-6, 4.0)))
        if s < -30 or m == 0:
            continue
        x = int(rng.integers(-(1 << 24), 1 << 24)) >> int(rng.integers(0, 20))
        if s > 0:
            x = max(min(x, (1 << (30 - s))), -(1 << (30 - s)))
        cases.append((x, m, s))
    cases += [(0, 1 << 30, 0), (-1, 1 << 30, -1), (1, 1 << 30, -1), (-3, 1 << 30, -1),
              ((1 << 31) - 1, (1 << 31) - 1, 0), (-(1 << 31), (1 << 31) - 1, 0)]
    kdir = REPO / "edgeprune" / "backends" / "c" / "kernels"
    (tmp_path / "ep_config.h").write_text("")
    (tmp_path / "t.c").write_text(
        '#include <stdio.h>\n#include "ep_common.h"\nint main(void){ long x, m, s;\n'
        ' while (scanf("%ld %ld %ld", &x, &m, &s) == 3)\n'
        '  printf("%ld %ld\\n", (long)ep_requantize_double((int32_t)x, (int32_t)m, (int32_t)s),'
        ' (long)ep_requantize_single((int32_t)x, (int32_t)m, (int32_t)s));\n return 0; }\n')
    exe = tmp_path / "t"
    subprocess.run([cbuild.host_cc(), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                    str(tmp_path), "-I", str(kdir), "-o", str(exe), str(tmp_path / "t.c")], check=True)
    p = subprocess.run([str(exe)], input="\n".join(f"{x} {m} {s}" for x, m, s in cases),
                       capture_output=True, text=True, check=True)
    got = [tuple(map(int, line.split())) for line in p.stdout.splitlines()]
    want = [(_mbqm_double(x, m, s), _mbqm_single(x, m, s)) for x, m, s in cases]
    assert got == want


def test_quantize_multiplier_edge_cases():
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert quant.quantize_multiplier(1.0) == (1 << 30, 1)
    m, s = quant.quantize_multiplier(1 - 2 ** -40)         # rounds to 2^31: halved, shift + 1
    assert (m, s) == (1 << 30, 1)
    assert quant.quantize_multiplier(2 ** -40) == (0, 0)    # shift < -31 flushes to zero
    assert quant.tflite_round(2.5) == 3 and quant.tflite_round(-2.5) == -3


def test_planner_overlap_rules():
    from edgeprune.backends.c.lower import Buffer, Overlap, Program, Step
    bufs = {"in": Buffer("in", 64, "input", -1, 0), "a": Buffer("a", 64, "act", 0, 1),
            "out": Buffer("out", 64, "output", 1, 2)}
    steps = [Step(0, "relu", "r1", "RELU", ["in"], "a", overlaps=[Overlap("in", "forward", 0)]),
             Step(1, "relu", "r2", "RELU", ["a"], "out", overlaps=[Overlap("a", "forward", 0)])]
    prog = Program(steps, bufs, "in", "out", (1, 64), (1, 64), 1.0, 0, 1.0, 0)
    assert planner.plan(prog) == 64                      # both element-wise ops run in place
    assert planner.plan(prog, overlaps=False, orders=("size",), apply=False) == 128
    bufs["a"].offset = 4                                 # a write ahead of its read: illegal
    with pytest.raises(AssertionError):
        planner.verify(prog)
    # An input read again later may not be overlaid.
    steps.append(Step(2, "add", "add", "ADD", ["in", "out"], "out2"))
    bufs["in"].last = 2
    bufs["out"].last = 2
    bufs["out2"] = Buffer("out2", 64, "output", 2, 3)
    assert planner.plan(prog) >= 128
