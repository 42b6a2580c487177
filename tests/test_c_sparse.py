"""The sparse kernels (kernels/ep_conv_sparse.c: channel by channel, constant channels; and
kernels/ep_fc_sparse.c) give the dense kernels' bytes (themselves bit-exact with TFLM,
tests/test_export_c.py) over SAME and VALID padding, strides, dilation-free windows of 1x1 to
5x5, and layers where whole output channels have no weight left (LeNet-5 pruned 50x), on the
host; their cost terms count those channels; and the sparse convolution's output never overlays
its input (it is written channel by channel)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.c_synthetic import graph as syn_graph
from edgeprune.backends.c import build as cbuild
from c_helpers import host_outputs
from edgeprune.backends.c import costs
from edgeprune.backends.c.codegen import generate

if cbuild.host_cc() is None:
    pytest.skip("no host C compiler (cc/gcc/clang)", allow_module_level=True)

# (H, W, Cin, Cout, k, stride, padding)
CONV = [(12, 12, 1, 20, 5, 1, "VALID"), (8, 8, 6, 10, 3, 1, "SAME"), (9, 7, 4, 6, 3, 2, "SAME"),
        (6, 6, 3, 5, 5, 1, "SAME"), (7, 7, 8, 4, 1, 1, "VALID"), (10, 10, 5, 7, 3, 2, "VALID")]
FC = [(64, 10), (50, 33)]


def _kill_rows(g, frac, seed):
    """Zero every weight of a fraction of the output channels (and a few more weights)."""
    w = g.tensors[g.ops[0].inputs[1]].data
    rng = np.random.default_rng(seed)
    rows = rng.random(w.shape[0]) < frac
    rows[0] = True
    w[rows] = 0
    return int(rows.sum())


def _outputs(gen, x, work):
    return host_outputs(gen, x, work, ["-Werror"])


@pytest.mark.parametrize("kind", ["conv", "fc"])
def test_sparse_gives_the_dense_bytes(tmp_path, kind):
    specs = CONV if kind == "conv" else FC
    for i, spec in enumerate(specs):
        g = syn_graph(kind, spec, i, sparsity=0.9 if i % 2 else 0.6)
        dead = _kill_rows(g, 0.4, i)
        sp = generate(g, "cortex-m4", force="sparse")
        de = generate(g, "cortex-m4", force="dense")
        st = sp.program.steps[0]
        assert sp.layers[0].variant == "sparse"
        key, terms = costs.step_terms(st, st.params["encoding"])
        if kind == "conv":
            pixels = st.params["g"]["out_h"] * st.params["g"]["out_w"]
            assert terms["outputs_const"] == pixels * dead and st.overlaps == []
        n_in = int(np.prod(sp.program.input_shape))
        x = np.random.default_rng(i).integers(-128, 128, size=(5, n_in), dtype=np.int8)
        a = _outputs(sp, x, tmp_path / f"s{i}")
        b = _outputs(de, x, tmp_path / f"d{i}")
        assert np.array_equal(a, b), f"{kind} {spec}: {int((a != b).sum())} bytes differ"
