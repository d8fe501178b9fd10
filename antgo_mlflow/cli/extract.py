"""`antgo tool extract/*`: click wrappers around antgo_mlflow.tools.extract_* (parse, call, print)."""

from __future__ import annotations

import click

from antgo_mlflow.cli.options import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
)
from antgo_mlflow.cli.package import data_root_option
from antgo_mlflow.tools.tags import TAGS_HELP

SRC_HELP = "Input folder."


def _report(summary, what: str = "samples") -> None:
    for line in summary.warnings:
        click.echo(f"antgo: warning: {line}", err=True)
    click.echo(summary.describe(what))


@click.command("extract/images")
@click.option("--src", required=True, help="Folder of images, searched recursively.")
@click.option("--tgt", required=True, help="Output dataset folder (images + annotation.json).")
@click.option("--prefix", default=None, help="Keep files whose name starts with this.")
@click.option(
    "--suffix", default=None, help="Keep files whose name (without extension) ends with this."
)
@click.option("--ext", default=None, help="Keep only these extensions, comma-separated (jpg,png).")
@click.option("--shuffle", is_flag=True, help="Random order (see --seed) instead of sorted paths.")
@click.option("--num", type=POSITIVE_INT, default=None, help="Write at most this many images.")
@click.option(
    "--max-size",
    type=NON_NEGATIVE_INT,
    default=None,
    help="Resize so the long side is at most this (0: no resizing).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --shuffle.")
@click.option(
    "--workers", type=POSITIVE_INT, default=None, help="Processes to use [default: all cores]."
)
@click.option(
    "--label-from",
    type=click.Choice(["folder"]),
    default=None,
    help="folder: label each image by its class sub-folder (<src>/<class>/*.jpg).",
)
def extract_images_cmd(
    src, tgt, prefix, suffix, ext, shuffle, num, max_size, seed, workers, label_from
):
    """Turn a folder of images into a standard GT dataset.

    Images are copied (or resized with --max-size, aspect kept, never upscaled) into --tgt under
    the same relative paths, and --tgt/annotation.json lists them with the written height/width
    and tag = the sub-folder. Files that are not images or cannot be decoded are skipped and
    counted. --num larger than the number of images is not an error: all are written and the
    summary says so. Nothing is left in --tgt if the run fails or is interrupted.

    Without --label-from samples have no class (image_label -1: label or pseudo-label them).
    --label-from=folder labels by the first sub-folder (<src>/cat/1.jpg is class "cat"): the
    classes, sorted by name, are the image_label indices and go to --tgt/meta.json; images
    directly in --src are skipped.

    \b
    Example:
      antgo tool extract/images --src=./raw --tgt=./dataset --ext=jpg,png --max-size=256
      antgo tool extract/images --src=./raw --tgt=./dataset --shuffle --num=5000 --seed=1
      antgo tool extract/images --src=./pets --tgt=./pets_gt --label-from=folder
    """
    from antgo_mlflow.tools.extract_images import extract_images

    summary = extract_images(
        src,
        tgt,
        prefix=prefix,
        suffix=suffix,
        ext=ext,
        shuffle=shuffle,
        num=num,
        max_size=max_size,
        seed=seed,
        workers=workers,
        label_from=label_from,
    )
    _report(summary, "images")
    if summary.extra.get("categories"):
        names = summary.extra["categories"]
        click.echo(
            f"labelled by folder: {len(names)} classes ({', '.join(names[:10])}"
            f"{', ...' if len(names) > 10 else ''}) in {summary.tgt / 'meta.json'}"
        )


@click.command("extract/videos")
@click.option("--src", required=True, help="A video file, or a folder searched recursively.")
@click.option("--tgt", required=True, help="Output dataset folder (frames + annotation.json).")
@click.option(
    "--frame-rate",
    type=POSITIVE_FLOAT,
    default=1.0,
    show_default=True,
    help="Frames kept per second of video time (antgo's value meant every Nth frame).",
)
@click.option(
    "--max-size",
    type=NON_NEGATIVE_INT,
    default=None,
    help="Resize so the long side is at most this (0: no resizing).",
)
@click.option(
    "--ext",
    type=click.Choice(["jpg", "png"]),
    default="jpg",
    show_default=True,
    help="Frame format.",
)
def extract_videos_cmd(src, tgt, frame_rate, max_size, ext):
    """Sample video frames (mp4/avi/mov/mkv/ts/... via OpenCV) into a standard GT dataset.

    --frame-rate is in frames per SECOND OF VIDEO TIME: 2 keeps the first frame at or after
    0 s, 0.5 s, 1 s, ... whatever the video's fps. antgo's --frame-rate=N meant "every Nth
    frame": for a 30 fps video antgo's 15 is --frame-rate=2 here. Frames are written to
    --tgt/<video>/<video>_frame-<k>.jpg (k = frame index in the video); each sample has that
    frame's height/width and tag = the source video. Videos OpenCV cannot open are skipped with
    a warning; if none can be opened the command fails and writes nothing.

    \b
    Example:
      antgo tool extract/videos --src=./clips --tgt=./frames --frame-rate=2 --max-size=512
    """
    from antgo_mlflow.tools.extract_videos import extract_videos

    summary = extract_videos(src, tgt, frame_rate=frame_rate, max_size=max_size, ext=ext)
    _report(summary, f"frames from {summary.extra.get('videos', 0)} video(s)")


