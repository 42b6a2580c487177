"""Pre-extracted layer graphs of the zoo models, so `edgeprune estimate <zoo name>` need not import
torch (importing torch alone takes ~2 s on a 2-core machine).

A graph depends only on the architecture code and the extractor, so each shipped JSON records a
hash of those source files; a JSON whose hash no longer matches is ignored and the model is traced
afresh. Regenerate with ``python -m edgeprune.zoo_graphs`` (tests check the files are current).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from .layergraph import LayerGraph

PACKAGE = Path(__file__).resolve().parent
GRAPH_DIR = PACKAGE / "models" / "graphs"
# Everything a zoo graph is computed from: the architectures and the extractor.
SOURCES = ("models/__init__.py", "models/lenet.py", "models/vgg.py", "models/mlperf_tiny.py",
           "graph.py", "layergraph.py")


def source_hash() -> str:
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode())
        h.update((PACKAGE / rel).read_bytes())
    return h.hexdigest()


def cached_graph(name: str) -> Optional[LayerGraph]:
    """The shipped graph of zoo model `name` with default arguments, or None if absent or stale."""
    path = GRAPH_DIR / f"{name}.json"
    if not name.replace("_", "").isalnum() or not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if d.get("source_hash") != source_hash():
        return None
    return LayerGraph.from_dict(d["graph"])


def write_all() -> None:
    from .graph import extract
    from .models import ZOO
    GRAPH_DIR.mkdir(exist_ok=True)
    digest = source_hash()
    for name, builder in sorted(ZOO.items()):
        g = extract(builder())
        text = json.dumps({"model": name, "source_hash": digest, "graph": g.to_dict()}, indent=1,
                          sort_keys=True)
        (GRAPH_DIR / f"{name}.json").write_text(text + "\n")


if __name__ == "__main__":
    write_all()
