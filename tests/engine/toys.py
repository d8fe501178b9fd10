"""Tiny model, dataset and metric registered for the engine tests (independent of models/ and data/).

Imported by the tests and, through ``custom_imports``, by training subprocesses and torchrun workers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from antgo_mlflow.engine.hooks.base import Hook
from antgo_mlflow.errors import DataError
from antgo_mlflow.models.base import BaseModel
from antgo_mlflow.registry import DATASETS, HOOKS, METRICS, MODELS

NUM_CLASSES = 4


def make_npz(path: Path, n: int = 64, seed: int = 0, size: int = 8, channels: int = 1) -> Path:
    """Write a learnable toy set: class k has a bright k-th quadrant plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    images = rng.normal(0, 0.3, size=(n, channels, size, size)).astype(np.float32)
    h = size // 2
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 2)
        images[i, :, r * h : (r + 1) * h, c * h : (c + 1) * h] += 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels.astype(np.int64))
    return path


@MODELS.register_module(force=True)
class EngineTinyNet(nn.Module):
    """Conv + linear classifier following the Runner's model contract."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(self, image, label=None, **kwargs):
        x = torch.relu(self.conv(image))
        x = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        logits = self.fc(x)
        if label is None:
            return logits
        loss = nn.functional.cross_entropy(logits, label)
        return {"loss_cls": loss, "acc": (logits.argmax(1) == label).float().mean()}

    def predict(self, image):
        return torch.softmax(self.forward(image), dim=1)


@MODELS.register_module(force=True)
class EngineTwoPartNet(nn.Module):
    """Two sub-modules for per-module optimizer tests."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def forward(self, image, label=None, **kwargs):
        logits = self.head(self.backbone(image))
        if label is None:
            return logits
        return {"loss": nn.functional.cross_entropy(logits, label)}

    def predict(self, image):
        return torch.softmax(self.forward(image), dim=1)


@DATASETS.register_module(force=True)
class EngineNpzData(Dataset):
    """Samples ``{'image', 'label', 'index', 'name'}`` from an .npz the test wrote."""

    class_names = [f"c{i}" for i in range(NUM_CLASSES)]

    def __init__(
        self, path: str, delay: float = 0.0, limit: int | None = None, manifest: bool = False
    ):
        p = Path(path)
        if not p.is_file():
            raise DataError(f"path: {p} not found")
        with np.load(p, allow_pickle=False) as data:
            self.images = torch.from_numpy(data["images"])
            self.labels = torch.from_numpy(data["labels"])
        if limit:
            self.images, self.labels = self.images[:limit], self.labels[:limit]
        self.delay = delay
        self.sources = [str(p)]
        if manifest:
            self.manifests = [{"name": "toy-shards", "digest": "d1g3st0123", "path": str(p)}]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return {"image": self.images[i], "label": self.labels[i], "index": i, "name": f"s{i}"}


@METRICS.register_module(force=True)
class EngineAccuracy:
    """top_1 accuracy and a text artifact."""

    def __call__(self, preds, labels):
        return {"top_1": float((preds.argmax(1) == labels).mean()), "count": float(len(labels))}

    def artifacts(self, preds, labels, out_dir, class_names=None):
        path = Path(out_dir) / "summary.txt"
        path.write_text(f"{len(labels)} samples, classes {class_names}\n")
        return [path]


@HOOKS.register_module(force=True)
class EngineRecorderHook(Hook):
    """Records the hook points called (in order) on a class-level list."""

    calls: list = []

    def __init__(self, tag: str = "r"):
        self.tag = tag

    def before_run(self, runner):
        self.calls.append((self.tag, "before_run"))

    def after_train_epoch(self, runner):
        self.calls.append((self.tag, "after_train_epoch", runner.epoch))

    def after_val_epoch(self, runner, metrics):
        self.calls.append((self.tag, "after_val_epoch", dict(metrics)))

    def after_run(self, runner):
        self.calls.append((self.tag, "after_run"))