@click.command("extract/coco")
@click.option("--src", required=True, help="COCO instances JSON file.")
@click.option("--tgt", required=True, help="Output dataset folder.")
@click.option("--tags", default=None, help=f"Category mapping: {TAGS_HELP} (others dropped).")
@click.option(
    "--images", default=None, help="Folder of the COCO images [default: the JSON's folder]."
)
def extract_coco_cmd(src, tgt, tags, images):
    """Convert a COCO instances JSON into a standard GT dataset, one sample per image.

    Each sample holds all boxes of its image (COCO xywh -> absolute xyxy, 2 decimals), labels, segments in
    COCO's encoding (flat polygons [[x0,y0,x1,y1,...],...] or RLE dicts as given) and keypoints
    as joints2d. Crowd annotations are kept with box_visibility 0 and iscrowd 1. Labels come
    from --tags (name:index; other categories are dropped) or else from the COCO category ids
    in increasing order (0..K-1); meta.json lists the class names in index order. Images are
    hard-linked (or copied) to --tgt/images/<file_name>; images without annotations are kept.

    \b
    Example:
      antgo tool extract/coco --src=coco/annotations/instances_val2017.json \\
          --images=coco/val2017 --tgt=./coco_gt --tags=person:0,car:1
    """
    from antgo_mlflow.tools.extract_coco import extract_coco

    summary = extract_coco(src, tgt, tags=tags, images=images)
    names = summary.extra.get("categories", [])
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    boxes = summary.extra.get("boxes", 0)
    summary.notes.append(
        f"{boxes} box{'es' if boxes != 1 else ''}; "
        f"{len(names)} class{'es' if len(names) != 1 else ''}: {shown}."
    )
    _report(summary, "samples")


@click.command("extract/crop")
@click.option("--src", required=True, help="GT JSON file, or a dataset folder (annotation.json).")
@click.option("--tgt", required=True, help="Output dataset folder for the crops.")
@click.option(
    "--ext-ratio",
    type=NON_NEGATIVE_FLOAT,
    default=0.3,
    show_default=True,
    help="Grow each box by this fraction of its size before cropping.",
)
@click.option("--square", is_flag=True, help="Make each grown box square (antgo's crops).")
@data_root_option
def extract_crop_cmd(src, tgt, ext_ratio, square, data_roots):
    """Crop every instance of a GT dataset into its own image (one sample per box).

    Each box is grown by --ext-ratio of its width and height (centred), clipped to the image
    and saved as --tgt/images/<label>/<source stem>_<i>.png. The crop's sample has
    image_label = the instance label (image_label_name from meta.json), tag = the source image,
    and the instance's box, joints2d and polygon segments shifted into crop coordinates.

    \b
    Example:
      antgo tool extract/crop --src=./dataset/annotation.json --tgt=./crops --ext-ratio=0.3
    """
    from antgo_mlflow.tools.extract_crop import extract_crop

    summary = extract_crop(src, tgt, ext_ratio=ext_ratio, square=square, data_roots=data_roots)
    _report(summary, "crops")


@click.command("extract/samples")
@click.option("--src", required=True, help="GT JSON (or folder, or .txt with one record a line).")
@click.option("--num", type=POSITIVE_INT, required=True, help="How many samples to draw.")
@click.option("--tgt", default=None, help="Output folder or file [default: beside --src].")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--feedback", is_flag=True, help="Print the sample keys and one sample.")
def extract_samples_cmd(src, num, tgt, seed, feedback):
    """Draw --num random samples (seeded) into <name>_samples_<num>.json.

    The file is written beside --src unless --tgt names a folder (or a .json file);
    image_file paths are rewritten to stay valid from there. --num larger than the number of
    samples is an error. With --feedback the keys and the first drawn sample are printed.

    \b
    Example:
      antgo tool extract/samples --src=./dataset/annotation.json --num=100 --feedback
    """
    import json

    from antgo_mlflow.tools.extract_samples import extract_samples

    summary = extract_samples(src, num, tgt=tgt, seed=seed)
    total = summary.extra.get("total")
    click.echo(f"wrote {summary.written} of {total} samples (seed {seed}) to {summary.annotation}.")
    if feedback:
        keys = summary.extra.get("keys") or []
        if keys:
            click.echo("keys: " + ", ".join(keys))
        click.echo("sample:")
        click.echo(json.dumps(summary.extra.get("example"), ensure_ascii=False, indent=2))
