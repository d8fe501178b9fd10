# {{name}}: antgo's mvp config (CIFAR-10 classification with a WideResNet), on antgo-mlflow.
#
# Out of the box it trains OFFLINE on the embedded digits (scikit-learn's 1,797 digits rendered as
# 32x32 RGB, so this CIFAR pipeline applies unchanged), small enough for a CPU.
#
# To train on CIFAR-10 -- the one change:  data_source = "cifar10"
#   It reads the CIFAR-10 python batches from ./dataset/cifar-10-batches-py (get them once with
#   `python -m antgo_mlflow.entrypoints.prepare_cifar10 --src ./dataset --download`),
#   converts them once to GT + TFRecord shards in ./dataset/cifar10, and switches the model to
#   antgo's WRN-28-2 and schedule.
#
# Your own data: `antgo tool extract/images ...` then `antgo tool package/tfrecord ...` and put the
# shard paths in data.train/val/test.data_path_list below.
data_source = "digits"  # "digits" | "cifar10"

_cifar = data_source == "cifar10"
if _cifar:
    from antgo_mlflow.data.sources.cifar10 import prepare_cifar10

    _data = prepare_cifar10("./dataset", "./dataset/cifar10")
    _train, _val, _test = (_data.shard_paths(s) for s in ("train", "test", "test"))
else:
    from antgo_mlflow.data.sources.digits import prepare_digits

    _data = prepare_digits()  # once, into ~/.cache/antgo-mlflow ($ANTGO_CACHE_DIR)
    _train, _val, _test = (_data.shard_paths(s) for s in ("train", "val", "test"))

seed = 0
max_epochs = 1500 if _cifar else 12

# optimizer
optimizer = dict(
    type="SGD", lr=0.05 if _cifar else 0.1, weight_decay=5e-4, momentum=0.9, nesterov=True
)
optimizer_config = dict(grad_clip=None)

# learning rate schedule
lr_config = dict(policy="CosineAnnealing", min_lr=1e-5)

# logging: text to the console, everything to MLflow (metrics, params, config, checkpoints, model)
log_config = dict(interval=50 if _cifar else 10, hooks=[dict(type="TextLoggerHook")])

# model (models/wideres.py registers WideResNet)
model = dict(
    type="ImageClassifier",
    backbone=dict(
        type="WideResNet",
        num_classes=10,
        depth=28 if _cifar else 10,
        widen_factor=2 if _cifar else 1,
        dropout=0,
        dense_dropout=0.2 if _cifar else 0,
    ),
    head=dict(
        type="ClsHead",
        loss=dict(type="CrossEntropyLoss", loss_weight=1.0, class_weight=[1.0] * 10),
    ),
)

# checkpoints: epoch_N.pth, latest.pth and best.pth in the work dir; best.pth also to MLflow
checkpoint_config = dict(interval=1, max_keep_ckpts=2, out_dir="./output/", log_artifacts="best")

_mean = (0.491400, 0.482158, 0.4465231)
_std = (0.247032, 0.243485, 0.2615877)
_description = {"image": "numpy", "label": "int", "image_file": "str", "tag": "str"}
_eval_pipeline = [
    dict(type="Meta", keys=["image_file", "tag"]),
    dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
    dict(type="ToTensor", keys=["image"]),
    dict(type="Normalize", mean=_mean, std=_std, keys=["image"]),
]
_workers = 2 if _cifar else 0

# data
data = dict(
    train=dict(
        type="TFDataset",
        data_path_list=_train,
        pipeline=[
            dict(type="Meta", keys=["image_file", "tag"]),
            dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
            dict(type="RandomHorizontalFlip", keys=["image"]),
            dict(
                type="RandomCrop",
                size=(32, 32),
                padding=int(32 * 0.125),
                fill=128,
                padding_mode="constant",
                keys=["image"],
            ),
            dict(type="ToTensor", keys=["image"]),
            dict(type="Normalize", mean=_mean, std=_std, keys=["image"]),
        ],
        inputs_def={"fields": ["image", "label", "image_meta"]},
        description=_description,
    ),
    train_dataloader=dict(
        samples_per_gpu=128 if _cifar else 64,
        workers_per_gpu=_workers,
        drop_last=True,
        shuffle=True,
    ),
    val=dict(
        type="TFDataset",
        data_path_list=_val,
        pipeline=_eval_pipeline,
        inputs_def={"fields": ["image", "label", "image_meta"]},
        description=_description,
    ),
    val_dataloader=dict(
        samples_per_gpu=256, workers_per_gpu=_workers, drop_last=False, shuffle=False
    ),
    test=dict(
        type="TFDataset",
        data_path_list=_test,
        pipeline=_eval_pipeline,
        inputs_def={"fields": ["image", "label", "image_meta"]},
        description=_description,
    ),
    test_dataloader=dict(
        samples_per_gpu=256, workers_per_gpu=_workers, drop_last=False, shuffle=False
    ),
)

# evaluation: top-1/top-5 on data.val every epoch; best.pth follows top_1
evaluation = dict(
    out_dir="./output/", interval=1, metric=dict(type="AccuracyEval"), save_best="top_1"
)

# export: --process=export writes ONNX (dynamic batch) checked with ONNX Runtime
export = dict(
    input_shape_list=[[1, 3, 32, 32]], input_name_list=["image"], output_name_list=["pred"]
)
