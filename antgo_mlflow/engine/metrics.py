"""The evaluator protocol (METRICS) and the classification metrics on it.

A metric accumulates per-sample predictions and the batch's targets, then reports a dict:

* ``reset()`` — forget what was processed (the ValLoop calls it before each evaluation);
* ``process(predictions, batch)`` — ``predictions`` is the model's ``val_step`` / ``test_step``
  output (one dict per sample), ``batch`` the batch it was computed on (targets: ``label``,
  ``bboxes``, ...);
* ``compute() -> dict[str, float]`` — every key becomes an MLflow metric (``val/<key>``);
* optionally ``artifacts(out_dir, class_names=None) -> list[path]`` — files for the run (PNG,
  JSON) from what was processed.

``BaseMetric`` keeps processed values as rows of tensors (``add_rows``) and, under DDP, gathers
every process's rows (padded all-gather of tensors, no pickles) before ``compute``. The
classification metrics (``AccuracyEval``, ``ClassificationReport``, ``ConfusionMatrix``) read
``pred_score`` (C,) of each prediction and the batch's ``label``; they can also be called at
once on arrays, ``metric(preds, labels)`` with ``preds`` (N, C) probabilities or logits and
``labels`` (N,) class indices (one-hot/soft (N, C) labels are reduced with argmax).
``evaluation.save_best`` names one key of the returned dict (``'top_1'``).

A project's metric written for antgo-mlflow before this protocol — a callable
``metric(preds, labels) -> dict`` (with ``artifacts(preds, labels, out_dir, class_names)``) —
still works: ``build_metric`` wraps it in ``ArrayMetric``. A project's own metric with a name
taken here needs ``@METRICS.register_module(force=True)`` (or another name).

Example:
    >>> metric = build_metric(dict(type="AccuracyEval", topk=(1, 5)))
    >>> metric.reset(); metric.process(model.val_step(batch), batch); metric.compute()
    {'top_1': 0.91, 'top_5': 0.99}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.errors import ConfigError, DataError
from antgo_mlflow.fileio import atomic_write_bytes, atomic_write_text
from antgo_mlflow.registry import METRICS, current_path


def _path(default: str = "evaluation.metric") -> str:
    # The config path the Registry is building now, so errors name the key to edit.
    return current_path(default)


def as_arrays(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert predictions (N, C) and labels (N,) (tensors or lists accepted)."""
    preds = _to_numpy(preds).astype(np.float64, copy=False)
    labels = _to_numpy(labels)
    if preds.ndim == 1:  # one score per sample: a binary classifier's positive probability
        preds = np.stack([1.0 - preds, preds], axis=1)
    if preds.ndim != 2 or preds.shape[1] < 1:
        raise DataError(f"metric: predictions must have shape (N, C), got {preds.shape}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif labels.ndim == 2 and labels.shape == preds.shape:
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or labels.shape[0] != preds.shape[0]:
        raise DataError(
            f"metric: labels must have shape ({preds.shape[0]},) to match predictions {preds.shape}, "
            f"got {labels.shape}"
        )
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise DataError("metric: labels must be integer class indices")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= preds.shape[1]):
        raise DataError(
            f"metric: label {int(labels.max() if labels.max() >= preds.shape[1] else labels.min())} "
            f"is outside the {preds.shape[1]} predicted classes"
        )
    return preds, labels


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def confusion_matrix(preds, labels) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class (argmax)."""
    preds, labels = as_arrays(preds, labels)
    num_classes = preds.shape[1]
    predicted = preds.argmax(axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _names(class_names, num_classes: int) -> list[str]:
    names = [str(n) for n in class_names] if class_names else []
    if len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return names


class BaseMetric:
    """Base of protocol metrics: rows of tensors accumulated by ``process``, gathered over DDP."""

    def __init__(self):
        self._rows: dict[str, list] = {}
        self._gathered: dict[str, np.ndarray] | None = None

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._rows, self._gathered = {}, None

    def process(self, predictions: Sequence[Mapping], batch: Mapping) -> None:
        """Accumulate one batch (subclasses: call ``add_rows``)."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The metric over everything processed (every process's rows under DDP)."""
        raise NotImplementedError

    def add_rows(self, **rows) -> None:
        """Append rows (tensors or arrays, first dimension = samples) under their names."""
        self._gathered = None
        for name, value in rows.items():
            self._rows.setdefault(name, []).append(value)

    def gathered(self) -> dict[str, np.ndarray]:
        """The rows of every process, concatenated (cached until the next ``process``/``reset``;
        under DDP every process must call it the first time: it is a collective)."""
        if self._gathered is None:
            import torch

            from antgo_mlflow.engine import dist

            out = {}
            for name, parts in self._rows.items():
                rows = torch.cat([torch.as_tensor(p).detach().cpu() for p in parts])
                out[name] = dist.gather_rows(rows).numpy()
            self._gathered = out
        return self._gathered


