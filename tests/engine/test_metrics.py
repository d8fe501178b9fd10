"""Metrics: hand-computed top-k, per-class P/R/F1 against scikit-learn, confusion-matrix artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from antgo_mlflow.engine import metrics as metrics_module
from antgo_mlflow.engine.metrics import build_metric
from antgo_mlflow.errors import ConfigError, DataError, RegistryError
from antgo_mlflow.registry import METRICS

# 4 samples, 6 classes; the true class ranks 1st, 3rd, 6th and 2nd.
PREDS = np.array(
    [
        [0.50, 0.10, 0.10, 0.10, 0.10, 0.10],
        [0.30, 0.25, 0.20, 0.10, 0.10, 0.05],
        [0.05, 0.30, 0.25, 0.20, 0.15, 0.05],
        [0.10, 0.05, 0.05, 0.60, 0.00, 0.20],
    ]
)
LABELS = np.array([0, 2, 5, 5])


def test_accuracy_top1_top5_by_hand():
    result = METRICS.build(dict(type="AccuracyEval"))(PREDS, LABELS)
    # top-1: only sample 0; top-5: samples 0, 1 and 3 (sample 2's class is ranked last).
    assert result == {"top_1": 0.25, "top_5": 0.75}
    assert METRICS.build(dict(type="AccuracyEval", topk=(2, 3)))(PREDS, LABELS) == {
        "top_2": 0.5,
        "top_3": 0.75,
    }


def test_topk_above_the_number_of_classes_counts_every_class():
    preds = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    assert METRICS.build(dict(type="AccuracyEval", topk=(1, 5)))(preds, np.array([2, 0])) == {
        "top_1": 0.5,
        "top_5": 1.0,
    }


def test_accuracy_accepts_tensors_logits_and_one_hot_labels():
    import torch

    logits = torch.log(torch.tensor(PREDS))
    one_hot = np.eye(6)[LABELS]
    assert METRICS.build(dict(type="AccuracyEval"))(logits, one_hot) == {
        "top_1": 0.25,
        "top_5": 0.75,
    }


def test_classification_report_matches_sklearn():
    rng = np.random.default_rng(0)
    preds = rng.random((200, 5))
    labels = rng.integers(0, 4, 200)  # class 4 never occurs in the labels
    preds[:, 3] = 0.0  # class 3 is never predicted
    result = METRICS.build(dict(type="ClassificationReport"))(preds, labels)
    predicted = preds.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(
        labels, predicted, labels=range(5), zero_division=0
    )
    for i in range(5):
        assert result[f"precision_{i}"] == pytest.approx(p[i])
        assert result[f"recall_{i}"] == pytest.approx(r[i])
        assert result[f"f1_{i}"] == pytest.approx(f[i])
        assert result[f"support_{i}"] == s[i]
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            labels, predicted, labels=range(5), average=average, zero_division=0
        )
        assert result[f"precision_{average}"] == pytest.approx(p)
        assert result[f"recall_{average}"] == pytest.approx(r)
        assert result[f"f1_{average}"] == pytest.approx(f)
    assert result["accuracy"] == pytest.approx((predicted == labels).mean())
    assert all(isinstance(v, float) for v in result.values())


def test_classification_report_without_per_class_keys():
    result = METRICS.build(dict(type="ClassificationReport", per_class=False))(PREDS, LABELS)
    assert not any(key.startswith("precision_0") for key in result)
    assert "f1_macro" in result


def test_confusion_matrix_png_and_json_artifacts(tmp_path):
    rng = np.random.default_rng(1)
    preds, labels = rng.random((60, 4)), rng.integers(0, 4, 60)
    metric = METRICS.build(dict(type="ConfusionMatrix"))
    assert metric(preds, labels)["accuracy"] == pytest.approx((preds.argmax(1) == labels).mean())
    _feed(metric, preds, labels)
    paths = metric.artifacts(tmp_path / "eval", class_names=["cat", "dog", "fox", "owl"])
    assert [p.name for p in paths] == ["confusion_matrix.png", "confusion_matrix.json"]
    with Image.open(paths[0]) as image:
        image.load()
        assert image.format == "PNG" and image.width > 100 and image.height > 100
    data = json.loads(paths[1].read_text())
    assert data["classes"] == ["cat", "dog", "fox", "owl"]
    np.testing.assert_array_equal(
        data["matrix"], sk_confusion_matrix(labels, preds.argmax(1), labels=range(4))
    )
    assert not list((tmp_path / "eval").glob(".*"))  # no temporary files left behind


def test_confusion_matrix_normalised_rows_sum_to_one():
    matrix = METRICS.build(dict(type="ConfusionMatrix", normalize="true")).matrix(PREDS, LABELS)
    np.testing.assert_allclose(
        matrix.sum(axis=1), [1, 0, 1, 0, 0, 1]
    )  # classes 1, 3, 4 never occur
    assert matrix[5, 1] == 0.5 and matrix[5, 3] == 0.5


def test_png_without_matplotlib_is_drawn_with_pil(tmp_path):
    matrix = sk_confusion_matrix(LABELS, PREDS.argmax(1), labels=range(6))
    (tmp_path / "cm.png").write_bytes(
        metrics_module._render_with_pil(matrix, [str(i) for i in range(6)], 30)
    )
    with Image.open(tmp_path / "cm.png") as image:
        image.load()
        assert image.format == "PNG"


def test_report_artifact_names_classes(tmp_path):
    metric = METRICS.build(dict(type="ClassificationReport"))
    _feed(metric, PREDS, LABELS)
    (path,) = metric.artifacts(tmp_path, class_names=list("abcdef"))
    report = json.loads(path.read_text())
    assert list(report) == list("abcdef")
    assert report["a"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1.0,
    }


def test_a_list_of_metrics_merges_results_and_artifacts(tmp_path):
    metric = build_metric([dict(type="AccuracyEval", topk=1), dict(type="ConfusionMatrix")])
    assert metric(PREDS, LABELS) == {"top_1": 0.25, "accuracy": 0.25}
    _feed(metric, PREDS, LABELS)
    assert metric.compute() == {"top_1": 0.25, "accuracy": 0.25}
    assert {p.name for p in metric.artifacts(tmp_path)} == {
        "confusion_matrix.png",
        "confusion_matrix.json",
    }


def _feed(metric, preds, labels, batch=3):
    """Hand ``preds``/``labels`` to ``metric`` as a ValLoop does: per-sample dicts, in batches."""
    import torch

    metric.reset()
    for i in range(0, len(labels), batch):
        scores = torch.as_tensor(preds[i : i + batch], dtype=torch.float32)
        predictions = [{"pred_score": s, "pred_label": int(s.argmax())} for s in scores]
        metric.process(predictions, {"label": torch.as_tensor(labels[i : i + batch])})


def test_processed_batches_give_the_same_result_as_one_call_and_reset_forgets():
    metric = METRICS.build(dict(type="AccuracyEval", topk=(1, 5)))
    _feed(metric, PREDS, LABELS, batch=1)
    assert metric.compute() == metric(PREDS, LABELS) == {"top_1": 0.25, "top_5": 0.75}
    _feed(metric, PREDS[:1], LABELS[:1])  # reset: only the new sample counts
    assert metric.compute() == {"top_1": 1.0, "top_5": 1.0}


def test_a_callable_metric_written_before_the_protocol_is_wrapped(tmp_path):
    calls = []

    class Legacy:
        def __call__(self, preds, labels):
            calls.append((preds.shape, labels.shape))
            return {"n": float(len(labels))}

        def artifacts(self, preds, labels, out_dir, class_names=None):
            path = Path(out_dir) / "legacy.txt"
            path.write_text(f"{len(labels)} {class_names}")
            return [path]

    METRICS.register_module(name="EngineLegacyMetric", force=True, module=Legacy)
    metric = build_metric(dict(type="EngineLegacyMetric"))
    _feed(metric, PREDS, LABELS)
    assert metric.compute() == {"n": 4.0} and calls == [((4, 6), (4,))]
    (path,) = metric.artifacts(tmp_path, class_names=["a"])
    assert path.read_text() == "4 ['a']"


def test_processing_a_batch_without_labels_names_the_split():
    metric = METRICS.build(dict(type="AccuracyEval"))
    import torch

    with pytest.raises(DataError, match="data.val: samples need a 'label' field"):
        metric.process([{"pred_score": torch.ones(3), "pred_label": 0}], {"image": None})


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            dict(type="AccuracyEvl"),
            "evaluation.metric.type: unknown metric 'AccuracyEvl' (did you mean 'AccuracyEval'?)",
        ),
        (
            dict(type="AccuracyEval", topk=(0, 5)),
            "evaluation.metric.topk: expected positive integers",
        ),
        (
            dict(type="AccuracyEval", top_k=1),
            "evaluation.metric.top_k: AccuracyEval has no argument 'top_k'",
        ),
        (
            [dict(type="AccuracyEval"), dict(type="ConfusionMatrix", normalize="rows")],
            "evaluation.metric.metrics.1.normalize: expected None, 'true', 'pred' or 'all'",
        ),
    ],
)
def test_bad_metric_config_names_the_key(cfg, message):
    with pytest.raises(ConfigError) as info:
        build_metric(cfg)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("preds", "labels", "message"),
    [
        (PREDS, np.array([0, 1, 6, 2]), "metric: label 6 is outside the 6 predicted classes"),
        (PREDS, np.array([0, 1]), "metric: labels must have shape (4,)"),
        (PREDS, np.array([0.5, 1, 2, 3]), "metric: labels must be integer class indices"),
    ],
)
def test_bad_inputs_are_data_errors(preds, labels, message):
    with pytest.raises(DataError) as info:
        METRICS.build(dict(type="AccuracyEval"))(preds, labels)
    assert str(info.value).startswith(message), str(info.value)


def test_a_project_metric_with_a_taken_name_needs_force():
    """A scaffold's own ``AccuracyEval`` must pass force=True (or use another name)."""
    builtin = METRICS.get("AccuracyEval")

    class AccuracyEval:
        def __call__(self, preds, labels):
            return {"top_1": 1.0}

    with pytest.raises(RegistryError, match="already registered .*force=True"):
        METRICS.register_module(module=AccuracyEval)
    try:
        METRICS.register_module(module=AccuracyEval, force=True)
        assert METRICS.build(dict(type="AccuracyEval"))(PREDS, LABELS) == {"top_1": 1.0}
    finally:
        METRICS.register_module(module=builtin, force=True)
    assert METRICS.get("AccuracyEval") is builtin


def test_ties_rank_the_lower_class_index_first():
    """Deterministic ties (like torch.topk on CPU): an all-equal row is no top-1 hit for class 1."""
    preds = np.array([[0.5, 0.5, 0.0]])
    assert METRICS.build(dict(type="AccuracyEval", topk=(1, 2)))(preds, np.array([1])) == {
        "top_1": 0.0,
        "top_2": 1.0,
    }
