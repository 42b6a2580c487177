"""`edgeprune run RECIPE.toml -o OUT [--resume]`: the whole flow from one recipe."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run a recipe: estimate, train, prune, shrink, quantize, export, verify, report",
        description="Run the stages a recipe (TOML) asks for into OUT and write OUT/report.html. "
                    "Stages whose inputs did not change are reused with --resume; an interrupted "
                    "stage continues from its last checkpoint. Third-party output goes to "
                    "OUT/run.log (-v shows it). Recipe format: edgeprune/flow/recipe.py; examples "
                    "in recipes/.")
    p.add_argument("recipe", metavar="RECIPE.toml")
    p.add_argument("-o", "--out", default=None,
                   help="output directory [runs/<recipe name>]")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT: reuse unchanged finished stages, continue an "
                        "interrupted one, re-run stages whose inputs changed")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..flow.recipe import load_recipe
    from ..flow.runner import run_recipe
    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    res = run_recipe(recipe, out, resume=args.resume,
                     recipe_text=Path(args.recipe).read_bytes())
    failed = res["results"].get("verify", {}).get("failed") or []
    print(f"report: {out / 'report.html'}")
    if failed:
        from ..flow.runner import FlowError
        raise FlowError(f"verification failed for {', '.join(failed)} (see {out / 'report.html'})")
    return 0
