"""``ConcatDataset`` (DATASETS): several dataset configs read as one source, in order.

What a project's registered data becomes when it mixes kinds (the recipe's shards plus GT JSON
labelled in Label Studio): ``dict(type="ConcatDataset", datasets=[dict(type="TFDataset", ...),
dict(type="GTDataset", ...)])``. Samples keep each part's own pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch.utils.data import ConcatDataset as _TorchConcat

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import DATASETS


@DATASETS.register_module()
class ConcatDataset(_TorchConcat):
    """The samples of ``datasets`` (DATASETS configs or built datasets), one after another.

    Args:
        datasets: a non-empty list of dataset configs.
    """

    def __init__(self, datasets: Sequence[Mapping | object]):
        if not isinstance(datasets, (list, tuple)) or not datasets:
            raise ConfigError("datasets: ConcatDataset needs a non-empty list of dataset configs")
        built = [
            DATASETS.build(d, path=f"datasets.{i}") if isinstance(d, Mapping) else d
            for i, d in enumerate(datasets)
        ]
        super().__init__(built)

    @property
    def weak_pipeline(self):
        """The first part's weak view (semi-supervised checks ask whether views exist)."""
        return getattr(self.datasets[0], "weak_pipeline", None)

    @property
    def strong_pipeline(self):
        return getattr(self.datasets[0], "strong_pipeline", None)

    @property
    def class_names(self) -> list[str]:
        for d in self.datasets:
            names = getattr(d, "class_names", None)
            if names:
                return list(names)
        return []

    @property
    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256(b"concat")
        for d in self.datasets:
            h.update(str(getattr(d, "digest", type(d).__name__)).encode())
        return h.hexdigest()[:16]