@HOOKS.register_module(force=True)
class EngineExplodeHook(Hook):
    """Raises in after_train_iter at a given iteration (a crashing run)."""

    def __init__(self, at_iter: int = 3):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, batch, outputs):
        if runner.iter >= self.at_iter:
            raise RuntimeError(f"boom at iteration {runner.iter}")


def write_config(folder: Path, npz: Path, **overrides) -> Path:
    """Write a config.py for the toys (``overrides`` replace top-level keys, given as Python source)."""
    keys = {
        "custom_imports": "dict(imports=['tests.engine.toys'])",
        "model": "dict(type='EngineTinyNet')",
        "data": (
            f"dict(train=dict(type='EngineNpzData', path={str(npz)!r}), "
            f"val=dict(type='EngineNpzData', path={str(npz)!r}, limit=32), "
            f"test=dict(type='EngineNpzData', path={str(npz)!r}, limit=32), "
            "train_dataloader=dict(samples_per_gpu=8, workers_per_gpu=0, shuffle=True), "
            "val_dataloader=dict(samples_per_gpu=16), test_dataloader=dict(samples_per_gpu=16))"
        ),
        "optimizer": "dict(type='SGD', lr=0.1, momentum=0.9)",
        "optimizer_config": "dict(grad_clip=None)",
        "lr_config": "dict(policy='CosineAnnealing', min_lr=1e-4)",
        "log_config": (
            "dict(interval=2, hooks=[dict(type='TextLoggerHook'), "
            "dict(type='MlflowLoggerHook', log_model=False)])"
        ),
        "checkpoint_config": "dict(interval=1, max_keep_ckpts=2)",
        "evaluation": "dict(interval=1, metric=dict(type='EngineAccuracy'), save_best='top_1')",
        "max_epochs": "2",
        "seed": "0",
        "experiment_name": "'engine-tests'",
    }
    keys.update(overrides)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.py"
    path.write_text("".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None))
    return path


@HOOKS.register_module(force=True)
class EngineInterruptHook(Hook):
    """Raises KeyboardInterrupt after a given iteration (Ctrl-C without a real signal)."""

    def __init__(self, at_iter: int = 5):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, batch, outputs):
        if runner.iter == self.at_iter:
            raise KeyboardInterrupt


@HOOKS.register_module(force=True)
class EngineGradNormHook(Hook):
    """Records the total gradient norm seen after each optimizer step."""

    norms: list = []

    def after_train_iter(self, runner, batch_idx, batch, outputs):
        grads = [p.grad for p in runner.model_core.parameters() if p.grad is not None]
        self.norms.append(float(torch.norm(torch.stack([g.norm() for g in grads]))))


@DATASETS.register_module(force=True)
class EngineStreamData(torch.utils.data.IterableDataset):
    """A stream (no length) of the same samples as EngineNpzData."""

    def __init__(self, path: str):
        self.inner = EngineNpzData(path)

    def __iter__(self):
        for i in range(len(self.inner)):
            yield self.inner[i]


@HOOKS.register_module(force=True)
class EngineStateHook(Hook):
    """Adds its own state to checkpoints and reads it back on resume (like an EMA hook would)."""

    loaded: list = []

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint["engine_state"] = {"epoch_seen": runner.epoch}

    def after_load_checkpoint(self, runner, checkpoint):
        self.loaded.append(checkpoint.get("engine_state"))


@DATASETS.register_module(force=True)
class EngineUnlabeledData(EngineNpzData):
    """The .npz images without labels; ``views=True`` returns ``[weak, strong]`` per sample."""

    def __init__(self, path: str, views: bool = False, delay: float = 0.0, limit=None):
        super().__init__(path, delay=delay, limit=limit)
        self.views = views

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        image = self.images[i]
        if not self.views:
            return {"image": image, "index": i}
        noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(int(i))) * 0.5
        return [{"image": image, "index": i}, {"image": image + noise, "index": i}]


