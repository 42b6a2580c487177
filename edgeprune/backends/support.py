"""What each backend does with each op kind: one table per backend, keyed by `OpKind`.

Every backend (the TFLite op plan, the MCU cycle model, the FPGA cost model, the FPGA exporters,
...) declares, for *every* `OpKind`, either how it handles it or why it does not. The tables are
data the backends themselves dispatch on (a kind missing from a table cannot be lowered), so
what ``edgeprune ops`` prints is what the code does. The matrix of all tables is
``edgeprune.support_matrix``; tests/test_support_matrix.py fails when a table misses a kind or
says something the backend does not do.

Torch-free: `edgeprune ops` and `edgeprune estimate` import this without torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import List, Mapping

from ..layergraph import OpKind


class Status(StrEnum):
    NATIVE = "native"            # lowered to an op/kernel/layer of its own
    FUSED = "fused"              # merged into the op before or after it (BN, ReLU, pad, ...)
    NOOP = "no-op"               # removed: nothing to compute at inference
    APPROX = "approximate"       # handled, but its cost is an approximation (the note says how)
    UNSUPPORTED = "unsupported"  # refused with the reason in the note


@dataclass(frozen=True)
class Support:
    status: Status
    note: str

    @property
    def supported(self) -> bool:
        return self.status != Status.UNSUPPORTED

    def __str__(self) -> str:
        return f"{self.status}: {self.note}" if self.note else str(self.status)


def native(note: str) -> Support:
    return Support(Status.NATIVE, note)


def fused(note: str) -> Support:
    return Support(Status.FUSED, note)


def noop(note: str = "removed at inference") -> Support:
    return Support(Status.NOOP, note)


def approx(note: str) -> Support:
    return Support(Status.APPROX, note)


def unsupported(reason: str) -> Support:
    return Support(Status.UNSUPPORTED, reason)


def missing_kinds(table: Mapping[OpKind, object]) -> List[OpKind]:
    """The op kinds a backend table does not mention (must be empty)."""
    return [k for k in OpKind if k not in table]
