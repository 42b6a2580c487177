"""The recipe: one TOML file naming the model, data, targets, budgets, pruning, quantization and
exports of a run (`edgeprune run RECIPE.toml`). Every field is checked on load; a bad recipe is
one `RecipeError` line naming the file, the key and what was expected.

    [model]
    name = "lenet5"              # zoo name, a torch.export .pt2, or an edgeprune output directory
    weights = "sd.pt"            # optional: trained weights (state_dict); the train stage loads
                                 # and evaluates them instead of training

    [data]
    dataset = "fashion-mnist"    # fashion-mnist | mnist-10k | a directory (IDX or .npz)
    n_train = 2000               # optional: first n training images (quick runs; the test set
                                 # is always the full one, so every accuracy is comparable)

    [[targets]]                  # one or more; name (built-in) or path (.toml), plus the
    name = "stm32l4r5-m4"        # deployment settings of edgeprune.deploy: runtime, wbits,
                                 # abits, fps

    [train]                      # optional: train the dense model (absent: no training)
    epochs = 4                   # seed, lr, batch_size, lr_schedule, max_steps_per_epoch

    [prune]                      # optional: method, granularity, orientation, criterion,
    method = "statistical"       # sparsity, target (one of [[targets]]), budgets, epochs, lr,
    budgets = ["latency_ms=25"]  # lr_schedule, max_steps_per_epoch

    [quantize]                   # optional: cluster_bits (+ cluster_epochs) clusters the weights
    cluster_bits = 4             # the MCU exports quantize to int8 themselves; FPGA W/A bits are
    qat_epochs = 1               # the targets' wbits/abits, trained in for qat_epochs

    [[export]]                   # optional, any number: kind (tflm | c | finn | hls) and target
    kind = "tflm"
    target = "stm32l4r5-m4"

    [verify]                     # images: test images each verifier runs (0 = the full test set)
    images = 0                   # qonnx_images: at most this many for QONNX execution, which
    qonnx_images = 1000          # runs node by node in Python (0 = as many as images)

Relative paths in a recipe are relative to the recipe file.
"""
from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..errors import EdgepruneError

# Export kinds and the target kind each builds for. Exporters added later (rtl, ...) register
# here and in flow.verify.VERIFIERS.
EXPORT_KINDS: Dict[str, str] = {"tflm": "mcu", "c": "mcu", "finn": "fpga", "hls": "fpga"}

_SECTIONS = ("name", "model", "data", "targets", "train", "prune", "quantize", "export", "verify",
             "report")


class RecipeError(EdgepruneError, ValueError):
    """A recipe that cannot be run: bad TOML, unknown key, wrong type or value."""


# Allowed keys per section: key -> (python types, check or None, what is expected)
def _pos_int(v): return isinstance(v, int) and not isinstance(v, bool) and v >= 1
def _nonneg_int(v): return isinstance(v, int) and not isinstance(v, bool) and v >= 0
def _pos_num(v): return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
def _str(v): return isinstance(v, str) and bool(v.strip())
def _bool(v): return isinstance(v, bool)
def _str_list(v): return isinstance(v, list) and all(_str(x) for x in v)
def _bits(v): return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8
def _sparsity(v): return _str(v) or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1)


_KEYS: Dict[str, Dict[str, tuple]] = {
    "model": {"name": (_str, "a zoo name or a path"), "weights": (_str, "a state_dict path"),
              "trust_pickle": (_bool, "true or false")},
    "data": {"dataset": (_str, "fashion-mnist, mnist-10k or a directory"),
             "n_train": (_pos_int, "an integer >= 1")},
    "target": {"name": (_str, "a target name or .toml path"), "runtime": (_str, "a runtime name"),
               "wbits": (_bits, "an integer in 1..8"), "abits": (_bits, "an integer in 1..8"),
               "fps": (_pos_num, "a number > 0")},
    "train": {"epochs": (_pos_int, "an integer >= 1"), "seed": (_nonneg_int, "an integer >= 0"),
              "lr": (_pos_num, "a number > 0"), "batch_size": (_pos_int, "an integer >= 1"),
              "lr_schedule": (lambda v: v in ("constant", "cosine"), "constant or cosine"),
              "max_steps_per_epoch": (_pos_int, "an integer >= 1")},
    "prune": {"method": (_str, "a pruning method"), "granularity": (_str, "a granularity"),
              "orientation": (_str, "memory, workload or target"),
              "criterion": (_str, "a criterion"), "sparsity": (_sparsity, "0.9, '90%' or '10x'"),
              "target": (_str, "the name of one of [[targets]]"),
              "budgets": (_str_list, 'a list like ["latency_ms=25", "flash_kb=64"]'),
              "epochs": (_pos_int, "an integer >= 1"), "lr": (_pos_num, "a number > 0"),
              "lr_schedule": (lambda v: v in ("constant", "cosine"), "constant or cosine"),
              "max_steps_per_epoch": (_pos_int, "an integer >= 1")},
    "quantize": {"cluster_bits": (_bits, "an integer in 1..8"),
                 "cluster_epochs": (_nonneg_int, "an integer >= 0"),
                 "qat_epochs": (_pos_int, "an integer >= 1"),
                 "max_steps_per_epoch": (_pos_int, "an integer >= 1")},
    "export": {"kind": (lambda v: v in EXPORT_KINDS, " | ".join(EXPORT_KINDS)),
               "target": (_str, "the name of one of [[targets]]")},
    "verify": {"images": (_nonneg_int, "an integer >= 0 (0 = the full test set)"),
               "qonnx_images": (_nonneg_int, "an integer >= 0 (0 = as many as images)")},
    "report": {"title": (_str, "a string")},
}

