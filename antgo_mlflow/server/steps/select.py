"""Step *select*: ``antgo active rank`` picks the labelling budget; of the rest, the confident
pseudo-labels go to training and the others stay unlabelled.

Inputs: ``pool``, ``models``, ``budget``, ``strategy`` (None: the project's), ``predicted`` (the
predict step's ``all`` file). Outputs: ``selected`` (to label), ``pseudo`` and ``unlabel`` GT files.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def run(ctx, inputs: dict) -> dict:
    """Rank the pool and split it three ways (see the module docstring)."""
    from antgo_mlflow.active.rank import rank
    from antgo_mlflow.gt import read_meta
    from antgo_mlflow.server.steps.gtfiles import key_of, read_abs, write_rel

    work = Path(ctx.workdir) / "select"
    if work.exists():
        shutil.rmtree(work)
    predicted = read_abs(inputs["predicted"])
    pool_size = len(predicted)
    budget = min(int(inputs["budget"]), pool_size)
    result = rank(
        inputs["pool"],
        work / "rank",
        models=inputs["models"],
        budget=budget,
        strategy=inputs.get("strategy"),
        project=ctx.project,
        log=False,
    )
    chosen = {key_of(s) for s in read_abs(result.files["selected.json"])}
    meta = read_meta(Path(inputs["predicted"]).parent) or {}
    classes = (meta.get("meta") or {}).get("category")
    selected, pseudo, rest = [], [], []
    for s in predicted:
        if key_of(s) in chosen:
            s = {k: v for k, v in s.items() if k not in ("image_label", "image_label_name")}
            selected.append(s)
        elif (s.get("predictions") or {}).get("confident") is True:
            pseudo.append(s)
        else:
            rest.append(s)
    ctx.echo(
        f"select: {len(selected)} to label, {len(pseudo)} pseudo-labelled, {len(rest)} stay "
        f"unlabelled (strategy {result.options.strategy['type']})"
    )
    return {
        "selected": write_rel(work / "selected", selected, classes),
        "pseudo": write_rel(work / "pseudo", pseudo, classes),
        "unlabel": write_rel(work / "unlabel", rest, classes),
        "classes": classes,
        "n_selected": len(selected),
        "n_pseudo": len(pseudo),
        "n_unlabel": len(rest),
        "_metrics": {
            "select/selected": len(selected),
            "select/pseudo_accepted": len(pseudo),
            "select/unlabelled": len(rest),
        },
    }
