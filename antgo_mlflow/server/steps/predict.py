"""Step *predict*: the experts' ensemble pseudo-labels the new unlabelled pool
(``inference.pseudo_label``). Inputs: ``pool`` (GT file or shards), ``models`` (URIs),
``threshold``."""

from __future__ import annotations

import shutil
from pathlib import Path


def run(ctx, inputs: dict) -> dict:
    """Pseudo-label ``inputs['pool']`` with ``inputs['models']`` into ``<workdir>/predict``."""
    from antgo_mlflow.inference.pseudo_label import pseudo_label

    out = Path(ctx.workdir) / "predict"
    if out.exists():  # a killed attempt: pseudo_label refuses a used folder; its files are stale
        shutil.rmtree(out)
    result = pseudo_label(inputs["models"], inputs["pool"], out, threshold=inputs["threshold"])
    counts = dict(result.counts)
    ctx.echo(
        f"predict: {counts.get('total')} samples, {counts.get('confident')} confident "
        f"(threshold {inputs['threshold']}) with {len(inputs['models'])} model(s)"
    )
    return {
        "dir": str(out),
        "all": str(out / "pseudo-label.json"),
        "confident": str(out / "confident.json"),
        **{f"n_{k}": v for k, v in counts.items()},
        "_metrics": {f"predict/{k}": v for k, v in counts.items()},
    }
