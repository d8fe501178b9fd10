# Distillation on the embedded digits: a WRN-10-1 student learns from 10 % of the train labels
# (126) plus the teacher's soft predictions on every train image. The teacher is the project's
# lead expert, models:/digits@champion, unless model.teacher says otherwise (any URI the model
# loader resolves: runs:/<run id>, models:/<name>/<version>, a .pth checkpoint):
#   mlflow run . -e train --env-manager local -P config=recipes/digits/distill.py \
#       -P cfg_options="model.teacher=runs:/<teacher run id>"
# Train a teacher first, e.g. the default recipe with a wider network:
#   mlflow run . -e train --env-manager local \
#       -P cfg_options="model.backbone.depth=16 model.backbone.widen_factor=4" -P epochs=12
# The student (not the teacher) is logged, exported and registered.
from antgo_mlflow.data.sources.digits import prepare_digits_subset

_base_ = "config.py"
_split = prepare_digits_subset(fraction=0.1, seed=0)

_mean = (0.491400, 0.482158, 0.4465231)
_std = (0.247032, 0.243485, 0.2615877)

model = dict(
    _delete_=True,
    type="Distiller",
    model=dict(
        type="ImageClassifier",
        backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1, bn_momentum=0.1),
        head=dict(type="ClsHead", loss=dict(type="CrossEntropyLoss")),
    ),
    teacher="models:/digits@champion",
    alpha=0.9,
    T=4.0,
)

_description = {"image": "numpy", "label": "int", "image_file": "str", "tag": "str"}
_fields = {"fields": ["image", "label", "image_meta"]}
_pipeline = [
    dict(type="Meta", keys=["image_file", "tag"]),
    dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
    dict(type="RandomCrop", size=(32, 32), padding=2, fill=0, keys=["image"]),
    dict(type="ToTensor", keys=["image"]),
    dict(type="Normalize", mean=_mean, std=_std, keys=["image"]),
]
data = dict(
    train=dict(
        _delete_=True,
        labeled=dict(
            type="TFDataset",
            data_path_list=_split.shard_paths("labeled"),
            pipeline=_pipeline,
            inputs_def=_fields,
            description=_description,
        ),
        unlabeled=dict(
            type="TFDataset",
            data_path_list=_split.shard_paths("unlabeled"),
            pipeline=_pipeline,
            inputs_def=_fields,
            description=_description,
        ),
    ),
    train_dataloader=dict(_delete_=True, workers_per_gpu=0, drop_last=True, shuffle=True),
    labeled_dataloader=dict(samples_per_gpu=16),
    unlabeled_dataloader=dict(samples_per_gpu=64),
)

max_epochs = None
train_cfg = dict(type="IterBasedTrainLoop", max_iters=600, val_interval=100)
optimizer = dict(_delete_=True, type="AdamW", lr=3e-3, weight_decay=1e-4)
lr_config = dict(_delete_=True, policy="OneCycle")
checkpoint_config = dict(interval=6, out_dir="./output/", log_artifacts="best")
evaluation = dict(interval=1)
