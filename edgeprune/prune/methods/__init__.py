"""Pruning methods, each a `edgeprune.train.TrainHook` on the shared core (base.PruneMethod)."""
from __future__ import annotations

from typing import Dict, Type

from .base import MAX_AMOUNT, PruneMethod, PruneSpec
from .agp import AGP
from .statistical import Statistical
from .activation_density import ActivationDensity
from .filter_while_training import FilterWhileTraining
from .random_init import RandomInit
from .reconstruct import Reconstruct

METHODS: Dict[str, Type[PruneMethod]] = {
    "statistical": Statistical,
    "activation_density": ActivationDensity,
    "filter_while_training": FilterWhileTraining,
    "agp": AGP,
    "random_init": RandomInit,
    "reconstruct": Reconstruct,
}

# The criterion each method uses when none is given.
DEFAULT_CRITERION = {"statistical": "l1", "activation_density": "density",
                     "filter_while_training": "l1", "agp": "l1", "random_init": "random",
                     "reconstruct": "obs"}

__all__ = ["METHODS", "DEFAULT_CRITERION", "PruneMethod", "PruneSpec", "MAX_AMOUNT", "AGP",
           "Statistical", "ActivationDensity", "FilterWhileTraining", "RandomInit", "Reconstruct"]