@MODELS.register_module(force=True)
class EngineTwoSourceNet(BaseModel):
    """A FixMatch-shaped toy: cross-entropy on ``labeled``, weak->strong consistency on
    ``unlabeled``; records what each step received (class-level list)."""

    seen: list = []

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 4):
        super().__init__()
        self.net = EngineTinyNet(num_classes, width)

    def forward(self, image, label=None, **kwargs):
        return self.net(image, label=label)

    def predict(self, image):
        return self.net.predict(image)

    def train_step(self, batch, optim_wrapper):
        labeled, unlabeled = batch["labeled"], batch["unlabeled"]
        type(self).seen.append(
            {
                "labeled": tuple(labeled["image"].shape),
                "weak": tuple(unlabeled["image_weak"].shape),
                "strong": tuple(unlabeled["image_strong"].shape),
                "unlabeled_index": unlabeled["index"].tolist(),
            }
        )
        with optim_wrapper.optim_context(self):
            loss_sup = self.net(labeled["image"], label=labeled["label"])["loss_cls"]
            with torch.no_grad():
                target = self.net(unlabeled["image_weak"]).softmax(1)
            strong = self.net(unlabeled["image_strong"]).log_softmax(1)
            loss_unsup = -(target * strong).sum(1).mean()
        optim_wrapper.update_params(loss_sup + 0.5 * loss_unsup)
        return {"loss_sup": loss_sup, "loss_unsup": loss_unsup, "mask_ratio": 1.0}


@DATASETS.register_module(force=True)
class EngineMixData(Dataset):
    """Two sources of ``sizes`` samples each (``source_sizes``), the sample's source recorded."""

    def __init__(self, sizes=(500, 500), ratios=None):
        self.source_sizes = list(sizes)
        self.ratios = ratios
        self.bounds = np.cumsum(self.source_sizes)

    def __len__(self):
        return int(self.bounds[-1])

    def __getitem__(self, i):
        source = int(np.searchsorted(self.bounds, i, side="right"))
        return {"image": torch.full((1, 2, 2), float(source)), "label": source, "source": source}


@MODELS.register_module(force=True)
class EngineSourceCounter(BaseModel):
    """Counts the training samples of each source (class-level list of batches' sources)."""

    sources: list = []

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, image, label=None, **kwargs):
        logits = self.fc(image.flatten(1))
        if label is None:
            return logits
        return {"loss": nn.functional.cross_entropy(logits, label)}

    def train_step(self, batch, optim_wrapper):
        type(self).sources.extend(batch["source"].tolist())
        return super().train_step(batch, optim_wrapper)


@MODELS.register_module(force=True)
class EngineTeacherStudent(BaseModel):
    """Meta-Pseudo-Labels-shaped toy: the student learns from the teacher's pseudo-labels and
    steps first; the teacher's loss is its scale ``w`` times the student's loss *after* that
    step, so ``w`` moves by exactly that loss (SGD, lr=1). ``log`` keeps both losses."""

    log: list = []

    def __init__(self):
        super().__init__()
        self.student = nn.Linear(64, NUM_CLASSES)
        self.teacher = nn.Linear(64, NUM_CLASSES)
        self.teacher.w = nn.Parameter(torch.ones(()))

    def forward(self, image, label=None, **kwargs):
        logits = self.student(image.flatten(1))
        return logits if label is None else {"loss": nn.functional.cross_entropy(logits, label)}

    def train_step(self, batch, optim_wrapper):
        x, y = batch["image"].flatten(1), batch["label"]
        pseudo = self.teacher(x).argmax(1).detach()
        student_before = nn.functional.cross_entropy(self.student(x), pseudo)
        optim_wrapper["student"].update_params(student_before)
        with torch.no_grad():
            student_after = nn.functional.cross_entropy(self.student(x), y)
        teacher_loss = self.teacher.w * student_after
        optim_wrapper["teacher"].update_params(teacher_loss)
        type(self).log.append({"before": student_before.item(), "after": student_after.item()})
        return {"loss_student": student_before, "loss_teacher": teacher_loss}