_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "train": {"epochs": 4, "seed": 0, "lr": 1e-3, "batch_size": 128, "lr_schedule": "constant"},
    "prune": {"method": "statistical", "granularity": "channel", "orientation": "target",
              "budgets": [], "epochs": 4, "lr": 1e-3, "lr_schedule": "constant"},
    "quantize": {"cluster_epochs": 1, "qat_epochs": 1},
    "verify": {"images": 0, "qonnx_images": 1000},
}


def _check_table(where: str, table: Any, keys: Dict[str, tuple], source: str) -> Dict[str, Any]:
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [{where}] must be a table")
    for k, v in table.items():
        if k not in keys:
            raise RecipeError(f"{source}: [{where}] has unknown key '{k}'; known: "
                              f"{', '.join(keys)}")
        check, expect = keys[k]
        if not check(v):
            raise RecipeError(f"{source}: [{where}] {k} = {v!r}: expected {expect}")
    return dict(table)


def _resolve_path(value: str, base: Path) -> str:
    """A relative path that exists relative to the recipe becomes absolute; names stay names."""
    p = Path(value)
    if not p.is_absolute() and (base / p).exists():
        return str((base / p).resolve())
    return value


class Recipe:
    """A checked recipe: `.data` is the normalised dict (defaults filled in, paths resolved);
    the stages read their sections from it and hash them (flow.runner)."""

    def __init__(self, data: Dict[str, Any], source: str = "recipe"):
        self.source = source
        self.data = data

    # ---- sections
    @property
    def name(self) -> str:
        return self.data.get("name") or Path(self.source).stem

    @property
    def model(self) -> Dict[str, Any]:
        return self.data["model"]

    @property
    def dataset(self) -> str:
        return self.data["data"]["dataset"]

    @property
    def targets(self) -> List[Dict[str, Any]]:
        return self.data["targets"]

    def target(self, name: str) -> Dict[str, Any]:
        for t in self.targets:
            if t["name"] == name:
                return t
        raise RecipeError(f"{self.source}: no target named '{name}' in [[targets]]")

    def section(self, name: str) -> Optional[Dict[str, Any]]:
        return self.data.get(name)

    @property
    def exports(self) -> List[Dict[str, Any]]:
        return self.data.get("export", [])

    def with_budgets(self, budgets: List[str]) -> "Recipe":
        """The same recipe with [prune] budgets replaced (a sweep point)."""
        d = copy.deepcopy(self.data)
        if "prune" not in d:
            raise RecipeError(f"{self.source}: a budget needs a [prune] section")
        d["prune"]["budgets"] = list(budgets)
        return Recipe(validate(d, self.source), self.source)

    def with_model_weights(self, weights: str) -> "Recipe":
        """The same recipe starting from trained `weights` (the train stage then loads them)."""
        d = copy.deepcopy(self.data)
        d["model"]["weights"] = str(weights)
        d.pop("train", None)
        return Recipe(validate(d, self.source), self.source)


