"""Convert (and, only with ``--download``, fetch) CIFAR-10 into GT + TFRecord shards.

Example:
    python -m antgo_mlflow.entrypoints.prepare_cifar10 --src ./dataset --tgt ./dataset/cifar10 --download
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from antgo_mlflow.entrypoints._common import ArgumentParser, run_main

PROG = "antgo-prepare-cifar10"


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="./dataset", help="folder with cifar-10-batches-py/")
    parser.add_argument("--tgt", default="./dataset/cifar10", help="output folder (GT + shards)")
    parser.add_argument("--download", action="store_true", help="fetch the archive if missing")
    parser.add_argument("--num", type=int, default=50000, help="samples per shard")
    args = parser.parse_args(argv)

    from antgo_mlflow.data.sources.cifar10 import prepare_cifar10

    data = prepare_cifar10(args.src, args.tgt, download_missing=args.download, num=args.num)
    for name, split in data.splits.items():
        print(
            f"{name}: {split.count} samples, {len(split.shards)} shard(s) in {split.manifest.parent}"
        )
    print(f"{PROG}: done; set data_source = 'cifar10' in the config", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(PROG, main)