class ClassificationMetric(BaseMetric):
    """Protocol side of the classification metrics: rows ``pred_score`` (N, C) and ``label``.

    Subclasses implement ``__call__(preds, labels) -> dict`` on arrays and may implement
    ``write_artifacts(preds, labels, out_dir, class_names)``.
    """

    _split = "data.val"  # named in errors

    def process(self, predictions: Sequence[Mapping], batch: Mapping) -> None:
        import torch

        label = batch.get("label") if isinstance(batch, Mapping) else None
        if label is None:
            raise DataError(f"{self._split}: samples need a 'label' field to be evaluated")
        if not predictions:
            return
        if "pred_score" not in predictions[0]:
            raise DataError(
                f"{self._split}: the model's predictions have no 'pred_score' "
                f"(they have {sorted(predictions[0])})"
            )
        scores = torch.stack([torch.as_tensor(p["pred_score"]) for p in predictions]).float()
        label = torch.as_tensor(label)
        if label.dim():
            label = label.reshape(scores.shape[0], -1).squeeze(-1)
        self.add_rows(pred_score=scores, label=label)

    def compute(self) -> dict[str, float]:
        state = self.gathered()
        if not state:
            return self(np.zeros((0, 1)), np.zeros((0,), dtype=np.int64))
        return self(state["pred_score"], state["label"])

    def artifacts(self, out_dir, class_names=None) -> list[Path]:
        """Files for the run from what was processed (none unless ``write_artifacts`` exists)."""
        writer = getattr(self, "write_artifacts", None)
        state = self.gathered()
        if writer is None or not state:
            return []
        return list(writer(state["pred_score"], state["label"], out_dir, class_names=class_names))

    def __call__(self, preds, labels) -> dict[str, float]:
        raise NotImplementedError


