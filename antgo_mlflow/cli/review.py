"""`antgo tool browser/images | filter/tags | label/studio | label/merge | label/start`."""

from __future__ import annotations

import click

from antgo_mlflow.cli.options import PORT, POSITIVE_FLOAT
from antgo_mlflow.tools.tags import TAGS_HELP


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _white_user_names(value: str | None) -> list[str]:
    """``--white-users`` takes user names only: a password on a command line shows in ``ps``."""
    from antgo_mlflow.credentials import WHITE_USERS_ENV
    from antgo_mlflow.errors import UsageError

    names = _csv(value)
    if any(":" in n for n in names):
        raise UsageError(
            "--white-users: give user names only (passwords on a command line show in ps and "
            "shell history); put name:password lines in a file only you can read (chmod 600) "
            f"and pass --white-users-file=FILE, or set ${WHITE_USERS_ENV}"
        )
    return names


@click.command("browser/images")
@click.option("--src", help="GT JSON file (or folder with annotation.json) to review.")
@click.option("--tags", default="", help="Allowed review tags, e.g. valid,invalid.")
@click.option(
    "--feedback",
    is_flag=True,
    help="Wait until every sample has one allowed tag; write <name>_browser.json.",
)
@click.option(
    "--port",
    type=PORT,
    default=5151,
    show_default=True,
    help="App port on 127.0.0.1.",
)
@click.option("--no-launch", is_flag=True, help="Only load/update the FiftyOne dataset.")
@click.option("--dataset-name", help="FiftyOne dataset name (default: antgo-<src name>).")
@click.option(
    "--user-input", is_flag=True, help="Open an empty dataset; import GT files from the App."
)
@click.option(
    "--white-users", help="Accepted for antgo compatibility; the FiftyOne App has no accounts."
)
@click.option(
    "--timeout", type=POSITIVE_FLOAT, default=None, help="With --feedback: give up after N seconds."
)
def browser_images_cmd(
    src, tags, feedback, port, no_launch, dataset_name, user_input, white_users, timeout
):
    """Review GT samples in the FiftyOne App (persistent dataset, 127.0.0.1).

    \b
    Example:
      antgo tool browser/images --src=./dataset/annotation.json --tags=valid,invalid --feedback
      ssh -N -L 5151:127.0.0.1:5151 user@server   # then open http://127.0.0.1:5151
    """
    from antgo_mlflow.review.browser import browse

    if _white_user_names(white_users):
        click.echo(
            "antgo: warning: --white-users is ignored (the FiftyOne App has no accounts; it listens on "
            "127.0.0.1 only, reach it through the ssh tunnel)",
            err=True,
        )
    result = browse(
        src=src,
        tags=_csv(tags),
        feedback=feedback,
        port=port,
        launch=not no_launch,
        dataset_name=dataset_name,
        user_input=user_input,
        timeout=timeout,
        echo=click.echo,
    )
    if result.get("feedback"):
        click.echo(f"wrote {result['feedback']}")


@click.command("filter/tags")
@click.option("--src", help="GT JSON file.")
@click.option("--tgt", help="Browser result JSON (<name>_browser.json).")
@click.option("--tags", default="", help="Keep samples having ALL of these tags.")
@click.option("--no-tags", default="", help="...and NONE of these tags.")
@click.option("--dataset-name", help="Read the tags from this FiftyOne dataset instead of --tgt.")
@click.option("--out-dir", help="Folder for <name>_filter_tags.json (default: beside --src).")
def filter_tags_cmd(src, tgt, tags, no_tags, dataset_name, out_dir):
    """Keep samples with all --tags and none of --no-tags (antgo matched the exact set).

    \b
    Example:
      antgo tool filter/tags --src=annotation.json --tgt=annotation_browser.json --tags=valid --no-tags=blurry
    """
    from antgo_mlflow.tools.filter_tags import check_request, filter_by_tags

    check_request(src, tgt, tags, no_tags, dataset_name=dataset_name)
    if dataset_name is not None:
        from antgo_mlflow.review.fiftyone_io import filter_by_dataset_tags

        r = filter_by_dataset_tags(dataset_name, src, tags, no_tags, out_dir=out_dir)
    else:
        r = filter_by_tags(src, tgt, tags, no_tags, out_dir=out_dir)
    click.echo(f"kept {r['kept']} of {r['total']} samples -> {r['out']}")


