"""The engine of `edgeprune run`: the stages a recipe asks for, each keyed by a hash of its
inputs, run in order into OUT with a progress bar on stderr and one line per stage on stdout;
the stages' own output (training epochs, ...) and third-party output go to OUT/run.log (with
`-v`, to the terminal as well).

OUT layout:

    OUT/recipe.toml            the recipe as given (its normalised form is in report.json)
    OUT/run.log                third-party output and the stages' own progress lines
    OUT/estimate/ train/ prune/ shrink/ quantize/ export/KIND-TARGET/ verify/
    OUT/report.html report.json figures/*.png
    OUT/.flow/state.json       per stage: the key of its inputs, done | running | failed, result

Skipping and resuming. A stage's key hashes the recipe fields it reads, the keys of the stages
it reads from, the fingerprints of the input files it names (weights, data directories) and
the edgeprune version. ``--resume`` on an existing OUT reuses every finished stage whose key is
unchanged and re-runs the others; a stage that was killed while running (status "running", same
key) continues from its checkpoints (training and pruning write one per epoch in
OUT/train.partial, OUT/prune.partial). Every stage writes its directory whole or not at all
(edgeprune.artifacts), so a kill never leaves a half-written stage behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..artifacts import MANIFEST, read_json, write_bytes, write_json
from ..errors import EdgepruneError
from .recipe import Recipe

FLOW_FORMAT = 1
STATE_DIR = ".flow"
STATE_FILE = "state.json"
RUN_LOG = "run.log"


class FlowError(EdgepruneError):
    """A run that cannot start or continue (OUT taken, a stage failed verification, ...)."""


@dataclass
class StageSpec:
    name: str                                   # "prune", "export/tflm-stm32l4r5-m4"
    title: str                                  # what the progress bar shows
    fn: Callable[["RunContext", "StageSpec"], Dict[str, Any]]
    config: Dict[str, Any]                      # the recipe fields it reads (hashed)
    after: List[str] = field(default_factory=list)   # stages whose results it reads (keys hashed)
    files: List[str] = field(default_factory=list)   # input files/directories it reads (fingerprinted)
    outputs: List[str] = field(default_factory=list)  # what it writes, relative to OUT
    params: Dict[str, Any] = field(default_factory=dict)  # not hashed: which export, ...
    always: bool = False                        # re-run every time (the report: cheap, and it
                                                # reads every stage's record)


def fingerprint(path: str) -> Optional[str]:
    """Content hash of a file; names, sizes and mtimes of a directory's files (data sets are
    large and do not change in place); None for names that are not paths (zoo models, data
    shortcuts)."""
    p = Path(path)
    if p.is_file():
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    return None


def stage_key(spec: StageSpec, upstream: Dict[str, str]) -> str:
    from .. import __version__
    material = {"format": FLOW_FORMAT, "edgeprune": __version__, "stage": spec.name,
                "config": spec.config, "after": {n: upstream.get(n) for n in spec.after},
                "files": {f: fingerprint(f) for f in spec.files}}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


class _LogTap(io.TextIOBase):
    """stdout of a stage: written to OUT/run.log; training epoch lines also update the bar."""

    _EPOCH = re.compile(r"epoch (\d+)/(\d+)\s+loss ([0-9.]+)\s+test acc ([0-9.]+)%")

    def __init__(self, log: Path, bar, echo=None):
        self._f = open(log, "a")
        self._bar = bar
        self._echo = echo            # -v: the stage's own output shows on the terminal too
        self._buf = ""

    def write(self, s: str) -> int:
        self._f.write(s)
        self._f.flush()
        if self._echo is not None:
            self._echo.write(s)
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            m = self._EPOCH.search(line)
            if m and self._bar is not None:
                self._bar.set_postfix_str(f"epoch {m.group(1)}/{m.group(2)}, test acc "
                                          f"{m.group(4)} %")
        return len(s)

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def close(self) -> None:
        self._f.close()


class RunContext:
    """What every stage sees: the recipe, OUT, the finished stages' results, the data."""

    def __init__(self, recipe: Recipe, out: Path, *, resume: bool):
        self.recipe = recipe
        self.out = out
        self.resume = resume
        self.results: Dict[str, Dict[str, Any]] = {}
        self.keys: Dict[str, str] = {}
        self._ds = None

    def dataset(self):
        """The recipe's data set, loaded once (training subset per [data] n_train; the test set
        is always the full one)."""
        if self._ds is None:
            from ..data import load_dataset
            ds = load_dataset(self.recipe.dataset)
            n_train = self.recipe.data["data"].get("n_train")
            if n_train:
                ds = ds.subset(n_train, None)
            self._ds = ds
        return self._ds

    def path(self, rel: str) -> Path:
        return self.out / rel


