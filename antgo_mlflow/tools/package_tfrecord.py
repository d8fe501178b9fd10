"""`antgo tool package/tfrecord`: standard GT JSONs (or existing shards) -> TFRecord shards + manifest.

Output: ``<prefix>-%05d-of-%05d-tfrecord`` with its ``-index`` (``offset length`` per record) and
``<prefix>-manifest.json`` written last. Records use antgo's encoding
(``antgo_mlflow.data.records``), so antgo reads them and we read antgo's. Guarantees (determinism,
dropped samples counted before the shard count, temporary names + rename, re-sharding of existing
shards given as ``src``) are described in ``antgo_mlflow.data.pack``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from antgo_mlflow.data.pack import PackSummary


def package_tfrecord(
    src: str | Iterable[str],
    tgt: str | os.PathLike,
    prefix: str,
    num: int = 100000,
    workers: int | None = None,
    antgo_template: bool = False,
    data_roots: Iterable[str] | str | None = None,
) -> PackSummary:
    """Pack ``src`` into TFRecord shards of ``num`` samples in ``tgt``.

    Args:
        src: GT JSON files or folders of them (comma string or list); a manifest, a
            ``-tfrecord``/``-kvrecord`` file or a shard prefix re-shards existing data.
        tgt: output folder.
        prefix: shard name prefix.
        num: samples per shard.
        workers: reading/encoding threads (default: CPUs, at most 8).
        antgo_template: also write antgo's sample-template fields a sample lacks, with antgo's
            defaults, so antgo's TFDataset reads the shards with its *default* description.
        data_roots: folders besides each GT's own folder that its images may be in (images
            anywhere else are refused; see ``antgo_mlflow.gt.io``).

    Example:
        >>> package_tfrecord("data/annotation.json", "shards", "hand", num=40000)
    """
    from antgo_mlflow.data.pack import pack

    options = dict(num=num, workers=workers, antgo_template=antgo_template, data_roots=data_roots)
    return pack(src, tgt, prefix, fmt="tfrecord", **options)
