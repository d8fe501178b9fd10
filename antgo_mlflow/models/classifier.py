"""``ImageClassifier``: backbone -> optional neck -> head, a ``BaseModel``.

``model(image, label)`` returns the loss dict, ``model(image)`` the logits (N, C) and
``model.predict(image)`` the probabilities (N, C); ``train_step`` / ``val_step`` are
``BaseModel``'s supervised defaults (see ``antgo_mlflow.models.base``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import build_module, config_path
from antgo_mlflow.models.base import BaseModel
from antgo_mlflow.registry import MODELS


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """An image classifier assembled from MODELS configs.

    Args:
        backbone: MODELS config of the backbone (``WideResNet``, ``TVBackbone``, ...).
        neck: optional MODELS config applied to the backbone output.
        head: MODELS config of the head (default ``ClsHead()``: the backbone outputs logits).
        train_cfg, test_cfg: kept for config compatibility with antgo/mmcls (unused here).
        init_cfg: None, or ``dict(type='Pretrained', checkpoint='path.pth', prefix=None)`` to
            load local weights (non-strict; a missing file is a config error).

    Example:
        >>> model = MODELS.build(dict(type="ImageClassifier",
        ...     backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1),
        ...     head=dict(type="ClsHead")), path="model")
        >>> model(torch.zeros(2, 3, 32, 32), label=torch.tensor([0, 1]))["loss"]
    """

    def __init__(
        self, backbone, neck=None, head=None, train_cfg=None, test_cfg=None, init_cfg=None
    ):
        super().__init__()
        path = config_path("model")
        self.backbone = build_module(MODELS, backbone, f"{path}.backbone")
        self.neck = build_module(MODELS, neck, f"{path}.neck")
        self.head = build_module(MODELS, head, f"{path}.head", default_type="ClsHead")
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if init_cfg is not None:
            self._init_weights(init_cfg, f"{path}.init_cfg")

    def extract_feat(self, image: torch.Tensor):
        """Backbone (and neck) output for ``image`` (N, 3, H, W)."""
        x = self.backbone(image)
        if self.neck is not None:
            x = self.neck(x)
        return x

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None, **kwargs):
        """Loss dict when ``label`` is given, else logits (N, C). Extra batch fields are ignored."""
        logits = self.head(self.extract_feat(image))
        if label is None:
            return logits
        return self.head.loss(logits, label)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C) (softmax; sigmoid for multi-label losses)."""
        return self.head.predict(self.head(self.extract_feat(image)))

    def extract_features(self, batch) -> torch.Tensor:
        """The embedding the classifier layer sees, (N, D): the head's input, or, when the
        backbone itself ends in the classifier (``WideResNet(num_classes=...)``), the
        backbone's ``forward_features`` (falls back to its output when it has none)."""
        image = batch["image"]
        forward_features = getattr(self.backbone, "forward_features", None)
        if getattr(self.head, "fc", None) is None and self.neck is None and forward_features:
            return forward_features(image).flatten(1)
        x = self.extract_feat(image)
        if isinstance(x, (list, tuple)):
            x = x[-1]
        return (x.mean(dim=(2, 3)) if x.dim() == 4 else x).flatten(1)

    def _init_weights(self, init_cfg, path: str) -> None:
        if not isinstance(init_cfg, Mapping) or init_cfg.get("type") != "Pretrained":
            raise ConfigError(f"{path}: only dict(type='Pretrained', checkpoint=...) is supported")
        extra = set(init_cfg) - {"type", "checkpoint", "prefix"}
        if extra:
            raise ConfigError(
                f"{path}.{sorted(extra)[0]}: unknown key (Pretrained takes checkpoint, prefix)"
            )
        file = Path(str(init_cfg.get("checkpoint", ""))).expanduser()
        if not file.is_file():
            raise ConfigError(f"{path}.checkpoint: no such file {str(file)!r}")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt or non-tensor file: say which one
            raise ConfigError(f"{path}.checkpoint: cannot read {str(file)!r}: {exc}") from None
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        prefix = init_cfg.get("prefix")
        if prefix:
            prefix = prefix.rstrip(".") + "."
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            target = getattr(self, prefix[:-1], None)
            if not isinstance(target, nn.Module):
                raise ConfigError(f"{path}.prefix: model has no sub-module {prefix[:-1]!r}")
            target.load_state_dict(state, strict=False)
        else:
            self.load_state_dict(state, strict=False)