@click.command("label/studio")
@click.option("--from", "from_", is_flag=True, help="Label Studio export -> GT.")
@click.option("--to", "to", is_flag=True, help="GT -> Label Studio tasks (with annotations).")
@click.option("--src", required=True, help="Input JSON (export with --from, GT with --to).")
@click.option("--tgt", default=".", show_default=True, help="Output folder.")
@click.option("--tags", help=f"Classes: {TAGS_HELP}.")
@click.option(
    "--prefix",
    default="",
    help="--from: folder prefixed to image_file; --to: prefix of data.image.",
)
@click.option(
    "--allow-rotation", is_flag=True, help="--from: store rotated boxes as their enclosing box."
)
def label_studio_cmd(from_, to, src, tgt, tags, prefix, allow_rotation):
    """Convert Label Studio JSON exports to GT (--from) and back (--to).

    --to exports boxes, polygons, keypoints and image choices. COCO RLE masks (the crowd regions
    of real COCO sets) have no Label Studio form: their box is exported, the mask dropped, and
    the summary says how many. The crowd flag travels as a per-region choice "crowd" and comes
    back with --from (iscrowd 1, box_visibility 0).

    \b
    Example:
      antgo tool label/studio --from --src=project-1-export.json --tgt=./ds --tags=lefthand:0,righthand:1
      antgo tool label/studio --to --src=./ds/annotation.json --tgt=./ls --prefix=/data/local-files/?d=ds/
    """
    from antgo_mlflow.errors import UsageError
    from antgo_mlflow.tools import label_studio

    if from_ == to:
        raise UsageError("label/studio: give one of --from or --to" + (" (not both)" if to else ""))
    if from_:
        r = label_studio.from_studio(src, tgt, tags, prefix, allow_rotation)
        skipped = f" ({r['skipped']} tasks without annotation skipped)" if r["skipped"] else ""
        click.echo(f"{r['samples']} samples -> {r['gt']}{skipped}")
    else:
        r = label_studio.to_studio(src, tgt, tags, prefix)
        n = r["rle_masks_dropped"]
        rle = (
            f" ({n} RLE masks dropped: Label Studio has no RLE; their boxes are kept)" if n else ""
        )
        click.echo(f"{r['tasks']} tasks -> {r['json']}{rle}")


@click.command("label/merge")
@click.option("--src", required=True, help="GT files to merge, comma separated.")
@click.option("--tgt", required=True, help="Output folder (annotation.json + meta.json).")
@click.option(
    "--remap", is_flag=True, help="Re-index labels by class name when meta.json lists disagree."
)
@click.option("--to", "to_", is_flag=True, hidden=True, help="Accepted for antgo compatibility.")
def label_merge_cmd(src, tgt, remap, to_):
    """Merge annotations of the same images (by image_file), reporting conflicts.

    \b
    Example:
      antgo tool label/merge --src=a/annotation.json,b/annotation.json --tgt=./merged
    """
    from antgo_mlflow.tools.label_merge import merge_gt

    r = merge_gt(_csv(src), tgt, remap=remap)
    click.echo(f"{r['samples']} samples -> {r['gt']}")
    if r.get("image_roots"):
        roots = " ".join(f"--data-root={root}" for root in r["image_roots"])
        click.echo(f"images stay in their source folders: pack the merged GT with {roots}")
    if r["conflicts"]:
        click.echo(
            f"antgo: warning: {len(r['conflicts'])} conflicts (first file kept), see "
            f"{tgt}/merge_conflicts.json",
            err=True,
        )


@click.command("label/start")
@click.option("--src", required=True, help="GT JSON file with the images to label.")
@click.option("--tgt", default=".", show_default=True, help="Output folder.")
@click.option("--tags", required=True, help=f"Classes: {TAGS_HELP}.")
@click.option(
    "--type",
    "label_type",
    type=click.Choice(["RECT", "POLYGON", "POINT", "CLASS"], case_sensitive=False),
    default="RECT",
    show_default=True,
)
@click.option(
    "--white-users",
    help="Annotator user names, comma-separated (passwords: --white-users-file or "
    "$ANTGO_WHITE_USERS, never on the command line).",
)
@click.option(
    "--white-users-file",
    help="A file only you can read (chmod 600) with name:password lines for the annotators.",
)
@click.option(
    "--port",
    type=PORT,
    default=8080,
    show_default=True,
    help="Label Studio port on 127.0.0.1.",
)
@click.option("--url", help="Use a running Label Studio at this URL (with LABEL_STUDIO_API_KEY).")
@click.option(
    "--ignore-incomplete", is_flag=True, help="Write the result without waiting for every task."
)
@click.option(
    "--timeout", type=POSITIVE_FLOAT, default=None, help="Give up waiting after N seconds."
)
def label_start_cmd(
    src, tgt, tags, label_type, white_users, white_users_file, port, url, ignore_incomplete, timeout
):
    """Send samples to Label Studio, wait for the annotations, write <name>_label.json + meta.json.

    \b
    Example:
      antgo tool label/start --src=./ds/annotation.json --tgt=./labelled --tags=Car:0,Train:1 --type=RECT
      antgo tool label/start --src=./ds/annotation.json --tgt=./labelled --tags=Car:0 \\
          --white-users=alice,bob --white-users-file=~/.antgo/annotators   # chmod 600
    """
    from antgo_mlflow.credentials import white_user_passwords
    from antgo_mlflow.review.labelling import label_start

    names = _white_user_names(white_users)
    users = (
        white_user_passwords(names, file=white_users_file) if names or white_users_file else None
    )
    r = label_start(
        src=src,
        tgt=tgt,
        tags=tags,
        label_type=label_type.upper(),
        white_users=users,
        port=port,
        url=url,
        ignore_incomplete=ignore_incomplete,
        timeout=timeout,
        echo=click.echo,
    )
    click.echo(f"{r['samples']} samples -> {r['gt']}")
