"""A detector trained by the engine end to end: a real COCO file made into GT by extract/coco,
one epoch with validation (DetectionEval, save_best='mAP'), logged to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from PIL import Image, ImageDraw

from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.tools.extract_coco import extract_coco


def write_coco(folder: Path, n: int = 6) -> Path:
    """A hand-written COCO instances file: squares (cat) and bars (dog), one crowd box, one
    image without objects; the images are drawn to match."""
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        canvas = Image.fromarray(rng.integers(0, 60, (64, 80, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(canvas)
        if i < n - 1:
            x, y = int(rng.integers(2, 40)), int(rng.integers(2, 30))
            w, h, cat = (20, 20, 1) if i % 2 == 0 else (30, 10, 2)
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(230, 230, 230))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                    "area": w * h,
                }
            )
        if i == 0:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 1,
                    "category_id": 1,
                    "bbox": [50, 40, 25, 20],
                    "iscrowd": 1,
                    "area": 500,
                }
            )
        canvas.save(folder / "img" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 80, "height": 64})
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    path = folder / "instances.json"
    path.write_text(json.dumps(coco))
    return path


CONFIG = """
_gt = {gt!r}
_description = {{"image": "numpy", "bboxes": "numpy", "labels": "numpy", "box_visibility": "numpy", "image_file": "str"}}
_fields = {{"fields": ["image", "bboxes", "labels", "box_visibility", "image_meta"]}}
_pipeline = [
    dict(type="Meta", keys=["image_file"]),
    dict(type="ResizeS", target_dim=(64, 64)),
    dict(type="ToTensor", keys=["image"]),
]
experiment_name = "coco-detection"
model = dict(
    type="FCOS",
    meta=_gt,
    backbone=dict(type="TinyFPN", channels=(8, 16, 16, 32), convs=(1, 1, 1, 1), out_channels=32, out_strides=(8, 16)),
    head=dict(num_convs=1),
)
_ds = dict(type="GTDataset", gt=_gt, pipeline=_pipeline, inputs_def=_fields, description=_description)
data = dict(
    train=_ds,
    train_dataloader=dict(samples_per_gpu=2),
    val=_ds,
    val_dataloader=dict(samples_per_gpu=4),
)
max_epochs = 1
optimizer = dict(type="AdamW", lr=1e-3)
optimizer_config = dict(grad_clip=dict(max_norm=10.0))
log_config = dict(interval=1, hooks=[dict(type="TextLoggerHook"), dict(type="MlflowLoggerHook", log_model=False)])
checkpoint_config = dict(interval=1)
evaluation = dict(interval=1, metric=dict(type="DetectionEval", meta=_gt), save_best="mAP")
"""


def test_a_coco_set_from_extract_coco_trains_one_epoch(tmp_path):
    coco = write_coco(tmp_path / "coco")
    summary = extract_coco(coco, tmp_path / "gt", images=tmp_path / "coco" / "img")
    gt = summary.annotation
    samples = json.loads(Path(gt).read_text())
    assert samples[0]["box_visibility"] == [1, 0]  # the crowd box is kept, marked
    config = tmp_path / "det" / "config.py"
    config.parent.mkdir()
    config.write_text(CONFIG.format(gt=str(gt)))
    run_id = run_from_config(config, work_dir=tmp_path / "work")
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert {"val/mAP", "val/mAP50", "val/AP_cat", "train/loss"} <= set(run.data.metrics)
    assert (tmp_path / "work" / "best.pth").is_file()
    artifacts = {a.path for a in MlflowClient().list_artifacts(run_id, "metrics")}
    assert {"metrics/pr_curve.png", "metrics/detections.png"} <= artifacts
