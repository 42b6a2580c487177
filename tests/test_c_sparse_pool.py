"""The sparse convolution fused with the max pooling after it (backends/c/fuse.py,
kernels/ep_conv_sparse_pool.c) gives the bytes of the dense convolution and the separate
pooling kernel, over SAME and VALID padding, strides, 2 x 2 and 3 x 3 windows, remainders that
no window covers, activations, and channels whose weights are all pruned; its cost terms count
the pixels its loops visit; pairs it cannot fuse exactly stay two calls."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.c_synthetic import CONVPOOL, graph as syn_graph
from c_helpers import host_outputs
from edgeprune.backends.c import build as cbuild
from edgeprune.backends.c import costs
from edgeprune.backends.c.codegen import generate

if cbuild.host_cc() is None:
    pytest.skip("no host C compiler (cc/gcc/clang)", allow_module_level=True)

# besides the calibration shapes: odd convolution outputs (a right / bottom remainder), 3 x 3
# windows over a padded border, a LeNet-5-like first layer, one-weight channels
EXTRA = [(9, 9, 1, 6, 3, 1, "VALID", 2, "NONE"), (11, 8, 3, 5, 3, 1, "SAME", 3, "RELU"),
         (28, 28, 1, 20, 5, 1, "VALID", 2, "NONE"), (7, 9, 4, 4, 5, 1, "SAME", 2, "NONE"),
         (10, 10, 2, 6, 3, 1, "VALID", 2, "RELU"), (10, 10, 1, 16, 3, 1, "VALID", 2, "NONE")]


def _kill_rows(g, frac, seed):
    w = g.tensors[g.ops[0].inputs[1]].data
    rows = np.random.default_rng(seed).random(w.shape[0]) < frac
    rows[0] = True
    w[rows] = 0
    return int(rows.sum())


@pytest.mark.parametrize("flags", [["-Werror"], ["-Werror", "-DEP_RQ_SMMULR"]])
def test_fused_gives_the_separate_kernels_bytes(tmp_path, flags):
    counts = set()
    for i, spec in enumerate(CONVPOOL[::2] + EXTRA if len(flags) == 1 else EXTRA):
        g = syn_graph("convpool", spec, i, sparsity=0.9 if i % 2 else 0.6)
        _kill_rows(g, 0.3, i)
        w = g.tensors[g.ops[0].inputs[1]].data
        dead = int((w.reshape(w.shape[0], -1) == 0).all(axis=1).sum())
        # every eligible pair fused, also where the cost model would keep two calls (padded
        # borders, 3 x 3 windows), so that each path of the kernel runs
        sp = generate(g, "cortex-m4", force="sparse", fusion="always")
        de = generate(g, "cortex-m4", force="dense")
        assert len(sp.program.steps) == 1 and len(de.program.steps) == 2
        st = sp.program.steps[0]
        assert st.folded == ["maxpool"] and "ep_conv_sparse_maxpool(" in sp.files["edgeprune_model.c"]
        assert "ep_pool.c" not in sp.files and "ep_conv_sparse.c" not in sp.files
        key, terms = costs.step_terms(st, st.params["encoding"])
        counts |= set(st.params["encoding"].arrays["count"].tolist())
        pg = st.params["pool"]["g"]
        pooled = pg["out_h"] * pg["out_w"]
        assert key == "conv-sparse-pool" and terms["outputs_const"] == pooled * dead
        n = costs.sparse_pool_counts(st.params["g"], pg)
        assert n["quad"] * 4 + n["inside"] + n["border"] == pooled * pg["k_h"] * pg["k_w"]
        n_in = int(np.prod(sp.program.input_shape))
        x = np.random.default_rng(i).integers(-128, 128, size=(6, n_in), dtype=np.int8)
        a = host_outputs(sp, x, tmp_path / f"s{i}{len(flags)}", flags)
        b = host_outputs(de, x, tmp_path / f"d{i}{len(flags)}", flags)
        assert np.array_equal(a, b), f"{spec}: {int((a != b).sum())} bytes differ"
    assert {0, 1, 2} <= counts and max(counts) > 2   # constant channels, the 1- and 2-weight loops, the general one


def test_not_fused_where_inexact():
    # overlapping windows (3 x 3, stride 2) are not tiles
    g = syn_graph("convpool", (9, 9, 2, 4, 3, 1, "VALID", 2, "NONE"), 0, sparsity=0.8)
    pool = g.ops[1]
    pool.options.update(filter_h=3, filter_w=3)
    g.tensors[pool.outputs[0]].shape = (1, 3, 3, 4)
    assert len(generate(g, "cortex-m4", force="sparse").program.steps) == 2
    # a dense convolution keeps its own kernel and the pooling
    g = syn_graph("convpool", (9, 9, 2, 4, 3, 1, "VALID", 2, "NONE"), 0, sparsity=0.8)
    assert len(generate(g, "cortex-m4", force="dense").program.steps) == 2
    # a left shift (scale ratio > 1) makes the requantization wrap: not monotone
    g = syn_graph("convpool", (9, 9, 2, 4, 3, 1, "VALID", 2, "NONE"), 0, sparsity=0.8)
    for t in (g.ops[0].outputs[0], g.ops[1].outputs[0]):
        g.tensors[t].scale = np.asarray([1e-7], np.float32)
    assert len(generate(g, "cortex-m4", force="sparse").program.steps) == 2


def test_fused_where_the_cost_model_says_it_pays():
    g = syn_graph("convpool", (28, 28, 1, 20, 5, 1, "VALID", 2, "NONE"), 0, sparsity=0.9)
    gen = generate(g, "cortex-m4", force="sparse")
    assert len(gen.program.steps) == 1
    assert gen.layers[0].folded == ["maxpool"]
    # the intermediate 24 x 24 x 20 tensor is gone from the arena
    assert gen.arena_bytes < 24 * 24 * 20
    assert len(generate(g, "cortex-m4", force="sparse", fusion="never").program.steps) == 2
