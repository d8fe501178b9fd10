"""Step *evaluate and promote*: the candidate and the product on the project's fixed test data;
the candidate becomes the product (alias ``production``, with a note carrying both metrics) only
if it is better by the project's margin. ``champion`` moves only to a model at least as good as the
current champion, so the champion never gets worse.

Inputs: ``candidate`` (a training run id), ``test`` (the ``test`` registration's address),
``margin``. Outputs: both top-1s, ``promoted`` and ``why``.
"""

from __future__ import annotations

#: on the step run: the versions the candidate is compared with, recorded before anything is
#: promoted, so an attempt restarted after a promotion compares with the same models (not with
#: the candidate itself, which is the product by then); "" = there was none
BEFORE_TAGS = {
    "production": "antgo.pipeline.product_before",
    "champion": "antgo.pipeline.champion_before",
}


def top1(uri: str, test: str, batch_size: int = 256) -> float:
    """Top-1 accuracy of model ``uri`` on the labelled GT ``test``."""
    from antgo_mlflow.active.inputs import labels_of, read_set
    from antgo_mlflow.active.predict import load_predictors, predict

    data = read_set(test, "test")
    labels = labels_of(data, "test")
    pred = predict(load_predictors([uri], False, batch_size), data, False, desc="evaluate")
    return float((pred.probs[0].argmax(1) == labels).mean())


def decide(candidate: float, product: float | None, margin: float) -> tuple[bool, str]:
    """The promotion rule: promote when there is no product or candidate >= product + margin."""
    if product is None:
        return True, f"no product yet; candidate top1={candidate:.4f}"
    if candidate >= product + margin:
        return (
            True,
            f"candidate top1={candidate:.4f} vs product top1={product:.4f} (margin {margin:g})",
        )
    return False, (
        f"not promoted: candidate top1={candidate:.4f} vs product top1={product:.4f} "
        f"(needs +{margin:g})"
    )


def versions_before(ctx, project: str) -> dict[str, str | None]:
    """The product's and champion's versions when this step first ran (recorded then)."""
    from antgo_mlflow.project.roles import alias_version

    tags = ctx.step_tags()
    out = {}
    for alias, tag in BEFORE_TAGS.items():
        if tag not in tags:
            ctx.tag(tag, str(alias_version(ctx.client, project, alias) or ""))
            tags = ctx.step_tags()
        out[alias] = tags[tag] or None
    return out


def run(ctx, inputs: dict) -> dict:
    """Evaluate both, apply :func:`decide`, promote (idempotent) and record why."""
    from antgo_mlflow.project.projects import get_project
    from antgo_mlflow.project.roles import alias_version, promote, register_run

    client, project = ctx.client, ctx.project
    experiment = get_project(project, client)
    before = versions_before(ctx, project)
    version = str(register_run(client, project, experiment, inputs["candidate"]).version)
    cand = top1(f"models:/{project}/{version}", inputs["test"])
    prod_version, champ_version = before["production"], before["champion"]
    prod = top1(f"models:/{project}/{prod_version}", inputs["test"]) if prod_version else None
    promoted, why = decide(cand, prod, float(inputs.get("margin", 0.0)))
    if promoted and alias_version(client, project, "production") != version:  # not yet
        promote(project, version, "product", note=why)
    champ = top1(f"models:/{project}/{champ_version}", inputs["test"]) if champ_version else None
    champion = champ is None or cand >= champ
    if champion and alias_version(client, project, "champion") != version:
        promote(project, version, "expert", note=f"champion: candidate top1={cand:.4f} vs {champ}")
    ctx.echo(f"evaluate_promote: {why}" + ("; champion" if champion else ""))
    metrics = {"eval/candidate_top1": cand}
    if prod is not None:
        metrics["eval/product_top1"] = prod
    return {
        "version": version,
        "candidate_top1": cand,
        "product_top1": prod,
        "promoted": promoted,
        "champion": champion,
        "why": why,
        "_metrics": metrics | {"eval/promoted": float(promoted)},
        "_note": why,
    }
