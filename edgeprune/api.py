"""The Python API: what the CLI does, callable from a notebook with the same settings.

    import edgeprune.api as ep

    dep = ep.deployment("stm32l4r5-m4")                       # or ("pynq-z2", wbits=4, abits=4)
    report = ep.estimate("lenet5", dep)                       # a CostReport
    res = ep.prune(ep.PruneConfig("lenet5", "fashion-mnist", method="statistical",
                                  orientation="target", target="stm32l4r5-m4",
                                  budgets=["latency_ms=25"], epochs=4), "runs/p")
    ep.cluster(ep.ClusterConfig("runs/p", "fashion-mnist", bits=4), "runs/c")
    ep.export_tflm("runs/c", dep, "runs/tflm", "fashion-mnist")
    ep.export_finn("runs/p", ep.deployment("pynq-z2"), "runs/finn", data="fashion-mnist")

MODEL arguments take what the CLI takes (a zoo name, a .pt2 program, an edgeprune output
directory) or an ``nn.Module``; deployments take a Deployment, a Target or a target name.
Heavy libraries are imported only by the functions that need them.
"""
from __future__ import annotations

from typing import Optional

from .deploy import Deployment, as_deployment
from .layergraph import LayerGraph
from .prune.runner import PruneConfig, PruneResult
from .quant.runner import ClusterConfig, ClusterResult

__all__ = ["Deployment", "deployment", "load_model", "layer_graph", "estimate", "what_if",
           "prune", "PruneConfig", "PruneResult", "cluster", "ClusterConfig", "ClusterResult",
           "export_tflm", "export_c", "export_finn", "export_hls"]


def deployment(target, **settings) -> Deployment:
    """A checked Deployment on `target` (name, .toml path or Target): runtime, wbits, abits,
    fps, bits_per_layer, compression (see edgeprune.deploy)."""
    return Deployment.for_target(target, **settings)


def load_model(model, weights: Optional[str] = None, trust_pickle: bool = False):
    """An nn.Module from a MODEL spec (returned as is when it already is a module)."""
    if not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__"):
        return model
    from .models.loading import load_model as _load
    return _load(str(model), weights=weights, trust_pickle=trust_pickle)


def layer_graph(model, weights: Optional[str] = None) -> LayerGraph:
    """The layer graph of `model` (a LayerGraph is returned as is; a zoo name without weights
    uses the shipped graph and does not import torch)."""
    if isinstance(model, LayerGraph):
        return model
    if isinstance(model, str) and weights is None:
        from .zoo_graphs import cached_graph
        g = cached_graph(model)
        if g is not None:
            return g
    from .graph import extract
    return extract(load_model(model, weights))


def estimate(model, deployment, **opts):
    """What `model` costs in `deployment`: an edgeprune.cost.CostReport."""
    from . import cost
    from .support_matrix import export_notes
    dep = as_deployment(deployment)
    g = layer_graph(model)
    report = cost.estimate(g, dep, **opts)
    report.totals["params"] = g.compute_params     # deployed (BN folded) parameter count
    blockers = export_notes(g, dep.kind)
    report.totals["exportable"] = not blockers
    report.notes[:0] = blockers
    return report


def what_if(model, deployment, fraction: float = 0.1):
    """Per compute layer, what removing `fraction` of its weights or channels saves."""
    from . import cost
    return cost.what_if(layer_graph(model), as_deployment(deployment), fraction)


def prune(config: PruneConfig, out=None) -> PruneResult:
    """One pruning run (edgeprune.prune.runner.run_prune); writes OUT when given."""
    from .prune.runner import run_prune
    return run_prune(config, out)


def cluster(config: ClusterConfig, out=None) -> ClusterResult:
    """One cluster-quantization run (edgeprune.quant.runner.run_cluster); writes OUT when given."""
    from .quant.runner import run_cluster
    return run_cluster(config, out)


def export_tflm(model, deployment, out, data=None, **kw) -> dict:
    """edgeprune.export.tflm.export_tflm with a MODEL spec or module; returns the report."""
    from .export.tflm import export_tflm as _export
    return _export(load_model(model), deployment, out, data, **kw)


def export_c(model, deployment, out, data=None, **kw) -> dict:
    """edgeprune.export.c.export_c (edgeprune-c sources) with a MODEL spec or module; returns the
    report."""
    from .export.c import export_c as _export
    return _export(load_model(model), deployment, out, data, **kw)


def export_finn(model, deployment, out, *, data, **kw) -> dict:
    """edgeprune.export.finn.export_finn with a MODEL spec or module; returns the report."""
    from .export.finn import export_finn as _export
    return _export(load_model(model), deployment, out, data=data, **kw)


def export_hls(model, deployment, out, *, data, **kw) -> dict:
    """edgeprune.export.hls.export_hls with a MODEL spec or module; returns the report."""
    from .export.hls import export_hls as _export
    return _export(load_model(model), deployment, out, data=data, **kw)
