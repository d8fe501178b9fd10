"""`antgo tool <group>/<name>`: antgo's data tools under their slash names."""

from __future__ import annotations

import click

from antgo_mlflow.cli.lazy import LazyGroup

TOOLS: dict[str, tuple[str, str]] = {
    "extract/images": ("antgo_mlflow.cli.extract:extract_images_cmd", "Images folder -> GT."),
    "extract/videos": ("antgo_mlflow.cli.extract:extract_videos_cmd", "Video frames -> GT."),
    "extract/coco": ("antgo_mlflow.cli.extract:extract_coco_cmd", "COCO instances JSON -> GT."),
    "extract/crop": ("antgo_mlflow.cli.extract:extract_crop_cmd", "One crop per instance -> GT."),
    "extract/samples": ("antgo_mlflow.cli.extract:extract_samples_cmd", "Random sample of a GT."),
    "package/tfrecord": ("antgo_mlflow.cli.package:package_tfrecord_cmd", "GT -> TFRecord shards."),
    "package/kv": ("antgo_mlflow.cli.package:package_kv_cmd", "GT -> LMDB shards."),
    "browser/images": ("antgo_mlflow.cli.review:browser_images_cmd", "Review GT in FiftyOne."),
    "filter/tags": ("antgo_mlflow.cli.review:filter_tags_cmd", "Keep samples by review tags."),
    "label/studio": ("antgo_mlflow.cli.review:label_studio_cmd", "Label Studio JSON <-> GT."),
    "label/merge": ("antgo_mlflow.cli.review:label_merge_cmd", "Merge GT annotations."),
    "label/start": ("antgo_mlflow.cli.review:label_start_cmd", "Label with Label Studio."),
}


@click.group(cls=LazyGroup, lazy=TOOLS)
def tool() -> None:
    """antgo's data tools (slash names kept: `antgo tool extract/images ...`).

    \b
    Example:
      antgo tool extract/images --src=./raw --tgt=./dataset --label-from=folder
      antgo tool package/tfrecord --src=./dataset/annotation.json --tgt=./shards --prefix=train
    """
