"""``InteractContext``: antgo's Python API for review (browser) and labelling (activelearning).

Built on the same code as the CLI tools: ``browser`` is the FiftyOne dataset + App + tag wait of
``browser/images`` (:mod:`antgo_mlflow.review.browser`), ``activelearning`` is the Label Studio
flow of ``label/start`` (:mod:`antgo_mlflow.review.labelling`).

Example:
    ctx = InteractContext()
    ctx.browser.start("b_exp", config={"tags": ["hello", "world"]})
    for i in range(10):
        ctx.recorder.record({"id": i, "score": {"data": img, "type": "IMAGE"},
                             "description": {"data": f"sample {i}", "type": "STRING"}})
    ctx.browser.waiting()          # until every sample carries one of the tags
    content = ctx.browser.download()
    ctx.browser.exit()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.review.browser import free_port


def _save_image(data: Any, path: Path) -> tuple[int, int]:
    """Write an ndarray (HxW or HxWxC uint8, RGB) or copy an image file to ``path``; (w, h)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (str, os.PathLike)):
        with Image.open(data) as im:
            im.save(path)
            return im.size
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr)
    im.save(path)
    return im.size


class _Service:
    def __init__(self, ctx: InteractContext):
        self.ctx = ctx
        self.name: str | None = None

    def _folder(self) -> Path:
        return self.ctx.dump_dir / self.name


class Browser(_Service):
    """Review service: a FiftyOne dataset shown in the App; humans tag samples."""

    def __init__(self, ctx: InteractContext):
        super().__init__(ctx)
        self.dataset = None
        self.app = None
        self.tags: list[str] = []
        self._count = 0

    def start(
        self,
        name: str,
        config: dict | None = None,
        json_file: str | None = None,
        port: int | None = None,
    ):
        """Create the dataset ``antgo-interact-<name>`` (from ``json_file`` or empty) and serve the App."""
        from antgo_mlflow.review.browser import AppServer, open_dataset
        from antgo_mlflow.review.fiftyone_io import fo
        from antgo_mlflow.tools.filter_tags import split_tags

        config = dict(config or {})
        self.name = name
        self.tags = split_tags(config.get("tags"))
        if not self.tags:
            raise UsageError("browser.start: config['tags'] must list the review tags")
        if config.get("white_users"):
            self.ctx.echo(
                "warning: white_users is ignored by the browser (the FiftyOne App has no accounts; "
                "it listens on 127.0.0.1, reach it through the ssh tunnel)"
            )
        ds_name = f"antgo-interact-{name}"
        if json_file:
            self.dataset, _ = open_dataset(json_file, ds_name)
        else:
            fo_ = fo()
            if fo_.dataset_exists(ds_name):
                fo_.delete_dataset(ds_name)
            self.dataset = fo_.Dataset(ds_name, persistent=True)
        self.dataset.info["antgo_review_tags"] = self.tags
        self.dataset.save()
        self._count = len(self.dataset)
        self.app = AppServer(self.dataset, port or config.get("port") or free_port(), self.ctx.echo)
        self.ctx._active = self
        return self

    def record(self, item: dict) -> None:
        """Add one sample: the first IMAGE field is the image; STRING fields become sample fields."""
        from antgo_mlflow.gt import new_sample
        from antgo_mlflow.review.fiftyone_io import INDEX, KEY, gt_to_fo_sample

        if self.dataset is None:
            raise UsageError("browser.record before browser.start")
        rid = item.get("id", self._count)
        folder = self._folder()
        image_file, w, h, strings, others = None, 0, 0, {}, {}
        for key, value in item.items():
            if key == "id" or not isinstance(value, dict):
                continue
            kind = str(value.get("type", "")).upper()
            if kind == "IMAGE":
                rel = f"data/{rid}_{key}.png"
                size = _save_image(value["data"], folder / rel)
                if image_file is None:
                    image_file, (w, h) = rel, size
                else:
                    others[f"{key}_image"] = str(folder / rel)
            elif kind == "STRING":
                strings[key] = str(value.get("data", ""))
            else:
                raise DataError(
                    f"record {rid}, field {key!r}: type must be IMAGE or STRING, got {kind!r}"
                )
        if image_file is None:
            raise DataError(f"record {rid}: needs at least one IMAGE field")
        sample = new_sample(image_file=image_file, width=w, height=h, tag=self.name)
        fs = gt_to_fo_sample(sample, folder, list(self.dataset.default_classes or []), self._count)
        fs[KEY] = image_file
        fs[INDEX] = self._count
        fs["record_id"] = str(rid)
        for key, value in {**strings, **others}.items():
            fs[key] = value
        self.dataset.add_sample(fs)
        self._count += 1

    def waiting(self, timeout: float | None = None) -> bool:
        """Block until every sample carries one of the tags (same wait as ``--feedback``)."""
        from antgo_mlflow.review.browser import wait_for_tags

        return wait_for_tags(self.dataset, self.tags, self.ctx.echo, timeout=timeout)

    def download(self) -> dict[str, Any]:
        """The per-sample tags (``<dump>/<name>/check.json``, logged to MLflow when a run is active)."""
        import json

        from antgo_mlflow.review.browser import tag_record, write_feedback

        done = tag_record(self.dataset, self.tags, complete=False)
        complete = all(any(t in self.tags for t in s["tags"]) for s in done["samples"])
        out = write_feedback(self.dataset, self.tags, self._folder() / "check.json", complete)
        return json.loads(out.read_text(encoding="utf-8"))

    def exit(self) -> None:
        """Stop the App (the dataset stays, persistent)."""
        if self.app is not None:
            self.app.close()
            self.app = None