class Flow:
    """Runs a recipe's stages into `out` (see the module docstring)."""

    def __init__(self, recipe: Recipe, out: os.PathLike, *, resume: bool = False,
                 progress: bool = True, stop_after: Optional[str] = None,
                 recipe_text: Optional[bytes] = None):
        from .stages import plan
        self.recipe = recipe
        self.out = Path(out).absolute()
        self.resume = resume
        self.progress = progress
        self.recipe_text = recipe_text
        self.plan = plan(recipe)
        if stop_after is not None:
            names = [s.name for s in self.plan]
            if stop_after not in names:
                raise FlowError(f"no stage '{stop_after}' in this recipe ({', '.join(names)})")
            self.plan = self.plan[:names.index(stop_after) + 1]
        self.state_path = self.out / STATE_DIR / STATE_FILE

    # ---- OUT
    def check_out(self) -> None:
        """Before any work: OUT is new, or an earlier run of the flow with --resume."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise FlowError(f"{out}: exists and is not a directory (choose a directory for -o)")
        if out.is_dir() and any(out.iterdir()):
            if not self.state_path.is_file():
                raise FlowError(f"{out}: directory is not empty and holds no edgeprune run; "
                                f"choose another -o (edgeprune run never writes into a directory "
                                f"it did not create)")
            if not self.resume:
                raise FlowError(f"{out}: holds an earlier run; pass --resume to continue it (stages "
                                f"whose inputs did not change are reused, the others re-run) or "
                                f"choose another -o")
        probe = out
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise FlowError(f"{out}: cannot write there ({probe} is not writable)")

    def _load_state(self) -> Dict[str, Any]:
        if not self.state_path.is_file():
            return {"format": FLOW_FORMAT, "stages": {}}
        st = read_json(self.state_path, "run state")
        if not isinstance(st, dict) or st.get("format") != FLOW_FORMAT:
            raise FlowError(f"{self.state_path}: not a run state this edgeprune writes; choose "
                            f"another -o")
        return st

    def _save_state(self, state: Dict[str, Any]) -> None:
        write_json(self.state_path, state, indent=1)
        self._write_manifest()

    def _write_manifest(self) -> None:
        """OUT's manifest lists what the flow wrote, so that edgeprune's overwrite rules (and a
        user) can tell it from files added later."""
        owned = [RUN_LOG, "recipe.toml", "report.html", "report.json", "figures", STATE_DIR]
        for s in self.plan:
            owned += s.outputs
        files = []
        for top in sorted(set(owned)):
            p = self.out / top
            if p.is_file():
                files.append(top)
            elif p.is_dir():
                files += sorted(str(f.relative_to(self.out)) for f in p.rglob("*") if f.is_file())
        write_json(self.out / MANIFEST, {"tool": "edgeprune", "files": files})

    # ---- running
    def run(self) -> Dict[str, Any]:
        """Run (or reuse) every stage; returns {stage: result}. A stage's EdgepruneError ends the
        run with OUT holding the stages finished before it."""
        from .. import logs
        self.check_out()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / STATE_DIR).mkdir(exist_ok=True)
        log = self.out / RUN_LOG
        logs.redirect(log)
        if self.recipe_text is not None:
            write_bytes(self.out / "recipe.toml", self.recipe_text)
        state = self._load_state()
        stages = state["stages"]
        ctx = RunContext(self.recipe, self.out, resume=self.resume)
        bar = self._bar()
        try:
            for spec in self.plan:
                key = stage_key(spec, ctx.keys)
                ctx.keys[spec.name] = key
                rec = stages.get(spec.name) or {}
                if bar is not None:
                    bar.set_description(spec.title)
                    bar.set_postfix_str("")
                if (not spec.always and rec.get("status") == "done" and rec.get("key") == key
                        and all((self.out / o).exists() for o in spec.outputs)):
                    ctx.results[spec.name] = rec["result"]
                    self._say(bar, f"  {spec.title:<34} unchanged, reused")
                    self._tick(bar)
                    continue
                continue_partial = (self.resume and rec.get("status") == "running"
                                    and rec.get("key") == key)
                stages[spec.name] = {"key": key, "status": "running",
                                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                self._save_state(state)
                t0 = time.time()
                tap = _LogTap(log, bar, sys.stdout if logs.verbose() else None)
                try:
                    with contextlib.redirect_stdout(tap):
                        print(f"=== stage {spec.name} (key {key[:12]}"
                              f"{', continuing' if continue_partial else ''})", flush=True)
                        result = spec.fn(ctx, spec, continue_partial)
                except BaseException as e:
                    if isinstance(e, EdgepruneError):
                        stages[spec.name].update(status="failed", error=str(e))
                        self._save_state(state)
                    raise       # killed or interrupted: stays "running" and --resume continues
                finally:
                    tap.close()
                seconds = time.time() - t0
                stages[spec.name] = {"key": key, "status": "done", "seconds": round(seconds, 2),
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     "result": result}
                ctx.results[spec.name] = result
                self._save_state(state)
                self._say(bar, f"  {spec.title:<34} done in {_duration(seconds)}"
                               f"{'  ' + result['headline'] if result.get('headline') else ''}")
                self._tick(bar)
        finally:
            if bar is not None:
                bar.close()
        # Stages the recipe no longer has are dropped from the state (their files stay listed
        # in no manifest and are the user's to remove).
        for name in list(stages):
            if name not in ctx.results:
                del stages[name]
        self._save_state(state)
        return {"results": ctx.results, "seconds": {n: stages[n].get("seconds") for n in stages}}

    def _bar(self):
        if not self.progress:
            return None
        from tqdm import tqdm
        return tqdm(total=len(self.plan), file=sys.stderr, unit="stage", leave=False,
                    disable=not sys.stderr.isatty(), dynamic_ncols=True,
                    bar_format="{desc}: {bar} {n_fmt}/{total_fmt} stages [{elapsed}]{postfix}")

    def _say(self, bar, text: str) -> None:
        if not self.progress:
            return
        if bar is not None and not bar.disable:
            bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    @staticmethod
    def _tick(bar) -> None:
        if bar is not None:
            bar.update(1)


def _duration(s: float) -> str:
    return f"{s:.1f} s" if s < 90 else f"{s / 60:.1f} min"


def run_recipe(recipe: Recipe, out: os.PathLike, *, resume: bool = False, progress: bool = True,
               recipe_text: Optional[bytes] = None, stop_after: Optional[str] = None) -> Dict[str, Any]:
    """Run `recipe` into `out` (the Python entry point of `edgeprune run`)."""
    from .recipe import check_targets
    check_targets(recipe)
    flow = Flow(recipe, out, resume=resume, progress=progress, recipe_text=recipe_text,
                stop_after=stop_after)
    return flow.run()


__all__ = ["Flow", "FlowError", "RunContext", "StageSpec", "run_recipe", "stage_key"]
