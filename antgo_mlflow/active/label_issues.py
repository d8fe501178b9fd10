"""``antgo active issues``: find label errors in a labelled set with cleanlab.

cleanlab's ``find_label_issues`` / ``get_label_quality_scores`` compare each given label with the
models' class probabilities. Those probabilities must be **out of sample**: a model scores the
samples it trained on too well (it learnt their labels, the wrong ones too), so in-sample
probabilities flatter the labels and hide errors. Either give models that never saw ``src``
(``--models``), or ``--cv-folds=K`` with a training ``--config``: K models are trained through the
engine, each scoring the fold it did not train on.

Outputs in ``tgt`` (written together, or not at all): ``issues.json`` — the suspected errors as
standard GT, worst first, each with ``label_quality`` (0..1, lower = likelier wrong),
``suggested_label`` (+ ``suggested_label_name``), ``issue_rank`` and ``predictions``;
``label_quality.csv`` — every sample's given and suggested label and score; ``meta.json``.

Example:
    >>> r = find_issues("train/annotation.json", "qa/", cv_folds=3, config="recipes/digits/config.py")
    >>> r.num_issues, r.files["issues.json"]
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antgo_mlflow.errors import UsageError, require

PROCESS = "active-issues"
ISSUES_FILE = "issues.json"
QUALITY_FILE = "label_quality.csv"
META_FILE = "meta.json"


@dataclass
class IssuesResult:
    """What :func:`find_issues` found and wrote."""

    files: dict[str, Path]
    issues: np.ndarray  # sample indices, worst first
    quality: np.ndarray  # (N,) label quality
    suggested: np.ndarray  # (N,) argmax of the probabilities
    run_id: str | None
    source: str  # "models" or "cv-K"

    @property
    def num_issues(self) -> int:
        return len(self.issues)


def cleanlab_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(issue indices ranked worst first, (N,) label quality scores) from cleanlab."""
    filt = require("cleanlab.filter", "active")
    rank = require("cleanlab.rank", "active")
    quality = np.asarray(rank.get_label_quality_scores(labels, probs), dtype=np.float64)
    issues = np.asarray(
        # n_jobs=1: cleanlab otherwise forks a multiprocessing.Pool (fork start method on Linux)
        # from this threaded process (MLflow, torch); a child can inherit a held lock and hang -
        # seen in CI under xdist. One process is fast enough for any labelled set we rank.
        filt.find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1),
        dtype=np.int64,
    )
    return issues, quality


def _quality_csv(samples, labels, suggested, quality, flagged) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["id", "image_file", "given_label", "suggested_label", "label_quality", "issue"]
    )
    for i in np.argsort(quality, kind="stable"):
        writer.writerow(
            [
                int(i),
                samples[i].get("image_file") or samples[i].get("image_url") or "",
                int(labels[i]),
                int(suggested[i]),
                f"{quality[i]:.6g}",
                int(flagged[i]),
            ]
        )
    return buf.getvalue()


def write_issues(data, tgt: Path, labels, probs, issues, quality, names, models) -> dict[str, Path]:
    """Write ``issues.json``, ``label_quality.csv`` and ``meta.json`` into ``tgt`` together."""
    from antgo_mlflow.fileio import StagingDir, atomic_write_text
    from antgo_mlflow.gt import default_meta, read_meta, save_gt, write_meta

    suggested = probs.argmax(axis=1)
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[issues] = True
    out = []
    for rank_, i in enumerate(issues, start=1):
        s = dict(data.samples[i])
        if data.base is not None and s.get("image_file"):
            s["image_file"] = os.path.relpath(data.base / s["image_file"], tgt)
        k = int(suggested[i])
        s["label_quality"] = round(float(quality[i]), 6)
        s["suggested_label"] = k
        if len(names) == probs.shape[1]:
            s["suggested_label_name"] = names[k]
        s["issue_rank"] = rank_
        preds = dict(s.get("predictions") or {})
        preds.update(
            image_label=k,
            image_score=round(float(probs[i, k]), 6),
            probabilities=[round(float(p), 6) for p in probs[i]],
            models=list(models),
        )
        if len(names) == probs.shape[1]:
            preds["image_label_name"] = names[k]
        s["predictions"] = preds
        out.append(s)
    with StagingDir(tgt) as stage:
        if data.image_bytes is not None:
            for s, i in zip(out, issues):
                path = stage.path / s["image_file"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data.image_bytes(int(i))[0])
        save_gt(stage.path / ISSUES_FILE, out)
        meta = (read_meta(data.base) if data.base is not None else None) or default_meta(
            len(out), list(names)
        )
        write_meta(stage.path / META_FILE, meta)
        text = _quality_csv(data.samples, labels, suggested, quality, flagged)
        atomic_write_text(stage.path / QUALITY_FILE, text)
        stage.commit(last=[ISSUES_FILE])
    return {name: tgt / name for name in (ISSUES_FILE, QUALITY_FILE, META_FILE)}


