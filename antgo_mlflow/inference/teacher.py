"""``PretrainedModel`` (MODELS): a frozen model loaded by the shared loader, e.g. a distillation teacher.

Registered in MODELS so that models (``Distiller``) build a teacher from a URI through the
registry, without importing this layer: ``dict(type="PretrainedModel",
uri="models:/digits@champion")``. Whatever :func:`antgo_mlflow.inference.load_model` resolves
works (``runs:/<id>``, ``models:/<name>@<alias>``, ``models:/<name>/<version>``, a ``.pth``
checkpoint, a PyTorch MLflow model), except ONNX (no in-process module to run on tensors).

Example:
    >>> teacher = MODELS.build(dict(type="PretrainedModel", uri="models:/digits@champion"))
    >>> teacher(images).shape, teacher.num_classes       # (N, 10), 10
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from antgo_mlflow.errors import AntgoError, ConfigError
from antgo_mlflow.inference.runtime import frozen
from antgo_mlflow.registry import MODELS, current_path


@MODELS.register_module()
class PretrainedModel(nn.Module):
    """A frozen model from any URI the shared loader resolves (see the module docstring).

    Args:
        uri: the model URI or file.
        from_checkpoint: for an MLflow model URI, rebuild the full torch module from its
            training run's checkpoint (it then has ``extract_features``).
        config: a config file that builds a checkpoint's model (instead of its own record).
        trust_checkpoint_config: let an old checkpoint's config text run (it is code).

    Attributes:
        num_classes: the classes the model scores.
        input_size: (H, W) the model takes.
        uri: as given.
    """

    def __init__(
        self,
        uri: str,
        from_checkpoint: bool = False,
        config: str | None = None,
        trust_checkpoint_config: bool = False,
    ):
        super().__init__()
        from antgo_mlflow.inference.loader import load_model

        path = current_path("model.teacher")
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError(f"{path}.uri: expected a model URI or file, got {uri!r}")
        try:
            predictor = load_model(
                uri,
                config=config,
                trust_checkpoint_config=trust_checkpoint_config,
                from_checkpoint=from_checkpoint,
                flag=path,
            )
            module = predictor.module
            if module is None:
                raise ConfigError(
                    f"{path}: {uri} is an ONNX model; a teacher must be a torch model "
                    "(runs:/<id>, a .pth checkpoint, a PyTorch MLflow model)"
                )
            self.num_classes = int(predictor.num_classes)
        except AntgoError as exc:
            if str(exc).startswith(path):
                raise
            raise ConfigError(f"{path}: {exc}") from None
        self.uri = uri
        self.input_size = tuple(int(v) for v in predictor.preprocess.size)
        self.inner = frozen(module)  # eval mode kept through .train(), no gradients

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) of a preprocessed (N, 3, H, W) batch, without gradients."""
        out = self.inner(image)
        return out[0] if isinstance(out, (list, tuple)) else out

    def extract_features(self, batch: Mapping) -> torch.Tensor:
        """The inner model's embeddings (N, D) (a model rebuilt from its checkpoint)."""
        inner = self.inner.inner
        with torch.no_grad():
            if callable(getattr(inner, "extract_features", None)):
                return inner.extract_features(batch)
            if callable(getattr(inner, "extract_feat", None)):
                x = inner.extract_feat(batch["image"])
                x = x[-1] if isinstance(x, (list, tuple)) else x
                return (x.mean(dim=(2, 3)) if x.dim() == 4 else x).flatten(1)
        raise ConfigError(f"model.teacher: {self.uri} gives no features")
