"""edgeprune: cost-aware pruning and cluster quantization of PyTorch models for MCUs and FPGAs.

The spine is the layer graph (`edgeprune.graph.extract`); cost models (`edgeprune.cost`), pruning
methods (`edgeprune.prune`) and exporters (`edgeprune.export`) all read it.
"""
__version__ = "0.1.0"
