"""What ``antgo active rank`` writes: ``selected.json``, ``rest.json``, ``scores.csv``, ``meta.json``.

Both GT files are standard GT (every input field kept, ``image_file`` relative to the output
folder) with two added fields per sample: ``al_score`` (higher = label sooner) and ``al_rank``
(1 = label first), plus ``predictions`` (``image_label``, ``image_label_name``, ``image_score``,
``probabilities``, ``models``) so the FiftyOne view shows them as a label field. Everything is
staged in a hidden folder and moved into place together (``scores.csv`` last).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SELECTED_FILE = "selected.json"
REST_FILE = "rest.json"
SCORES_FILE = "scores.csv"
META_FILE = "meta.json"
HISTOGRAM_FILE = "score_histogram.png"
OUTPUT_FILES = (SELECTED_FILE, REST_FILE, SCORES_FILE, META_FILE)


@dataclass
class RankedPool:
    """Everything the output files are made of."""

    samples: list[dict[str, Any]]  # the pool, in input order
    probs: np.ndarray  # (N, C) averaged probabilities
    scores: np.ndarray  # (N,) al_score
    order: np.ndarray  # (N,) label-next order
    budget: int
    strategy: str
    terms: Mapping[str, np.ndarray]  # per-sample columns for scores.csv
    models: Sequence[str]
    class_names: Sequence[str] = ()

    @property
    def selected(self) -> np.ndarray:
        return self.order[: self.budget]

    def ranks(self) -> np.ndarray:
        ranks = np.empty(len(self.order), dtype=np.int64)
        ranks[self.order] = np.arange(1, len(self.order) + 1)
        return ranks


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


def output_sample(
    sample: dict, probs: np.ndarray, score: float, rank: int, models, names, base, target
) -> dict:
    """One pool sample as written: input fields, rebased ``image_file``, predictions, al_*."""
    out = dict(sample)
    if base is not None and out.get("image_file"):
        out["image_file"] = os.path.relpath(Path(base) / out["image_file"], target)
    label = int(probs.argmax())
    preds = dict(sample.get("predictions") or {})
    preds.update(
        {
            "image_label": label,
            "image_score": round(float(probs[label]), 6),
            "probabilities": [round(float(p), 6) for p in probs],
            "models": list(models),
        }
    )
    if len(names) == len(probs):
        preds["image_label_name"] = names[label]
    out["predictions"] = preds
    out["al_score"] = _num(score)
    out["al_rank"] = int(rank)
    return out


def scores_csv(ranked: RankedPool, image_files: Sequence[str]) -> str:
    """``scores.csv``: id, image_file, score, rank, selected, strategy, predicted label, terms."""
    ranks = ranked.ranks()
    chosen = np.zeros(len(ranks), dtype=bool)
    chosen[ranked.selected] = True
    term_names = [t for t in ranked.terms if t not in ("score",)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["id", "image_file", "score", "rank", "selected", "strategy", "pred_label", *term_names]
    )
    labels = ranked.probs.argmax(axis=1)
    for i in ranked.order:
        writer.writerow(
            [
                int(i),
                image_files[i],
                _fmt(ranked.scores[i]),
                int(ranks[i]),
                int(chosen[i]),
                ranked.strategy,
                int(labels[i]),
                *(_fmt(ranked.terms[t][i]) for t in term_names),
            ]
        )
    return buf.getvalue()


def _fmt(x: float) -> str:
    return "" if not np.isfinite(x) else f"{float(x):.6g}"


def histogram_png(scores: np.ndarray, selected: np.ndarray, title: str) -> bytes:
    """PNG bytes of the al_score histogram, selected samples drawn over the rest."""
    from matplotlib.figure import Figure

    finite = np.isfinite(scores)
    chosen = np.zeros(len(scores), dtype=bool)
    chosen[selected] = True
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    values = scores[finite]
    bins = np.histogram_bin_edges(values, bins=30) if len(values) else 10
    ax.hist(scores[finite & ~chosen], bins=bins, color="#9aa7b8", label="rest")
    ax.hist(scores[finite & chosen], bins=bins, color="#d9534f", alpha=0.85, label="selected")
    ax.set_xlabel("al_score (higher = label sooner)")
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_outputs(
    ranked: RankedPool,
    target: str | os.PathLike,
    base: Path | None,
    image_bytes=None,
    meta: dict | None = None,
) -> dict[str, Path]:
    """Write the output files into ``target`` together (or nothing); return their paths.

    Args:
        base: the folder the input's ``image_file`` paths are relative to (GT input), or None.
        image_bytes: for shard input, ``i -> (bytes, ext)``: images are written to ``images/``.
        meta: the input's ``meta.json`` (class names); a default one is written without it.
    """
    from antgo_mlflow.fileio import StagingDir, atomic_write_text
    from antgo_mlflow.gt import default_meta, save_gt, write_meta

    target = Path(target)
    ranks = ranked.ranks()
    names = list(ranked.class_names)
    samples = [
        output_sample(
            s, ranked.probs[i], ranked.scores[i], ranks[i], ranked.models, names, base, target
        )
        for i, s in enumerate(ranked.samples)
    ]
    with StagingDir(target) as stage:
        if image_bytes is not None:
            (stage.path / "images").mkdir()
            for i, sample in enumerate(samples):
                blob, _ = image_bytes(i)
                (stage.path / sample["image_file"]).write_bytes(blob)
        chosen = set(ranked.selected.tolist())
        save_gt(stage.path / SELECTED_FILE, [samples[i] for i in ranked.selected])
        save_gt(stage.path / REST_FILE, [samples[i] for i in ranked.order if i not in chosen])
        out_meta = dict(meta or default_meta(len(samples), names))
        write_meta(stage.path / META_FILE, out_meta)
        files = [s.get("image_file") or s.get("image_url") or "" for s in samples]
        atomic_write_text(stage.path / SCORES_FILE, scores_csv(ranked, files))
        stage.commit(last=[SCORES_FILE])
    return {name: target / name for name in OUTPUT_FILES}
