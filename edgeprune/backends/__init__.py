"""Lowerings of a model to a deployment runtime (torch-free: the cost model reads them too)."""
