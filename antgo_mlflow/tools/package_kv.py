"""`antgo tool package/kv`: standard GT JSONs (or existing shards) -> LMDB shards + manifest.

Output: ``<prefix>-%05d-of-%05d-kvrecord`` (one LMDB environment per shard, a single file), keys
``<prefix>-<index>``, values the same serialized records as the TFRecord shards (never pickle),
and ``<prefix>-manifest.json`` written last (see ``antgo_mlflow.data.lmdb_store`` and
``antgo_mlflow.data.pack``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from antgo_mlflow.data.pack import PackSummary


def package_kv(
    src: str | Iterable[str],
    tgt: str | os.PathLike,
    prefix: str,
    num: int = 100000,
    workers: int | None = None,
    antgo_template: bool = False,
    data_roots: Iterable[str] | str | None = None,
) -> PackSummary:
    """Pack ``src`` into LMDB shards of ``num`` samples in ``tgt`` (arguments as ``package_tfrecord``).

    Example:
        >>> package_kv("data/annotation.json", "kv", "hand")
    """
    from antgo_mlflow.data.pack import pack

    options = dict(num=num, workers=workers, antgo_template=antgo_template, data_roots=data_roots)
    return pack(src, tgt, prefix, fmt="kv", **options)
