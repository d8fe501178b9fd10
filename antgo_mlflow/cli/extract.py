"""`antgo tool extract/*`: click wrappers around antgo_mlflow.tools.extract_* (parse, call, print)."""

from __future__ import annotations

import click

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
@click.option("--num", type=int, default=None, help="Write at most this many images.")
@click.option("--max-size", type=int, default=None, help="Resize so the long side is at most this.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --shuffle.")
@click.option("--workers", type=int, default=None, help="Processes to use [default: all cores].")
def extract_images_cmd(src, tgt, prefix, suffix, ext, shuffle, num, max_size, seed, workers):
    """Turn a folder of images into a standard GT dataset.

    Images are copied (or resized with --max-size, aspect kept, never upscaled) into --tgt under
    the same relative paths, and --tgt/annotation.json lists them with the written height/width
    and tag = the sub-folder. Files that are not images or cannot be decoded are skipped and
    counted. --num larger than the number of images is not an error: all are written and the
    summary says so. Nothing is left in --tgt if the run fails or is interrupted.

    \b
    Example:
      antgo tool extract/images --src=./raw --tgt=./dataset --ext=jpg,png --max-size=256
      antgo tool extract/images --src=./raw --tgt=./dataset --shuffle --num=5000 --seed=1
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
    )
    _report(summary, "images")