def find_issues(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    models: Sequence[str] | None = None,
    cv_folds: int | None = None,
    config: str | None = None,
    project: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    cfg_options: Sequence[str] = (),
    batch_size: int = 64,
    trust_checkpoint_config: bool = False,
    log: bool = True,
) -> IssuesResult:
    """Find label issues in ``src`` and write them to ``tgt`` (see the module docstring).

    Args:
        src: labelled GT JSON (or folder) or TFRecord shards.
        tgt: output folder (must not hold a previous ``issues.json``).
        models: models that did not train on ``src`` (default: the project's champion + experts).
        cv_folds: train this many fold models on ``src`` instead (needs ``config``).
        config: the training config for ``cv_folds`` (its ``data.train`` is replaced per fold);
            with ``models``, the config that builds ``.pth`` checkpoints without one.
        project: default models and the experiment the run is logged to.
        seed: fold assignment and training seeds.
        epochs: overrides the config's ``max_epochs`` for the fold models.
        cfg_options: ``key=value`` overrides of the config.
        batch_size: images per inference batch.
        trust_checkpoint_config: let old checkpoints' config text run (see the loader).
        log: log an MLflow run (the fold models always log theirs).
    """
    from antgo_mlflow.active.inputs import check_classification, labels_of, read_set
    from antgo_mlflow.active.tracking import step_run

    target = Path(tgt).expanduser()
    if (target / ISSUES_FILE).exists():
        raise UsageError(f"--tgt: {target} already holds {ISSUES_FILE}; choose another folder")
    if cv_folds is not None and models:
        raise UsageError("--cv-folds trains its own models: give it or --models, not both")
    if cv_folds is not None and not config:
        raise UsageError("--cv-folds needs --config=<training config> to train the fold models")
    data = read_set(src, "--src")
    check_classification(data, "--src")
    labels = labels_of(data, "--src")
    predictors = None
    if cv_folds is None:
        from antgo_mlflow.active.predict import load_predictors
        from antgo_mlflow.active.settings import resolve_options

        uris = resolve_options(project, models).models
        predictors = load_predictors(uris, False, batch_size, config, trust_checkpoint_config)
        labels_of(data, "--src", predictors[0].num_classes)
        source = "models"
    else:
        from antgo_mlflow.active.crossval import check_folds

        check_folds(cv_folds, len(labels))
        if not Path(config).expanduser().is_file():
            raise UsageError(f"--config: {config} does not exist")
        source = f"cv-{cv_folds}"

    def compute(parent_run_id):
        if predictors is not None:
            from antgo_mlflow.active.predict import predict

            pred = predict(predictors, data, desc="issues")
            probs = pred.probs.mean(axis=0)
            return probs, pred.uris, pred.class_names
        from antgo_mlflow.active.crossval import out_of_fold_probs

        probs = out_of_fold_probs(
            data, labels, cv_folds, config, seed, epochs, cfg_options, parent_run_id, batch_size
        )
        labels_of(data, "--src", probs.shape[1])
        return probs, [f"cv-fold-{k}" for k in range(cv_folds)], list(data.class_names)

    def run(parent_run_id=None):
        probs, uris, names = compute(parent_run_id)
        issues, quality = cleanlab_issues(labels, probs)
        files = write_issues(data, target, labels, probs, issues, quality, names, uris)
        return probs, uris, issues, quality, files

    if not log:
        probs, uris, issues, quality, files = run()
        return IssuesResult(files, issues, quality, probs.argmax(1), None, source)
    with step_run(PROCESS, f"active-issues-{source}", project) as step:
        probs, uris, issues, quality, files = run(step.run_id)
        accuracy = float((probs.argmax(1) == labels).mean())
        step.log(
            params={
                "active.src": str(src),
                "active.models": ",".join(uris),
                "active.cv_folds": cv_folds or 0,
                "active.config": str(config or ""),
                "active.seed": seed,
            },
            metrics={
                "issues/samples": len(labels),
                "issues/found": len(issues),
                "issues/rate": len(issues) / len(labels),
                "issues/model_agreement": accuracy,
                "issues/mean_label_quality": float(quality.mean()),
            },
            tags={"antgo.active.source": source},
        )
        for path in files.values():
            step.log_artifact(path, "issues")
        return IssuesResult(files, issues, quality, probs.argmax(1), step.run_id, source)
