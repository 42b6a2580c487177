"""The MCU cost model's real-TFLM constants: the generated module matches a re-fit of the
committed calibration measurements, the estimate uses them, and the kernel dispatch follows
CMSIS-NN's (no QEMU, no TFLM tree)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch.nn as nn

from edgeprune import cost
from edgeprune.backends.tflm import plan as tflm_plan
from edgeprune.cost import tflm_constants as T
from edgeprune.cost.mcu import plan_op_cycles
from edgeprune.cost.mcu_terms import TFLM_KERNEL_TERMS, _valid_taps, tflm_kernel, tflm_op_shape
from edgeprune.graph import extract
from edgeprune.targets import load_target

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "tflm_cycle_calibration.json"


def _calibrate_module():
    spec = importlib.util.spec_from_file_location("tflm_calibrate", REPO / "benchmarks" / "tflm_calibrate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_constants_match_a_refit_of_the_committed_measurements():
    rows = json.loads(RESULTS.read_text())["rows"]
    assert rows and all(r["split"] == "calibration" for r in rows)
    # fitted on synthetic networks only: no zoo model name among the cases
    from edgeprune.models import ZOO
    zoo = set(ZOO)
    assert not zoo & {r["case"] for r in rows}
    fits = _calibrate_module().fits_from(rows)
    assert fits, "no fit"
    for rt, by_core in fits.items():
        for core, f in by_core.items():
            assert T.KERNEL_CYCLES[rt][core] == f["kernels"]
            assert T.INTERPRETER_CYCLES[rt][core] == f["interpreter"]
            assert T.FIT[rt][core] == f["stats"]
    assert "tflm_calibrate.py" in T.SOURCE and "tflm_cycle_calibration.json" in T.SOURCE


class _Net(nn.Module):
    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8 * 36, 5)

    def forward(self, x):
        x = self.conv(x)
        x = x + self.pw(self.dw(x))
        return self.fc(self.flat(self.pool(x)))


def test_estimate_uses_the_fitted_constants():
    m4 = load_target("stm32l4r5-m4")
    assert m4.core == "cortex-m4" and m4.runtime == "tflm-cmsis-nn"
    kern = T.KERNEL_CYCLES["tflm-cmsis-nn"]["cortex-m4"]
    interp = T.INTERPRETER_CYCLES["tflm-cmsis-nn"]["cortex-m4"]
    g = extract(_Net())
    plan = tflm_plan.lower(g)
    rep = cost.estimate(g, m4)
    expected = interp["invoke"]
    for op in plan.ops:
        k, terms = tflm_kernel(tflm_op_shape(plan, op))
        assert k in kern, f"{op.opcode}: kernel {k} was not measured"
        expected += sum(c * terms[t] for t, c in kern[k].items()) + interp["op"]
    assert rep.totals["cycles"] == pytest.approx(expected, abs=1)
    assert rep.totals["interpreter_cycles"] == round(interp["invoke"])
    assert sum(r["cycles"] for r in rep.layers) + rep.totals["interpreter_cycles"] == \
        pytest.approx(rep.totals["cycles"], abs=len(rep.layers))
    per_op = plan_op_cycles(plan, "cortex-m4", "tflm-cmsis-nn")
    assert all(p["measured"] for p in per_op)
    assert any("fitted on synthetic networks" in n for n in rep.notes)


def test_kernel_dispatch_follows_cmsis_nn():
    def shape(op, i, o, **kw):
        return {"op": op, "in": list(i), "out": list(o), **kw}
    one = dict(k=[1, 1], stride=[1, 1], dilation=[1, 1], pad=[0, 0])
    assert tflm_kernel(shape("CONV_2D", (8, 8, 16), (8, 8, 32), **one))[0] == "cm_conv_1x1"
    k, t = tflm_kernel(shape("CONV_2D", (8, 8, 16), (4, 4, 32), **{**one, "stride": [2, 2]}))
    assert k == "cm_conv_1x1" and t["rows"] == 4                  # arm_convolve_1x1_s8: per row
    k, t = tflm_kernel(shape("CONV_2D", (5, 5, 3), (5, 5, 4), k=[3, 3], stride=[1, 1],
                             dilation=[1, 1], pad=[1, 1]))
    assert k == "cm_conv" and t["macs_odd"] == 4 * 27            # 25 pixels: the last alone
    assert t["ptaps_pad"] == 25 * 9 - 13 * 13                    # 13 valid taps per axis
    dw3 = dict(k=[3, 3], stride=[1, 1], dilation=[1, 1], pad=[1, 1])
    k, t = tflm_kernel(shape("DEPTHWISE_CONV_2D", (6, 6, 10), (6, 6, 10), **dw3))
    assert k == "cm_dwconv_3x3" and t["vtaps4"] == 16 * 16 * 2 and t["taps_tail"] == 16 * 16 * 2
    assert tflm_kernel(shape("DEPTHWISE_CONV_2D", (6, 6, 8), (6, 6, 8), **{**dw3, "k": [5, 5],
                                                                         "pad": [2, 2]}))[0] == "cm_dwconv"
    k, t = tflm_kernel(shape("FULLY_CONNECTED", (1, 1, 10), (1, 1, 5), depth=10, units=5))
    assert k == "cm_fc" and t["macs"] == 40 and t["macs_odd"] == 10 and t["macs_tail4"] == 10
    assert _valid_taps(3, 3, 3, 1, 1) == 2 + 3 + 2
    for kern, names in TFLM_KERNEL_TERMS.items():
        assert "call" in names


def test_mve_dispatch_follows_cmsis_nn_mve_paths():
    """On the M55 (MVE) CMSIS-NN runs other loops: 4 rows x 16 lanes in arm_nn_mat_mult_nt_t_s8,
    no 3x3 depthwise kernel, 124-channel depthwise blocks; the arena has MVE scratch sizes and
    the fully-connected kernel sums."""
    def shape(op, i, o, **kw):
        return {"op": op, "in": list(i), "out": list(o), **kw}
    one = dict(k=[1, 1], stride=[1, 1], dilation=[1, 1], pad=[0, 0])
    k, t = tflm_kernel(shape("CONV_2D", (5, 5, 20), (5, 5, 6), **one), isa="mve")
    # 25 pixels: 6 groups of 4 rows and 1 row alone; 20 columns = 2 trips of 16 lanes
    assert k == "mve_conv_1x1" and t["q_iters"] == 6 * 6 * 2 and t["s_ch"] == 6
    assert t["s_tail"] == 6 % 4 and t["rows"] == 1
    k, t = tflm_kernel(shape("CONV_2D", (5, 5, 3), (5, 5, 4), k=[3, 3], stride=[1, 1],
                             dilation=[1, 1], pad=[1, 1]), isa="mve")
    assert k == "mve_conv" and t["q_ch"] == 6 * 4 and t["s_iters"] == 1 * 4 * 2   # 27 cols
    assert t["ptaps_pad"] == 25 * 9 - 13 * 13
    dw3 = dict(k=[3, 3], stride=[1, 1], dilation=[1, 1], pad=[1, 1])
    k, t = tflm_kernel(shape("DEPTHWISE_CONV_2D", (4, 4, 130), (4, 4, 130), **dw3), isa="mve")
    # 130 channels: blocks of 124 and 6 -> 31 + 2 groups of 4 lanes; 16 pixels = 4 quads
    assert k == "mve_dwconv" and t["q_grp"] == 4 * 33 and t["s_grp"] == 0 and t["quads"] == 8
    k, t = tflm_kernel(shape("FULLY_CONNECTED", (1, 1, 33), (1, 1, 10), depth=33, units=10), isa="mve")
    assert k == "mve_fc" and t["q_iters"] == 2 * 3 and t["s_ch"] == 2
    for name in ("mve_conv", "mve_dwconv", "mve_fc", "mve_maxpool", "mve_add"):
        assert name in TFLM_KERNEL_TERMS and "call" in TFLM_KERNEL_TERMS[name]
    # the DSP dispatch is unchanged by the isa argument's default
    assert tflm_kernel(shape("FULLY_CONNECTED", (1, 1, 33), (1, 1, 10), depth=33, units=10))[0] == "cm_fc"
    from edgeprune.backends.tflm import memory as M
    g = extract(_Net())
    plan = tflm_plan.lower(g)
    dsp = M.estimate_arena(g, runtime="tflm-cmsis-nn", plan=plan)
    mve = M.estimate_arena(g, runtime="tflm-cmsis-nn", plan=plan, isa="mve")
    conv, dw = [op for op in plan.ops if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")][:2]
    assert M._cmsis_scratch_mve(plan, conv) == 4 * 32       # 27 columns -> 32 lanes, 4 columns
    assert M._cmsis_scratch_mve(plan, dw) == 4 * 124 * 9 and M._cmsis_scratch(plan, dw) == 0
    assert mve["persistent_bytes"] > dsp["persistent_bytes"]            # fc kernel sums


def test_v6m_dispatch_follows_cmsis_nn_plain_c_paths():
    """On the M0+ (no DSP extension) CMSIS-NN's depthwise opt kernel falls back to the generic
    one, the fully-connected loop takes 3 rows at a time, the average pool walks the whole
    window per element; none of them requests a scratch buffer (the conv's im2col stays)."""
    def shape(op, i, o, **kw):
        return {"op": op, "in": list(i), "out": list(o), **kw}
    dw5 = dict(k=[5, 5], stride=[1, 1], dilation=[1, 1], pad=[2, 2])
    k, t = tflm_kernel(shape("DEPTHWISE_CONV_2D", (6, 6, 8), (6, 6, 8), **dw5), isa="v6m")
    # per axis 3+4+5+5+4+3 = 24 filter positions inside the 6-pixel input
    assert k == "v6m_dwconv" and t["macs"] == 24 * 24 * 8 and t["krows"] == 24 * 6 * 8
    dw3 = dict(k=[3, 3], stride=[1, 1], dilation=[1, 1], pad=[1, 1])
    assert tflm_kernel(shape("DEPTHWISE_CONV_2D", (6, 6, 8), (6, 6, 8), **dw3), isa="v6m")[0] == \
        "cm_dwconv_3x3"                           # the 3x3 kernel has a plain path of its own
    k, t = tflm_kernel(shape("FULLY_CONNECTED", (1, 1, 10), (1, 1, 7), depth=10, units=7), isa="v6m")
    assert k == "v6m_fc" and t["trips3"] == 2 * 10 and t["trips1"] == 10 and t["groups3"] == 2
    k, t = tflm_kernel(shape("AVERAGE_POOL_2D", (4, 4, 5), (2, 2, 5), k=[2, 2], stride=[2, 2]), isa="v6m")
    assert k == "v6m_avgpool" and t["window"] == 20 * 4 and t["wrows"] == 20 * 2
    one = dict(k=[1, 1], stride=[1, 1], dilation=[1, 1], pad=[0, 0])
    assert tflm_kernel(shape("CONV_2D", (8, 8, 16), (8, 8, 32), **one), isa="v6m")[0] == "cm_conv_1x1"
    for name in ("v6m_dwconv", "v6m_fc", "v6m_avgpool"):
        assert "call" in TFLM_KERNEL_TERMS[name]
    from edgeprune.backends.tflm import memory as M

    class Pooled(nn.Module):
        input_shape = (4, 8, 8)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1)
            self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
            self.pool = nn.AvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(8 * 16, 5)

        def forward(self, x):
            return self.fc(self.flat(self.pool(self.dw(self.conv(x)))))
    g = extract(Pooled())
    plan = tflm_plan.lower(g)
    by_op = {op.opcode: op for op in plan.ops}
    assert M._cmsis_scratch_v6m(plan, by_op["CONV_2D"]) == M._cmsis_scratch(plan, by_op["CONV_2D"]) > 0
    for code in ("DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
        assert M._cmsis_scratch(plan, by_op[code]) > 0 and M._cmsis_scratch_v6m(plan, by_op[code]) == 0
    dsp = M.estimate_arena(g, runtime="tflm-cmsis-nn", plan=plan)
    v6m = M.estimate_arena(g, runtime="tflm-cmsis-nn", plan=plan, isa="v6m")
    assert v6m["scratch_bytes"] < dsp["scratch_bytes"]


def test_fit_proxy_only_for_cores_on_the_same_path_and_table():
    """M7 / M33 without their own fit borrow the M4's (same CMSIS-NN DSP path, same TRM table in
    verify/cpi.py); the M55 (MVE) and M0+ (plain C) borrow nothing; a core's own fit wins."""
    from edgeprune.cost.mcu import FIT_PROXY, tflm_fit, tflm_fit_core
    from edgeprune.verify.cpi import TIMING_SOURCE
    for core, proxy in FIT_PROXY.items():
        assert "Cortex-M4 TRM" in TIMING_SOURCE[core] and proxy == "cortex-m4"
    for rt in ("tflm-cmsis-nn", "tflm-reference"):
        assert tflm_fit_core("cortex-m4", rt) == "cortex-m4"
        for core in ("cortex-m7", "cortex-m33"):
            own = core in T.KERNEL_CYCLES[rt]
            assert tflm_fit_core(core, rt) == (core if own else "cortex-m4")
            assert tflm_fit(core, rt)[0] is T.KERNEL_CYCLES[rt][tflm_fit_core(core, rt)]
        for core in ("cortex-m55", "cortex-m0plus"):
            assert tflm_fit_core(core, rt) == (core if core in T.KERNEL_CYCLES[rt] else None)
    g = extract(_Net())
    rep = cost.estimate(g, load_target("stm32u585-m33"))
    if "cortex-m33" not in T.KERNEL_CYCLES["tflm-cmsis-nn"]:
        assert rep.totals["cycles"] == cost.estimate(g, load_target("stm32l4r5-m4")).totals["cycles"]
        assert any("no fit of cortex-m33's own" in n for n in rep.notes)
    m55 = cost.estimate(g, load_target("alif-e3-m55"))
    own = "cortex-m55" in T.KERNEL_CYCLES["tflm-cmsis-nn"]       # its own MVE fit, or none
    assert any("fitted on synthetic networks" in n for n in m55.notes) == own
    if own:
        assert set(T.KERNEL_CYCLES["tflm-cmsis-nn"]["cortex-m55"]) >= {"mve_conv", "mve_dwconv", "mve_fc"}
