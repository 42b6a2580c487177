"""FINN project export: files, folding rules, JSON schema, build.py keys vs FINN's source, CLI."""
import ast
import json
import subprocess
import sys

import pytest

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from edgeprune.export.finn import (FINN_DATAFLOW_BUILD_CONFIG_KEYS, FinnProjectError,  # noqa: E402
                                   check_build_py, check_folding, export_finn)
from edgeprune.targets import load_target  # noqa: E402

from test_fpga_common import tiny_pruned  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    out = tmp_path_factory.mktemp("finn") / "prj"
    r = export_finn(tiny_pruned(), load_target("pynq-z2"), out, data="fashion-mnist",
                    model_name="tiny", epochs=1,
                    max_steps_per_epoch=3, verify_images=16, progress=False)
    return out, r


def test_project_files_and_qonnx(project):
    out, r = project
    for f in ("model.onnx", "folding_config.json", "specialize_layers_config.json", "build.py",
              "estimates.json", "report.json", "verify/input.npy", "verify/expected_output.npy",
              "docker/Dockerfile", "docker/run_finn_build.sh"):
        assert (out / f).is_file(), f
    q = r["quantization"]["qonnx_vs_brevitas"]
    assert q["ok"] and q["max_abs_diff"] <= 1e-5 and q["argmax_agreement"] == 1.0
    for sh in ("run_finn_build.sh", "edgeprune_finn_entry.sh"):
        assert subprocess.run(["bash", "-n", str(out / "docker" / sh)]).returncode == 0
    assert not list(out.parent.glob(".prj.*"))       # no staging directory left behind


def test_folding_schema_and_divisibility(project):
    out, r = project
    fold = json.loads((out / "folding_config.json").read_text())
    layers = r["folding"]["layers"]
    check_folding(fold, layers)                         # raises on any violated rule
    names = {l["name"] for l in layers}
    assert set(fold) - {"Defaults"} <= names
    mvaus = [l for l in layers if l["op_type"] == "MVAU_hls"]
    assert [l["node"] for l in mvaus] == ["conv1", "conv2", "fc"]
    for l in mvaus:
        s, a = l["shape"], fold[l["name"]]
        assert s["MH"] % a["PE"] == 0 and s["MW"] % a["SIMD"] == 0
    assert mvaus[-1]["shape"]["noActivation"] == 1
    # conv1 is 1 input channel x 5x5 -> MW 25; fc reads 6*4*4 features
    assert (mvaus[0]["shape"]["MW"], mvaus[2]["shape"]["MW"]) == (25, 96)
    spec = json.loads((out / "specialize_layers_config.json").read_text())
    assert all(v == {"preferred_impl_style": "hls"} for k, v in spec.items() if k != "Defaults")
    # A folding that breaks MH % PE must be rejected.
    bad = dict(fold)
    bad[mvaus[0]["name"]] = dict(fold[mvaus[0]["name"]], PE=3)
    with pytest.raises(FinnProjectError, match="PE"):
        check_folding(bad, layers)


def test_estimates_match_report_and_fps_target(project):
    out, r = project
    est = json.loads((out / "estimates.json").read_text())
    assert [l["name"] for l in est["layers"]] == [l["name"] for l in r["folding"]["layers"]]
    t = r["estimate"]["totals"]
    assert t["fits"] and t["fps"] > 0 and t["capacity"]["lut"] == 53200
    assert max(l["estimated_cycles"] for l in est["layers"]) == t["ii_cycles"]


def test_build_py_parses_and_uses_only_finn_keys(project):
    out, _ = project
    src = (out / "build.py").read_text()
    ast.parse(src)
    info = check_build_py(src)
    assert set(info["keys"]) <= set(FINN_DATAFLOW_BUILD_CONFIG_KEYS)
    assert {"board", "synth_clk_period_ns", "folding_config_file", "generate_outputs",
            "shell_flow_type", "output_dir"} <= set(info["keys"])
    assert {"ESTIMATE_REPORTS", "STITCHED_IP", "BITFILE", "PYNQ_DRIVER",
            "DEPLOYMENT_PACKAGE"} <= set(info["outputs"])
    assert "synth_clk_period_ns=10.0" in src and 'board="Pynq-Z2"' in src
    with pytest.raises(FinnProjectError, match="keys FINN does not have"):
        check_build_py(src.replace("auto_fifo_depths=True", "auto_fifo_depth=True"))
    with pytest.raises(FinnProjectError, match="DataflowOutputType"):
        check_build_py(src.replace("DataflowOutputType.BITFILE", "DataflowOutputType.BITSTREAM"))


def test_a_prepared_model_is_exported_as_is(tmp_path):
    """prepared=: one QAT shared by several exports (benchmarks/fpga_zoo.py runs finn and hls
    on one). No data is passed, so a second QAT could not run; the QONNX bytes are the
    prepared ones; a prepared model at other bits is refused before anything is written."""
    from edgeprune.data import load_dataset
    from edgeprune.deploy import Deployment
    from edgeprune.export.fpga_common import FpgaExportError
    from edgeprune.quant.fpga_prepare import prepare

    ds = load_dataset("fashion-mnist").subset(256, 16)
    model = tiny_pruned()
    dep = Deployment.for_target(load_target("pynq-z2"), wbits=4, abits=4)
    prep = prepare(model, dep, tmp_path / "model.onnx", data=ds, epochs=0, verify_images=8,
                   progress=False)
    r = export_finn(model, dep, tmp_path / "finn", data=None, prepared=prep, progress=False)
    assert (tmp_path / "finn" / "model.onnx").read_bytes() == \
        (tmp_path / "model.onnx").read_bytes()
    assert r["quantization"]["accuracy_quant"] == prep.accuracy_quant
    assert r["quantization"]["qonnx_vs_brevitas"]["images"] == 8
    w2 = Deployment.for_target(load_target("pynq-z2"), wbits=2, abits=2)
    with pytest.raises(FpgaExportError, match="quantized at"):
        export_finn(model, w2, tmp_path / "w2", data=None, prepared=prep, progress=False)
    assert not (tmp_path / "w2").exists()


def test_cli_rejects_mcu_target_without_output(tmp_path):
    from edgeprune.targets import list_targets
    mcu = next((t.name for t in list_targets() if t.kind == "mcu"), None)
    if mcu is None:
        pytest.skip("no MCU target defined")
    out = tmp_path / "o"
    p = subprocess.run([sys.executable, "-m", "edgeprune", "export", "finn", "lenet5", "--target",
                        mcu, "-o", str(out), "--epochs", "0"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2
    err = [l for l in p.stderr.splitlines() if l.startswith("edgeprune: error:")]
    assert len(err) == 1 and "not an FPGA target" in err[0]
    assert not out.exists()
