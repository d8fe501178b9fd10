"""`antgo tool <group>/<name>`: antgo's data tools under their slash names."""

from __future__ import annotations

import click

from antgo_mlflow.cli.lazy import LazyGroup

TOOLS: dict[str, tuple[str, str]] = {
    "extract/images": (
        "antgo_mlflow.cli.extract:extract_images_cmd",
        "Images folder -> standard GT.",
    ),
    "extract/videos": (
        "antgo_mlflow.cli.extract:extract_videos_cmd",
        "Video frames -> standard GT.",
    ),
    "extract/coco": (
        "antgo_mlflow.cli.extract:extract_coco_cmd",
        "COCO instances JSON -> standard GT.",
    ),
    "extract/crop": (
        "antgo_mlflow.cli.extract:extract_crop_cmd",
        "One crop per instance -> standard GT.",
    ),
    "extract/samples": (
        "antgo_mlflow.cli.extract:extract_samples_cmd",
        "Random sample of a GT file.",
    ),
}


@click.group(cls=LazyGroup, lazy=TOOLS)
def tool() -> None:
    """antgo's data tools (slash names kept: `antgo tool extract/images ...`)."""