class ActiveLearning(_Service):
    """Labelling service on Label Studio (the ``label/start`` code)."""

    def __init__(self, ctx: InteractContext):
        super().__init__(ctx)
        self.session = None
        self.stage = "stopped"

    def start(self, name: str, config: dict | None = None, json_file: str | None = None, **kwargs):
        """Start (or attach to) Label Studio and create project ``name`` for ``config``."""
        from antgo_mlflow.review.labelling import LabelSession

        config = dict(config or {})
        self.name = name
        category = (config.get("metas") or {}).get("category") or []
        tags = {}
        for i, c in enumerate(category):
            if isinstance(c, dict):
                tags[str(c["class_name"])] = int(c.get("class_index", i))
            else:
                tags[str(c)] = i
        if not tags:
            raise UsageError("activelearning.start: config['metas']['category'] lists no class")
        white = config.get("white_users") or {}
        users = (
            {u: (v or {}).get("password", "") for u, v in white.items()}
            if isinstance(white, dict)
            else white
        )
        self.session = LabelSession.open(
            name,
            tags=tags,
            label_type=(config.get("label_type") or "CLASS").upper(),
            folder=self._folder(),
            white_users=users,
            echo=self.ctx.echo,
            **kwargs,
        )
        if json_file:
            self.session.add_gt(json_file)
        self.stage = "waiting"
        self.ctx._active = self
        return self

    def labeling(self) -> None:
        """Switch to the labelling stage (records are sent to Label Studio as they come)."""
        self.stage = "labeling"

    def record(self, item: dict) -> None:
        """Add one task: ``{'id', 'image': ndarray}`` or ``{'image_file': path}``."""
        if self.session is None:
            raise UsageError("activelearning.record before activelearning.start")
        rid = item.get("id", self.session.count)
        if "image_file" in item:
            rel = f"data/{rid}_{Path(item['image_file']).name}"
            w, h = _save_image(item["image_file"], self._folder() / rel)
        elif "image" in item:
            rel = f"data/{rid}.png"
            w, h = _save_image(item["image"], self._folder() / rel)
        else:
            raise DataError(f"record {rid}: needs 'image' (ndarray) or 'image_file'")
        self.session.add_image(rel, w, h, meta={"id": str(rid)})

    def download(self, timeout: float | None = None, ignore_incomplete: bool = False) -> list[dict]:
        """Wait until every task is annotated, then return the labels as GT samples."""
        self.session.wait(timeout=timeout, ignore_incomplete=ignore_incomplete)
        samples, _ = self.session.export_gt()
        return samples

    def waiting(self) -> None:
        """Switch back to the waiting stage."""
        self.stage = "waiting"

    def exit(self) -> None:
        """Stop the Label Studio server if this context started it."""
        if self.session is not None:
            self.session.close()
            self.session = None
        self.stage = "stopped"


class Recorder:
    """``ctx.recorder.record({...})`` sends to the service started last."""

    def __init__(self, ctx: InteractContext):
        self.ctx = ctx

    def record(self, item: dict) -> None:
        if self.ctx._active is None:
            raise UsageError("recorder.record: start ctx.browser or ctx.activelearning first")
        self.ctx._active.record(item)


class InteractContext:
    """antgo's interactive services: ``browser``, ``activelearning`` and ``recorder``.

    Files (saved images, results) go to ``dump_dir/<name>/`` (default ``./dump``).
    """

    def __init__(self, dump_dir: str | os.PathLike = "./dump", echo=print):
        self.dump_dir = Path(dump_dir).resolve()
        self.echo = echo
        self._active = None
        self.browser = Browser(self)
        self.activelearning = ActiveLearning(self)
        self.recorder = Recorder(self)

    def __enter__(self) -> InteractContext:
        return self

    def __exit__(self, *exc) -> None:
        self.browser.exit()
        self.activelearning.exit()
