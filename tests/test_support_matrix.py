"""The support matrix: every backend declares every op kind, and the declarations are true.

For each op kind a tiny model holding it is lowered by each backend: a kind declared supported
must lower, a kind declared unsupported must be refused with an error naming the layer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgeprune.backends.support import Status, missing_kinds
from edgeprune.support_matrix import BACKENDS, matrix, table
from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.layergraph import OpKind

REPO = Path(__file__).resolve().parent.parent


def test_every_backend_declares_every_op_kind():
    for name in BACKENDS:
        t = table(name)
        assert missing_kinds(t) == [], f"{name} does not say what it does with {missing_kinds(t)}"
        assert set(t) <= set(OpKind)
        for kind, s in t.items():
            assert isinstance(s.status, Status)
            if s.status == Status.UNSUPPORTED:
                assert s.note, f"{name}: {kind} is unsupported without a reason"


class _Net(nn.Module):
    """input (1, 8, 8) -> conv(4) -> [the op under test] -> flatten -> linear(10)."""

    input_shape = (1, 8, 8)

    def __init__(self, kind: OpKind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        c, hw = 4, 8
        mid = {
            OpKind.DWCONV2D: nn.Conv2d(4, 4, 3, padding=1, groups=4),
            OpKind.BATCHNORM: nn.BatchNorm2d(4), OpKind.RELU: nn.ReLU(), OpKind.RELU6: nn.ReLU6(),
            OpKind.SIGMOID: nn.Sigmoid(), OpKind.TANH: nn.Tanh(),
            OpKind.MAXPOOL2D: nn.MaxPool2d(2), OpKind.AVGPOOL2D: nn.AvgPool2d(2),
            OpKind.GAP: nn.AdaptiveAvgPool2d(1), OpKind.DROPOUT: nn.Dropout(0.5),
            OpKind.IDENTITY: nn.Identity(),
        }.get(kind)
        self.mid = mid
        if kind in (OpKind.MAXPOOL2D, OpKind.AVGPOOL2D):
            hw = 4
        elif kind == OpKind.GAP:
            hw = 1
        elif kind == OpKind.PAD:
            self.pad = nn.ZeroPad2d((1, 1, 1, 1))
            self.after_pad = nn.Conv2d(4, 4, 3)
        elif kind == OpKind.ADD:
            self.branch = nn.Conv2d(4, 4, 3, padding=1)
        elif kind == OpKind.CONCAT:
            self.branch = nn.Conv2d(4, 2, 3, padding=1)
            c = 6
        self.fc = nn.Linear(c * hw * hw, 10)
        self.softmax = nn.Softmax(dim=1) if kind == OpKind.SOFTMAX else None

    def forward(self, x):
        x = self.conv(x)
        if self.kind == OpKind.BATCHNORM:     # conv -> BN -> ReLU, the foldable order
            x = self.mid(x)
        x = torch.relu(x)
        if self.mid is not None and self.kind != OpKind.BATCHNORM:
            x = self.mid(x)
        elif self.kind == OpKind.PAD:
            x = torch.relu(self.after_pad(self.pad(x)))
        elif self.kind == OpKind.ADD:
            x = x + self.branch(x)
        elif self.kind == OpKind.CONCAT:
            x = torch.cat([x, self.branch(x)], dim=1)
        x = self.fc(torch.flatten(x, 1))
        return self.softmax(x) if self.softmax is not None else x


@pytest.fixture(scope="module")
def graphs():
    torch.manual_seed(0)
    out = {}
    for kind in OpKind:
        m = _Net(kind).eval()
        g = extract(m)
        assert kind in {n.op for n in g.nodes}, kind
        out[kind] = (m, g)
    return out


def _lowers(backend: str, model, graph) -> None:
    if backend == "tflm-plan":
        from edgeprune.backends.tflm.plan import lower
        lower(graph)
    elif backend == "mcu-cycles":
        from edgeprune import cost
        cost.estimate(graph, "stm32l4r5-m4")
    elif backend == "fpga-cost":
        from edgeprune.backends.finn.layers import lower
        lower(graph, wbits=4, abits=4)
    elif backend == "fpga-export":
        pytest.importorskip("brevitas")
        from edgeprune.quant.brevitas_model import to_brevitas
        to_brevitas(model, wbits=4, abits=4)
    elif backend == "c-runtime":
        # the C export's gate on the graph, then the TFLite plan it generates C from (the
        # conversion to int8 itself is tests/test_export_c.py's)
        from edgeprune.backends.c.support import check_graph
        from edgeprune.backends.tflm.plan import lower
        check_graph(graph)
        lower(graph)
    elif backend == "rtl-export":
        # the RTL export's gate on the graph's op kinds (padding/stride limits of a kind it
        # supports are tests/test_rtl.py's)
        from edgeprune.backends.rtl.plan import check_graph
        check_graph(graph)
    else:  # pragma: no cover - a new backend needs a case here
        raise AssertionError(f"no lowering check for backend {backend}")


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_declarations_match_what_the_backend_does(backend, graphs):
    t = table(backend)
    for kind, (model, graph) in graphs.items():
        if t[kind].supported:
            _lowers(backend, model, graph)
        else:
            with pytest.raises(EdgepruneError) as e:
                _lowers(backend, model, graph)
            name = next(n.name for n in graph.nodes if n.op == kind)
            assert name in str(e.value), (backend, kind, str(e.value))


def test_ops_command_prints_the_matrix():
    p = subprocess.run([sys.executable, "-m", "edgeprune", "ops", "--json"], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    m = matrix()
    assert set(data) == set(m)
    for b, t in m.items():
        assert data[b]["ops"] == {str(k): {"status": str(s.status), "note": s.note}
                                  for k, s in t.items()}
    p = subprocess.run([sys.executable, "-m", "edgeprune", "ops"], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert p.returncode == 0 and all(str(k) in p.stdout for k in OpKind)
