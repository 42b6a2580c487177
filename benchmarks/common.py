"""Shared helpers for benchmark scripts: result rows are upserted into JSON tables by key."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Dict, Iterable, List

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    """The command that produced a row, as a user would type it from the repo root."""
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def upsert_rows(table: str, rows: Iterable[Dict], key: Iterable[str]) -> List[Dict]:
    """Replace rows with the same key fields (else append) in benchmarks/results/<table>.json."""
    path = RESULTS / table
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: List[Dict] = json.loads(path.read_text()) if path.exists() else []
    key = tuple(key)
    for row in rows:
        k = tuple(row.get(f) for f in key)
        existing = [r for r in existing if tuple(r.get(f) for f in key) != k]
        existing.append(row)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(existing, indent=2) + "\n")
    tmp.replace(path)
    return existing
