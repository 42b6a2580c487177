"""The package's layers (docs/ARCHITECTURE.md): no module imports from a layer above its own,
and the modules the fast paths need stay free of torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "edgeprune"

# Bottom to top. A module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "layergraph", "__init__"},
    {"targets", "artifacts", "data", "logs"},
    {"deploy", "backends"},
    {"graph", "models", "surgery", "zoo_graphs", "cost"},
    {"train"},
    {"prune", "quant"},
    {"export", "verify", "support_matrix", "api"},
    {"flow"},
    {"cli", "__main__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _component(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0][:-3] if len(rel.parts) == 1 else rel.parts[0]


def _imports(path: Path):
    """(line, imported edgeprune component) for every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text(), str(path))
    pkg_parts = list(path.relative_to(PKG.parent).with_suffix("").parts)[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "edgeprune" and len(parts) > 1:
                    yield node.lineno, parts[1]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
            else:
                parts = (node.module or "").split(".")
            if parts[0] != "edgeprune":
                continue
            if len(parts) > 1:
                yield node.lineno, parts[1]
            else:  # from edgeprune import x  /  from .. import x
                for a in node.names:
                    yield node.lineno, a.name


def test_every_component_has_a_layer():
    comps = {_component(p) for p in PKG.rglob("*.py")}
    assert comps <= set(LAYER_OF), f"place these in LAYERS: {sorted(comps - set(LAYER_OF))}"


def test_no_module_imports_from_a_layer_above():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        me = _component(path)
        for line, other in _imports(path):
            if other not in LAYER_OF:
                continue    # a module of the package root level that is not a component
            if LAYER_OF[other] > LAYER_OF[me]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({me}, layer {LAYER_OF[me]}) "
                           f"imports {other} (layer {LAYER_OF[other]})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_torch_free_modules():
    """`edgeprune estimate` on a zoo model and `edgeprune ops` must not import torch."""
    code = ("import sys\n"
            "import edgeprune.cost, edgeprune.cost.mcu, edgeprune.cost.fpga, edgeprune.deploy\n"
            "import edgeprune.backends.tflm.memory, edgeprune.backends.finn.folding\n"
            "import edgeprune.support_matrix as s; s.matrix()\n"
            "import edgeprune.artifacts, edgeprune.zoo_graphs, edgeprune.cli\n"
            "import edgeprune.verify.c_runtime, edgeprune.verify.run, edgeprune.verify.qemu\n"
            "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