class ArrayMetric(ClassificationMetric):
    """A callable ``metric(preds, labels) -> dict`` (the pre-protocol form) on the protocol."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __call__(self, preds, labels) -> dict[str, float]:
        return self.fn(preds, labels)

    def artifacts(self, out_dir, class_names=None) -> list[Path]:
        state = self.gathered()
        if not hasattr(self.fn, "artifacts") or not state:
            return []
        paths = self.fn.artifacts(
            state["pred_score"], state["label"], out_dir, class_names=class_names
        )
        return list(paths or [])


@METRICS.register_module()
class AccuracyEval(ClassificationMetric):
    """Top-k accuracy as fractions: ``{'top_1': ..., 'top_5': ...}``.

    k larger than the number of classes counts as all classes (1.0); the key keeps the asked k so
    that ``save_best`` keeps working on few-class data.

    Args:
        topk: one k or a sequence of k values.
    """

    def __init__(self, topk: int | Sequence[int] = (1, 5)):
        values = (topk,) if isinstance(topk, int) else tuple(topk)
        if not values or any(
            not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in values
        ):
            raise ConfigError(f"{_path()}.topk: expected positive integers, got {topk!r}")
        super().__init__()
        self.topk = tuple(dict.fromkeys(values))

    def __call__(self, preds, labels) -> dict[str, float]:
        preds, labels = as_arrays(preds, labels)
        if labels.size == 0:
            return {f"top_{k}": 0.0 for k in self.topk}
        num_classes = preds.shape[1]
        # Stable sort on -score: ties go to the lower class index, like torch.topk on CPU.
        ranked = np.argsort(-preds, axis=1, kind="stable")[:, : min(max(self.topk), num_classes)]
        hits = ranked == labels[:, None]
        return {
            f"top_{k}": float(hits[:, : min(k, num_classes)].any(axis=1).mean()) for k in self.topk
        }


@METRICS.register_module()
class ClassificationReport(ClassificationMetric):
    """Per-class precision/recall/F1 and support, plus macro and weighted averages and accuracy.

    Keys: ``precision_<i>``, ``recall_<i>``, ``f1_<i>``, ``support_<i>`` for each class i,
    ``precision_macro``, ``recall_macro``, ``f1_macro``, the ``*_weighted`` averages and
    ``accuracy``. A class never predicted has precision 0 (sklearn's ``zero_division=0``).
    ``artifacts`` writes ``classification_report.json`` with class names.

    Args:
        per_class: False returns only the averages and accuracy (many classes).
    """

    def __init__(self, per_class: bool = True):
        super().__init__()
        self.per_class = bool(per_class)

    @staticmethod
    def table(preds, labels) -> dict[str, np.ndarray]:
        """Per-class arrays: precision, recall, f1, support."""
        matrix = confusion_matrix(preds, labels).astype(np.float64)
        tp = np.diag(matrix)
        predicted = matrix.sum(axis=0)
        support = matrix.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, tp / predicted, 0.0)
            recall = np.where(support > 0, tp / support, 0.0)
            denom = precision + recall
            f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
        return {"precision": precision, "recall": recall, "f1": f1, "support": support}

    def __call__(self, preds, labels) -> dict[str, float]:
        table = self.table(preds, labels)
        support = table["support"]
        total = support.sum()
        out: dict[str, float] = {}
        if self.per_class:
            for name in ("precision", "recall", "f1", "support"):
                for i, value in enumerate(table[name]):
                    out[f"{name}_{i}"] = float(value)
        for name in ("precision", "recall", "f1"):
            out[f"{name}_macro"] = float(table[name].mean())
            out[f"{name}_weighted"] = float((table[name] * support).sum() / total) if total else 0.0
        preds_arr, labels_arr = as_arrays(preds, labels)
        out["accuracy"] = float((preds_arr.argmax(axis=1) == labels_arr).mean()) if total else 0.0
        return out

    def write_artifacts(self, preds, labels, out_dir, class_names=None) -> list[Path]:
        """Write ``classification_report.json`` (per class, by name) into ``out_dir``."""
        table = self.table(preds, labels)
        names = _names(class_names, len(table["support"]))
        report = {
            name: {key: float(table[key][i]) for key in ("precision", "recall", "f1", "support")}
            for i, name in enumerate(names)
        }
        path = Path(out_dir) / "classification_report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False))
        return [path]


@METRICS.register_module()
class ConfusionMatrix(ClassificationMetric):
    """Confusion matrix as an image artifact (``confusion_matrix.png``) and a JSON of counts.

    Calling it returns ``{'accuracy': ...}``; the matrix itself is an artifact.

    Args:
        normalize: None (counts), 'true' (rows sum to 1), 'pred' (columns) or 'all'.
        max_classes: above this many classes the PNG has no per-cell numbers.
    """

    def __init__(self, normalize: str | None = None, max_classes: int = 30):
        if normalize not in (None, "true", "pred", "all"):
            raise ConfigError(
                f"{_path()}.normalize: expected None, 'true', 'pred' or 'all', got {normalize!r}"
            )
        super().__init__()
        self.normalize = normalize
        self.max_classes = int(max_classes)

    def __call__(self, preds, labels) -> dict[str, float]:
        matrix = confusion_matrix(preds, labels)
        total = matrix.sum()
        return {"accuracy": float(np.trace(matrix) / total) if total else 0.0}

    def matrix(self, preds, labels) -> np.ndarray:
        """The (normalised) matrix, rows = true class."""
        counts = confusion_matrix(preds, labels).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.normalize == "true":
                counts = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
            elif self.normalize == "pred":
                counts = np.nan_to_num(counts / counts.sum(axis=0, keepdims=True))
            elif self.normalize == "all":
                counts = np.nan_to_num(counts / max(counts.sum(), 1.0))
        return counts

    def write_artifacts(self, preds, labels, out_dir, class_names=None) -> list[Path]:
        """Write ``confusion_matrix.png`` and ``confusion_matrix.json`` into ``out_dir``."""
        matrix = self.matrix(preds, labels)
        names = _names(class_names, matrix.shape[0])
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png, data = out / "confusion_matrix.png", out / "confusion_matrix.json"
        atomic_write_bytes(png, render_confusion_png(matrix, names, self.max_classes))
        payload = {"classes": names, "normalize": self.normalize, "matrix": matrix.tolist()}
        atomic_write_text(data, json.dumps(payload, ensure_ascii=False))
        return [png, data]


def render_confusion_png(matrix: np.ndarray, names: list[str], max_annotated: int = 30) -> bytes:
    """PNG bytes of a confusion-matrix heat map (matplotlib if installed, else a PIL drawing)."""
    import io

    try:
        # Figure without pyplot: no global backend switch, no GUI, safe in threads.
        from matplotlib.figure import Figure
    except ImportError:
        return _render_with_pil(matrix, names, max_annotated)

    n = matrix.shape[0]
    size = min(4 + 0.45 * n, 24)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=names, rotation=90 if n > 8 else 0, fontsize=8)
    ax.set_yticks(range(n), labels=names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= max_annotated:
        integer = np.allclose(matrix, np.round(matrix))
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{int(matrix[i, j])}" if integer else f"{matrix[i, j]:.2f}"
                color = "white" if matrix[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _render_with_pil(matrix: np.ndarray, names: list[str], max_annotated: int) -> bytes:
    import io

    from PIL import Image, ImageDraw

    n = matrix.shape[0]
    cell, margin = 28, 60
    side = margin + cell * n + 10
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    peak = matrix.max() if matrix.size and matrix.max() > 0 else 1.0
    integer = np.allclose(matrix, np.round(matrix))
    for i in range(n):
        draw.text((4, margin + i * cell + 8), names[i][:8], fill="black")
        draw.text((margin + i * cell + 2, 4), names[i][:4], fill="black")
        for j in range(n):
            shade = int(255 - 200 * matrix[i, j] / peak)
            x0, y0 = margin + j * cell, margin + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255))
            if n <= max_annotated:
                text = f"{int(matrix[i, j])}" if integer else f"{matrix[i, j]:.2f}"
                draw.text((x0 + 3, y0 + 8), text, fill="black" if shade > 128 else "white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@METRICS.register_module()
class MetricCollection(BaseMetric):
    """Several metrics as one: merged result dicts and all their artifacts.

    Args:
        metrics: list of METRICS configs, e.g.
            ``[dict(type='AccuracyEval'), dict(type='ConfusionMatrix')]``.
    """

    def __init__(self, metrics: Sequence[Mapping]):
        super().__init__()
        path = _path()
        if not metrics or isinstance(metrics, Mapping):
            raise ConfigError(f"{path}.metrics: expected a non-empty list of metric configs")
        self.metrics = [build_metric(cfg, f"{path}.metrics.{i}") for i, cfg in enumerate(metrics)]

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset()

    def process(self, predictions: Sequence[Mapping], batch: Mapping) -> None:
        for metric in self.metrics:
            metric.process(predictions, batch)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metrics:
            out.update(metric.compute())
        return out

    def __call__(self, preds, labels) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metrics:
            out.update(metric(preds, labels))
        return out

    def artifacts(self, out_dir, class_names=None) -> list[Path]:
        paths: list[Path] = []
        for metric in self.metrics:
            if hasattr(metric, "artifacts"):
                paths.extend(metric.artifacts(out_dir, class_names=class_names) or [])
        return paths


def build_metric(cfg, path: str = "evaluation.metric") -> Any:
    """A protocol metric from a config dict (or a ``MetricCollection`` from a list of them);
    a pre-protocol callable metric comes back wrapped in ``ArrayMetric``."""
    if isinstance(cfg, (list, tuple)):
        return METRICS.build({"type": "MetricCollection", "metrics": list(cfg)}, path=path)
    metric = METRICS.build(cfg, path=path)
    if callable(getattr(metric, "process", None)) and callable(getattr(metric, "compute", None)):
        return metric
    if callable(metric):
        return ArrayMetric(metric)
    raise ConfigError(
        f"{path}.type: {cfg.get('type')} is not a metric (needs process/compute, or __call__)"
    )


def as_float_dict(result: Any, path: str = "evaluation.metric") -> dict[str, float]:
    """A metric's result as ``{name: float}``; non-scalar entries (arrays) are left out."""
    if not isinstance(result, Mapping):
        raise ConfigError(f"{path}: the metric returned {type(result).__name__}, expected a dict")
    out = {}
    for key, value in result.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out
