"""`edgeprune ops`: the support matrix, what each backend does with each op kind."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("ops", help="which op kinds each backend supports (the support matrix)",
                       description="For every op kind a layer graph can hold, what each backend "
                                   "does with it: native, fused, no-op, approximate (costed "
                                   "roughly) or unsupported (with the reason). The tables are "
                                   "the ones the backends dispatch on.")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--backend", default=None, help="show one backend's notes only")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..support_matrix import BACKENDS, matrix
    from ..errors import EdgepruneError
    from ..layergraph import OpKind

    m = matrix()
    if args.backend is not None and args.backend not in m:
        raise EdgepruneError(f"unknown backend '{args.backend}'; known: {', '.join(m)}")
    if args.json:
        print(json.dumps({b: {"description": BACKENDS[b][2],
                              "ops": {str(k): {"status": str(s.status), "note": s.note}
                                      for k, s in t.items()}}
                          for b, t in m.items()}, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table
    console = Console()
    console.width = max(console.width, 120)
    if args.backend is None:
        table = Table(title="edgeprune support matrix (edgeprune ops --backend B for the notes)")
        table.add_column("op kind")
        for b in m:
            table.add_column(b)
        style = {"native": "green", "fused": "cyan", "no-op": "dim", "approximate": "yellow",
                 "unsupported": "red"}
        for k in OpKind:
            table.add_row(str(k), *[f"[{style[m[b][k].status]}]{m[b][k].status}[/]" for b in m])
        console.print(table)
        for b, (_, _, what) in BACKENDS.items():
            console.print(f"[dim]{b}: {what}[/dim]")
        return 0
    t = m[args.backend]
    table = Table(title=f"{args.backend}: {BACKENDS[args.backend][2]}")
    for col in ("op kind", "status", "how / why"):
        table.add_column(col, overflow="fold")
    for k in OpKind:
        table.add_row(str(k), str(t[k].status), t[k].note)
    console.print(table)
    return 0
