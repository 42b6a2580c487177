"""`export rtl` refuses a design whose RTL cost-model estimate is at least SKIP_FACTOR times a
resource of the part (dense LeNet-5 on an UP5K), before the training, with a one-line message
naming the resource, and writes nothing."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_over_capacity_names_the_resource():
    from edgeprune.export.rtl import SKIP_FACTOR, over_capacity
    from edgeprune.targets import load_target

    up5k = load_target("ice40-up5k")
    est = {"lut": 100, "ff": int(SKIP_FACTOR * 5280), "cells": 0, "bram": 29, "dsp": 0}
    assert over_capacity(est, up5k, "ice40") == ["DFF 10,560 > 5,280"]
    est["ff"] -= 1
    assert over_capacity(est, up5k, "ice40") == []
    z2 = load_target("pynq-z2")
    assert over_capacity({"lut": 2 * 53200, "ff": 0, "bram": 0, "dsp": 440}, z2, "xc7") == \
        ["LUT 106,400 > 53,200", "DSP 440 > 220"]


def test_dense_lenet5_does_not_fit_up5k(tmp_path):
    from edgeprune.deploy import Deployment
    from edgeprune.export.fpga_common import FpgaExportError
    from edgeprune.export.rtl import export_rtl
    from edgeprune.models.loading import load_model
    from edgeprune.targets import load_target

    dep = Deployment.for_target(load_target("ice40-up5k"))
    out = tmp_path / "out"
    with pytest.raises(FpgaExportError, match=r"does not fit ice40-up5k: RTL cost model "
                                              r"estimate .*DFF [\d,]+ > 5,280.*EBR \d+ > 30"):
        export_rtl(load_model("lenet5", seed=0), dep, out, data="no-such-dataset",
                   progress=False)
    assert not out.exists()
