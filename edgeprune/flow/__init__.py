"""`edgeprune run` and `edgeprune sweep`: a recipe (TOML) drives the whole flow.

- `recipe.py`: the recipe schema and its checks (one-line RecipeError);
- `runner.py`: the engine (stages keyed by a hash of their inputs, skip, resume, progress, log);
- `stages.py`: the stages (estimate, train, prune, shrink, quantize, export, verify, report) on
  top of edgeprune.api;
- `verify.py`: one verifier per export kind (VERIFIERS);
- `report.py`: OUT/report.html (self-contained), figures/*.png, report.json;
- `sweep.py`: one run per budget, in parallel (pluggable executors), and the Pareto front.
"""
