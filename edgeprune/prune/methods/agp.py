"""AGP: automated gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune").

The amount removed follows the cubic schedule ``s_t = s_f * (1 - (1 - (t - t0) / (n dt))^3)``
from the first decision t0 to the last (t0 + n dt); every dt steps the least important units
(magnitude by default, any criterion and granularity) are masked with *hard* masks, so a pruned
weight stays at zero. Fast pruning early, when redundancy is high, slow near the end.
"""
from __future__ import annotations

from .base import PruneMethod


class AGP(PruneMethod):
    name = "agp"
    soft = False
