"""`antgo tool package/tfrecord` and `package/kv`: click wrappers around antgo_mlflow.tools.package_*."""

from __future__ import annotations

import click

from antgo_mlflow.cli.options import POSITIVE_INT


def data_root_option(fn):
    """``--data-root DIR`` (repeatable): folders outside the dataset its images may be in."""
    return click.option(
        "--data-root",
        "data_roots",
        multiple=True,
        help="A folder outside the dataset that its images may be in (repeatable; also "
        "$ANTGO_DATA_ROOTS). Images anywhere else are refused.",
    )(fn)


def _options(fn):
    fn = data_root_option(fn)
    fn = click.option(
        "--antgo-template",
        is_flag=True,
        help="Also write antgo's sample-template fields a sample lacks (for antgo's own reader "
        "with its default description; makes records larger and slower to parse).",
    )(fn)
    fn = click.option(
        "--workers",
        type=POSITIVE_INT,
        default=None,
        help="Reading/encoding threads [default: CPUs, max 8].",
    )(fn)
    fn = click.option(
        "--num",
        type=POSITIVE_INT,
        default=100000,
        show_default=True,
        help="Samples per shard.",
    )(fn)
    fn = click.option("--prefix", required=True, help="Shard file name prefix.")(fn)
    fn = click.option("--tgt", required=True, help="Output folder.")(fn)
    fn = click.option(
        "--src",
        required=True,
        help="GT JSON files or folders, comma-separated; or existing shards to re-shard "
        "(a -manifest.json, a -tfrecord/-kvrecord file or a shard prefix).",
    )(fn)
    return fn


def _report(summary) -> None:
    for where, reason in summary.dropped_samples[:5]:
        click.echo(f"antgo: warning: dropped {where}: {reason}", err=True)
    if summary.dropped > 5:
        click.echo(f"antgo: warning: ... {summary.dropped - 5} more dropped", err=True)
    click.echo(summary.line())
    click.echo(f"manifest: {summary.manifest}")


@click.command("package/tfrecord")
@_options
def package_tfrecord_cmd(src, tgt, prefix, **options):
    """Pack standard GT into TFRecord shards (+ -index files and a manifest written last).

    Files: PREFIX-00000-of-0000N-tfrecord, PREFIX-00000-of-0000N-index, PREFIX-manifest.json
    (sample counts, sha256 per shard, class names from meta.json, sources). Samples whose image is
    missing or unreadable are dropped and counted; the output is byte-identical for the same
    input; an interrupted run leaves nothing that looks complete.

    \b
    Example:
      antgo tool package/tfrecord --src=./dataset/annotation.json --tgt=./shards --prefix=train --num=40000
      antgo tool package/tfrecord --src=./shards/train-manifest.json --tgt=./big --prefix=train --num=200000
    """
    from antgo_mlflow.tools.package_tfrecord import package_tfrecord

    _report(package_tfrecord(src, tgt, prefix, **options))


@click.command("package/kv")
@_options
def package_kv_cmd(src, tgt, prefix, **options):
    """Pack standard GT into LMDB shards (keys PREFIX-<index>, no pickle) and a manifest.

    Files: PREFIX-00000-of-0000N-kvrecord (one LMDB file per shard) and PREFIX-manifest.json.

    \b
    Example:
      antgo tool package/kv --src=./dataset/annotation.json --tgt=./kv --prefix=train
    """
    from antgo_mlflow.tools.package_kv import package_kv

    _report(package_kv(src, tgt, prefix, **options))
