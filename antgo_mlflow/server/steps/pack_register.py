"""Step *pack and register*: human labels → ``train/label`` (tag ``human-<iteration>``), confident
pseudo-labels → ``train/label`` (``pseudo-<iteration>``), the rest → ``train/unlabel``
(``rest-<iteration>``). The data is registered as standard GT folders (``add_data`` checks each);
registering the same tag again replaces the record, so a rerun duplicates nothing.

Inputs: ``human``, ``pseudo``, ``unlabel`` (GT files). Outputs: the registrations' tags and sizes.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def run(ctx, inputs: dict) -> dict:
    """Copy the three sets into ``<workdir>/data/`` and register them on the project."""
    from antgo_mlflow.gt import read_meta
    from antgo_mlflow.project.data_registry import add_data
    from antgo_mlflow.server.steps.gtfiles import read_abs, write_rel

    out: dict = {"registered": []}
    metrics = {}
    for name, split in (
        ("human", "train/label"),
        ("pseudo", "train/label"),
        ("unlabel", "train/unlabel"),
    ):
        src = inputs.get(name)
        samples = read_abs(src) if src else []
        metrics[f"register/{name}"] = len(samples)
        if not samples:
            continue
        if split == "train/label":
            # registered as labels: the experts' output is kept as a note, not as a pseudo-label
            # marker (which GTDataset would read as "no ground truth")
            for sample in samples:
                if "predictions" in sample:
                    sample["loop_predictions"] = sample.pop("predictions")
        folder = Path(ctx.workdir) / "data" / name
        if folder.exists():
            shutil.rmtree(folder)
        meta = read_meta(Path(src).parent) or {}
        classes = (meta.get("meta") or {}).get("category")
        gt = write_rel(folder, samples, classes)
        tag = f"{'rest' if name == 'unlabel' else name}-{ctx.iteration}"
        record = add_data(ctx.project, split, gt, tag)
        out["registered"].append(
            {"split": split, "tag": tag, "num": record["num"], "digest": record["digest"]}
        )
    ctx.echo(
        "pack_register: "
        + (
            ", ".join(f"{r['split']}:{r['tag']} ({r['num']})" for r in out["registered"])
            or "nothing"
        )
    )
    out["_metrics"] = metrics
    return out
