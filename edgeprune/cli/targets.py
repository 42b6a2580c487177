"""`edgeprune targets`: list the built-in targets."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("targets", help="list the built-in MCU and FPGA targets")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..targets import list_targets
    targets = list_targets()
    if args.json:
        print(json.dumps([t.to_dict() for t in targets], indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title="edgeprune targets")
    for col in ("name", "kind", "core / part", "clock MHz", "memory / fabric", "runtime / board"):
        table.add_column(col)
    for t in targets:
        if t.kind == "mcu":
            table.add_row(t.name, "mcu", t.core, f"{t.clock_mhz:g}",
                          f"flash {t.flash_kb} KB, RAM {t.ram_kb} KB", t.runtime)
        else:
            table.add_row(t.name, "fpga", t.part, f"{t.clock_mhz:g}",
                          f"LUT {t.lut}, FF {t.ff}, BRAM18 {t.bram18}, URAM {t.uram}, DSP {t.dsp}",
                          t.finn_board)
    Console().print(table)
    return 0