def validate(data: Dict[str, Any], source: str = "recipe", base: Optional[Path] = None) -> Dict[str, Any]:
    """The checked, normalised recipe dict (defaults filled in); a RecipeError otherwise."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a TOML table")
    unknown = [k for k in data if k not in _SECTIONS]
    if unknown:
        raise RecipeError(f"{source}: unknown section '{unknown[0]}'; known: {', '.join(_SECTIONS)}")
    base = base or Path(".")
    out: Dict[str, Any] = {}
    if "name" in data:
        if not _str(data["name"]):
            raise RecipeError(f"{source}: name must be a non-empty string")
        out["name"] = data["name"]
    for req in ("model", "data", "targets"):
        if req not in data:
            raise RecipeError(f"{source}: missing [{req}]" if req != "targets"
                              else f"{source}: missing [[targets]] (at least one target)")
    model = _check_table("model", data["model"], _KEYS["model"], source)
    if "name" not in model:
        raise RecipeError(f"{source}: [model] needs name (a zoo name or a path)")
    model["name"] = _resolve_path(model["name"], base)
    if "weights" in model:
        model["weights"] = _resolve_path(model["weights"], base)
    out["model"] = model
    dat = _check_table("data", data["data"], _KEYS["data"], source)
    if "dataset" not in dat:
        raise RecipeError(f"{source}: [data] needs dataset")
    dat["dataset"] = _resolve_path(dat["dataset"], base)
    out["data"] = dat

    targets = data["targets"]
    if not isinstance(targets, list) or not targets:
        raise RecipeError(f"{source}: [[targets]] must be a list of tables with at least one target")
    out["targets"] = []
    seen = set()
    for i, t in enumerate(targets):
        t = _check_table(f"targets {i + 1}", t, _KEYS["target"], source)
        if "name" not in t:
            raise RecipeError(f"{source}: [[targets]] entry {i + 1} needs name")
        t["name"] = _resolve_path(t["name"], base)
        if t["name"] in seen:
            raise RecipeError(f"{source}: target '{t['name']}' is listed twice")
        seen.add(t["name"])
        out["targets"].append(t)
    names = [t["name"] for t in out["targets"]]

    for sec in ("train", "prune", "quantize", "verify", "report"):
        if sec in data:
            out[sec] = {**_DEFAULTS.get(sec, {}), **_check_table(sec, data[sec], _KEYS[sec], source)}
    if "verify" not in out:
        out["verify"] = dict(_DEFAULTS["verify"])
    pr = out.get("prune")
    if pr is not None:
        if pr.get("target") is None and (pr["orientation"] == "target" or pr["budgets"]):
            pr["target"] = names[0]
        if pr.get("target") is not None and pr["target"] not in names:
            raise RecipeError(f"{source}: [prune] target = '{pr['target']}' is not one of "
                              f"[[targets]] ({', '.join(names)})")
    exports = data.get("export", [])
    if not isinstance(exports, list):
        raise RecipeError(f"{source}: [[export]] must be a list of tables")
    out["export"] = []
    seen_exports = set()
    for i, e in enumerate(exports):
        e = _check_table(f"export {i + 1}", e, _KEYS["export"], source)
        if "kind" not in e:
            raise RecipeError(f"{source}: [[export]] entry {i + 1} needs kind "
                              f"({' | '.join(EXPORT_KINDS)})")
        if "target" not in e:
            if len(names) != 1:
                raise RecipeError(f"{source}: [[export]] entry {i + 1} ({e['kind']}) needs target "
                                  f"(one of {', '.join(names)})")
            e["target"] = names[0]
        if e["target"] not in names:
            raise RecipeError(f"{source}: [[export]] {e['kind']}: target '{e['target']}' is not one "
                              f"of [[targets]] ({', '.join(names)})")
        if (e["kind"], e["target"]) in seen_exports:
            raise RecipeError(f"{source}: [[export]] {e['kind']} for {e['target']} is listed twice")
        seen_exports.add((e["kind"], e["target"]))
        out["export"].append(e)
    if out["export"] and "train" not in out and "weights" not in model and "prune" not in out \
            and not Path(model["name"]).exists():
        raise RecipeError(f"{source}: exporting an untrained zoo model: add [train] or "
                          f"[model] weights")
    return out


def check_targets(recipe: Recipe) -> None:
    """Load every target and deployment, and check each export's kind against its target's
    kind (cheap; before any stage runs)."""
    from ..deploy import Deployment
    kinds = {}
    for t in recipe.targets:
        settings = {k: v for k, v in t.items() if k != "name"}
        try:
            dep = Deployment.for_target(t["name"], **settings)
        except EdgepruneError as e:
            raise RecipeError(f"{recipe.source}: [[targets]] {t['name']}: {e}") from None
        kinds[t["name"]] = dep.kind
    for e in recipe.exports:
        want = EXPORT_KINDS[e["kind"]]
        if kinds[e["target"]] != want:
            raise RecipeError(f"{recipe.source}: [[export]] {e['kind']} builds for {want.upper()} "
                              f"targets; '{e['target']}' is an {kinds[e['target']].upper()} target")
    if any(EXPORT_KINDS[e["kind"]] == "fpga" for e in recipe.exports) and "prune" not in recipe.data \
            and "train" not in recipe.data and "weights" not in recipe.model:
        raise RecipeError(f"{recipe.source}: FPGA exports need a trained model")


def load_recipe(path) -> Recipe:
    """Read and check the recipe file at `path`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, not a recipe file") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: invalid TOML ({e})") from None
    recipe = Recipe(validate(data, str(path), p.resolve().parent), str(path))
    return recipe


def recipe_from_dict(data: Mapping[str, Any], source: str = "recipe") -> Recipe:
    return Recipe(validate(copy.deepcopy(dict(data)), source), source)
