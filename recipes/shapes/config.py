# The embedded detection recipe: an FCOS on a small conv backbone + FPN (TinyFPN), trained from
# scratch on the synthetic shapes (1,500 128x128 images, 3 classes: rectangle, ellipse, triangle).
# Offline, on CPU: `mlflow run . -e train --env-manager local -P config=recipes/shapes/config.py`.
#
# Loading this file prepares the data once: GT + TFRecord shards in
# ~/.cache/antgo-mlflow/shapes-v1/<digest>/ ($ANTGO_CACHE_DIR overrides the folder). The class
# names (and so num_classes) come from its meta.json.
from antgo_mlflow.data.sources.shapes import prepare_shapes

_shapes = prepare_shapes()
_meta = str(_shapes.root / "meta.json")

seed = 0
task = "detection"  # what inference/ loads the trained model as (boxes, not class scores)

model = dict(
    type="FCOS",
    meta=_meta,
    backbone=dict(
        type="TinyFPN", channels=(16, 32, 64, 96), convs=(1, 1, 2, 2), out_strides=(8, 16)
    ),
    head=dict(num_convs=2),
    test_cfg=dict(score_thresh=0.05, nms_thresh=0.6, detections_per_img=100),
)

_description = {
    "image": "numpy",
    "bboxes": "numpy",
    "labels": "numpy",
    "box_visibility": "numpy",
    "image_file": "str",
}
_fields = {"fields": ["image", "bboxes", "labels", "box_visibility", "image_meta"]}
_normalize = dict(type="Normalize", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), keys=["image"])
# ResizeS records the mapping back to the original pixels in image_meta (a no-op at 128x128,
# so images of any other size can be evaluated with the same pipeline)
_eval_pipeline = [
    dict(type="Meta", keys=["image_file"]),
    dict(type="ResizeS", target_dim=(128, 128)),
    dict(type="ToTensor", keys=["image"]),
    _normalize,
]

data = dict(
    train=dict(
        type="TFDataset",
        data_path_list=_shapes.shard_paths("train"),
        pipeline=[
            dict(type="Meta", keys=["image_file"]),
            dict(type="RandomFlipImage", prob=0.5),  # boxes move with the image
            dict(type="ToTensor", keys=["image"]),
            _normalize,
        ],
        inputs_def=_fields,
        description=_description,
    ),
    train_dataloader=dict(samples_per_gpu=8, workers_per_gpu=0, drop_last=True, shuffle=True),
    val=dict(
        type="TFDataset",
        data_path_list=_shapes.shard_paths("val"),
        pipeline=_eval_pipeline,
        inputs_def=_fields,
        description=_description,
    ),
    val_dataloader=dict(samples_per_gpu=32, workers_per_gpu=0, shuffle=False),
    test=dict(
        type="TFDataset",
        data_path_list=_shapes.shard_paths("test"),
        pipeline=_eval_pipeline,
        inputs_def=_fields,
        description=_description,
    ),
    test_dataloader=dict(samples_per_gpu=32, workers_per_gpu=0, shuffle=False),
)

# Warm-up, a cosine schedule (stepped every iteration) and gradient clipping: at a constant
# learning rate this detector collapses after a few minutes (shared/STACK.md).
# 131 iterations of 8 images each: ~150 s on 2 cores (10 epochs: one seed of 3 at 0.903)
max_epochs = 16
optimizer = dict(type="AdamW", lr=3e-3, weight_decay=1e-4)
optimizer_config = dict(grad_clip=dict(max_norm=10.0))
lr_config = dict(policy="CosineAnnealing", min_lr_ratio=0.01, warmup="linear", warmup_iters=50)
log_config = dict(interval=50, hooks=[dict(type="TextLoggerHook")])
checkpoint_config = dict(interval=max_epochs, out_dir="./output/", log_artifacts="best")
evaluation = dict(
    out_dir="./output/",
    interval=8,
    metric=dict(type="DetectionEval", class_names=list(_shapes.class_names)),
    save_best="mAP",
)
export = dict(
    input_shape_list=[[1, 3, 128, 128]],
    input_name_list=["image"],
    output_name_list=["detections"],  # (N, 100, 6): x0, y0, x1, y1, score, label (-1: empty)
)
