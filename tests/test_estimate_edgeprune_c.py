"""`edgeprune estimate --runtime edgeprune-c`: the C runtime's cost without exporting (cost/mcu_c.py).

Cycles come from the export's calibrated kernel model on the same generated program; flash and
RAM from the generator's arrays and arena plan. The what-if must show that scattered zeros and
clustering pay here (they save nothing on TFLM's dense kernels)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune import cost
from edgeprune.backends.c import costs as ccosts
from edgeprune.deploy import Deployment, DeploymentError
from edgeprune.zoo_graphs import cached_graph

REPO = Path(__file__).resolve().parent.parent
M4 = "stm32l4r5-m4"

if not ccosts.calibrated("cortex-m4"):
    pytest.skip("edgeprune-c cost model not calibrated for cortex-m4", allow_module_level=True)


@pytest.fixture(scope="module")
def lenet():
    g = cached_graph("lenet5")
    if g is None:
        from edgeprune.graph import extract
        from edgeprune.models import build
        g = extract(build("lenet5"))
    return g


def _dep(runtime="edgeprune-c"):
    return Deployment.for_target(M4, runtime=runtime)


def test_dense_estimate_is_the_exports_model(lenet):
    from edgeprune.backends.c.codegen import generate
    from edgeprune.cost.mcu_c import c_graph
    rep = cost.estimate(lenet, _dep())
    gen = generate(c_graph(lenet), "cortex-m4")
    est = ccosts.estimate_program(gen.program, "cortex-m4")
    assert rep.totals["cycles"] == round(est["cycles"])
    assert rep.totals["ram_bytes"] == gen.arena_bytes
    # every weighted layer dense; flash at least the int8 weights, at most weights + 20 % params
    assert {r["tflite_op"] for r in rep.layers if r["params"]} <= {"CONV_2D (dense)", "FULLY_CONNECTED (dense)"}
    w = sum(r["params"] for r in rep.layers)
    assert w <= rep.totals["flash_bytes"] <= 1.2 * w + 4096
    assert sum(r["cycles"] for r in rep.layers) == pytest.approx(rep.totals["cycles"], rel=0.01)
    assert next(r for r in rep.layers if r["name"] == "relu")["tflite_op"] == "fused into fc1"


def test_sparsity_and_clustering_pay_in_c_but_not_in_tflm(lenet):
    dense = cost.estimate(lenet, _dep())
    sparse = cost.estimate(lenet, _dep(), weight_density={"fc1": 0.05, "conv2": 0.05})
    assert sparse.totals["cycles"] < 0.8 * dense.totals["cycles"]
    assert sparse.totals["flash_bytes"] < 0.5 * dense.totals["flash_bytes"]
    flash_dep = Deployment.for_target(M4, runtime="edgeprune-c", compression="flash")
    clustered = cost.estimate(lenet, flash_dep, lut={"fc1": 3})
    assert clustered.totals["flash_bytes"] < 0.6 * dense.totals["flash_bytes"]
    assert clustered.totals["ram_bytes"] <= dense.totals["ram_bytes"]
    assert "clustered" in next(r for r in clustered.layers if r["name"] == "fc1")["tflite_op"]
    rows = {r["name"]: r for r in cost.what_if(lenet, _dep(), 0.9)}
    assert rows["fc1"]["weights"]["flash_bytes"] > 0 and rows["fc1"]["weights"]["cycles"] > 0
    assert rows["fc1"]["clustered"]["flash_bytes"] > 0 and "clustering" in rows["fc1"]["note"]
    tflm = {r["name"]: r for r in cost.what_if(lenet, _dep("tflm-cmsis-nn"), 0.9)}
    assert tflm["fc1"]["weights"]["cycles"] == 0 and tflm["fc1"]["weights"]["flash_bytes"] == 0


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)


def test_cli_json_and_refusals(tmp_path):
    p = _cli("estimate", "lenet5", "--target", M4, "--runtime", "edgeprune-c", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["deployment"]["runtime"] == "edgeprune-c"
    assert out["totals"]["cycles"] > 0 and out["totals"]["ram_bytes"] > 0
    bad = _cli("estimate", "lenet5", "--target", M4, "--runtime", "edgeprune-x")
    assert bad.returncode != 0 and "edgeprune-c" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    m0 = _cli("estimate", "lenet5", "--target", str(REPO / "targets" / "mcu" / "rp2040-m0plus.toml"),
              "--runtime", "edgeprune-c")
    assert m0.returncode != 0 and "not calibrated" in m0.stderr
    assert len(m0.stderr.strip().splitlines()) == 1


def test_estimate_stays_torch_free():
    code = ("import sys\nfrom edgeprune import cost\nfrom edgeprune.deploy import Deployment\n"
            "from edgeprune.zoo_graphs import cached_graph\n"
            "g = cached_graph('lenet5')\n"
            "if g is not None: cost.estimate(g, Deployment.for_target('stm32l4r5-m4', runtime='edgeprune-c'))\n"
            "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_unknown_runtime_refused():
    with pytest.raises(DeploymentError):
        Deployment.for_target(M4, runtime="nope")


def test_tflm_export_refuses_the_c_runtime(tmp_path):
    from edgeprune.export.tflm import ExportError, export_tflm
    with pytest.raises(ExportError, match="export c"):
        export_tflm(None, _dep(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reads_the_loaded_weights_structure(tmp_path):
    """--weights of a weight-pruned (and partly clustered) LeNet-5: the estimate sees the zeros
    and the clusters, as the export would."""
    import torch
    from edgeprune.models import build
    torch.manual_seed(0)
    m = build("lenet5")
    with torch.no_grad():
        for name in ("conv2", "fc1"):
            w = getattr(m, name).weight
            w.mul_((torch.rand_like(w) < 0.03).float())
        w = m.fc2.weight
        w.copy_(torch.tensor([-0.2, -0.1, 0.1, 0.2])[torch.randint(0, 4, w.shape)])
    sd = tmp_path / "pruned.pt"
    torch.save(m.state_dict(), sd)
    dense = _cli("estimate", "lenet5", "--target", M4, "--runtime", "edgeprune-c", "--json")
    p = _cli("estimate", "lenet5", "--weights", str(sd), "--target", M4, "--runtime", "edgeprune-c",
             "--json")
    assert p.returncode == 0, p.stderr
    out, d = json.loads(p.stdout), json.loads(dense.stdout)
    ops = {r["name"]: r["tflite_op"] for r in out["layers"]}
    assert "sparse" in ops["fc1"] and "sparse" in ops["conv2"]
    assert out["totals"]["flash_bytes"] < 0.2 * d["totals"]["flash_bytes"]
    assert out["totals"]["cycles"] < d["totals"]["cycles"]
    assert any("non-zero" in n and "fc2 clustered (2-bit)" in n for n in out["notes"])


@pytest.mark.skipif(__import__("edgeprune.backends.c.build", fromlist=["arm_gcc"]).arm_gcc() is None,
                    reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("model", ["lenet5", "dscnn"])
def test_flash_estimate_matches_the_cross_compiled_build(model, tmp_path):
    """The estimate's flash (arrays + measured kernel code + glue) against the same generated
    program cross-compiled for the M4 (not a fitting sample: the table comes from the synthetic
    single-layer models)."""
    from edgeprune.backends.c.build import cross_compile
    from edgeprune.backends.c.codegen import generate
    from edgeprune.cost.mcu_c import c_graph
    g = cached_graph(model)
    if g is None:
        pytest.skip(f"no cached zoo graph for {model}")
    rep = cost.estimate(g, _dep())
    assert "flash_code_bytes" in rep.totals
    gen = generate(c_graph(g), "cortex-m4")
    src = tmp_path / "src"
    src.mkdir()
    for k, v in gen.files.items():
        (src / k).write_text(v)
    cb = cross_compile(src, "cortex-m4", tmp_path / "build")
    measured = cb.sections["text"] + cb.sections["rodata"] + cb.sections["data"]
    assert rep.totals["flash_bytes"] == pytest.approx(measured, rel=0.02)


def test_cost_aware_pruning_prices_weights_at_the_sparse_operating_point(lenet):
    """`prune --runtime edgeprune-c --orientation target`: at the dense point removing a few
    weights saves nothing (each layer keeps its dense kernel), so the marginal costs are taken
    where the run goes (every layer at density 1 - amount, in the sparse kernels): a weight then
    saves cycles in proportion to the output positions it is multiplied at (conv1 > conv2 >
    fc1) and about the same flash everywhere."""
    from edgeprune.models import build
    from edgeprune.graph import extract
    from edgeprune.prune.runner import PruneConfig, build_method, deployment_of
    dense_pt = cost.marginal_costs(lenet, _dep())
    assert all(v["per_weight"]["cycles"] == 0 for v in dense_pt.values())
    cfg = PruneConfig(model="lenet5", data="mnist", orientation="target", sparsity=0.95,
                      target=M4, runtime="edgeprune-c")
    dep = deployment_of(cfg)                       # no longer refused
    assert dep.runtime == "edgeprune-c"
    model = build("lenet5")
    meth = build_method(cfg, model, extract(model), None, dep)
    dens = meth.operating_density()
    assert set(dens) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(v == pytest.approx(0.05) for v in dens.values())
    m = meth.marginal()
    cyc = {k: v["per_weight"]["cycles"] for k, v in m.items()}
    assert cyc["conv1"] > cyc["conv2"] > cyc["fc1"] > 0
    fl = [v["per_weight"]["flash_bytes"] for v in m.values()]
    assert min(fl) > 0 and max(fl) < 2 * min(fl)
    fams = meth.families()
    saving = {f.key: float(f.saving[0]) for f in fams}
    assert saving["conv1"] > saving["conv2"] > saving["fc1"]
    # channel granularity keeps the dense point (channels shrink the dense kernels)
    ch = build_method(PruneConfig(model="lenet5", data="mnist", granularity="channel",
                                  orientation="target", sparsity=0.5, target=M4,
                                  runtime="edgeprune-c"), build("lenet5"), extract(model), None, dep)
    assert ch.operating_density() is None
