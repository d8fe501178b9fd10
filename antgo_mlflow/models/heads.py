"""Classification heads registered in MODELS: ``ClsHead`` and ``StackedLinearClsHead``.

A head maps backbone (or neck) output to logits (N, C), computes the loss dict from logits and
labels (``head.loss``) and turns logits into probabilities (``head.predict``: softmax, or sigmoid
when the loss is a per-class one such as ``BCELoss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import build_module, config_path
from antgo_mlflow.registry import LOSSES, MODELS


def _last_feature(x):
    """Backbones may return a tuple/list of feature maps; heads use the last one."""
    if isinstance(x, (tuple, list)):
        x = x[-1]
    return x


def _pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) feature maps -> (N, C) by global average pooling; (N, C) unchanged."""
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() != 2:
        raise ValueError(
            f"head expects (N, C) or (N, C, H, W) features, got shape {tuple(x.shape)}"
        )
    return x


def _topk_tuple(topk, path: str) -> tuple[int, ...]:
    values = (topk,) if isinstance(topk, int) else tuple(topk)
    if not values or any(not isinstance(k, int) or k < 1 for k in values):
        raise ConfigError(f"{path}.topk: expected positive integers, got {topk!r}")
    return values


@MODELS.register_module()
class ClsHead(nn.Module):
    """Loss + prediction on top of logits; with ``in_channels`` and ``num_classes`` it adds a Linear.

    Without them the backbone must already output logits (the seed: ``WideResNet(num_classes=10)``
    + ``ClsHead()``).

    Args:
        loss: LOSSES config (``CrossEntropyLoss``, ``BCELoss``, ``FocalLoss``, ...).
        topk: k values of the training accuracies logged when ``cal_acc`` is True.
        in_channels: feature size of the backbone output (4-D maps are average-pooled).
        num_classes: number of classes of the added Linear layer.
        cal_acc: also return ``acc_top<k>`` (detached floats) in the loss dict.
        dropout_rate: dropout before the Linear layer (only with in_channels/num_classes).
    """

    def __init__(
        self,
        loss=None,
        topk: int | Sequence[int] = (1,),
        in_channels: int | None = None,
        num_classes: int | None = None,
        cal_acc: bool = False,
        dropout_rate: float = 0.0,
        init_cfg=None,
    ):
        super().__init__()
        path = self._path = config_path("model.head")
        self.topk = _topk_tuple(topk, path)
        self.cal_acc = bool(cal_acc)
        if (in_channels is None) != (num_classes is None):
            missing = "num_classes" if num_classes is None else "in_channels"
            raise ConfigError(
                f"{path}.{missing}: give both in_channels and num_classes, or neither"
            )
        self.in_channels, self.num_classes = in_channels, num_classes
        if loss is None:
            loss = {"type": "CrossEntropyLoss", "loss_weight": 1.0}
        self.compute_loss = build_module(LOSSES, loss, f"{path}.loss")
        self.fc = None
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        if num_classes is not None:
            if int(num_classes) < 1 or int(in_channels) < 1:
                raise ConfigError(f"{path}: in_channels and num_classes must be >= 1")
            self.fc = nn.Linear(int(in_channels), int(num_classes))

    @property
    def activation(self) -> str:
        """'softmax' or 'sigmoid': how predict() turns logits into probabilities."""
        return getattr(self.compute_loss, "activation", "softmax")

    def forward(self, x) -> torch.Tensor:
        """Backbone/neck output -> logits (N, C)."""
        x = _last_feature(x)
        if self.fc is None:
            return x if x.dim() == 2 else _pool(x)
        return self.fc(self.dropout(self._check_width(_pool(x))))

    def _check_width(self, x: torch.Tensor) -> torch.Tensor:
        # A wrong in_channels is a config mistake; torch would only say "shapes cannot be multiplied".
        if x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self._path}.in_channels: is {self.in_channels} but the backbone outputs "
                f"{x.shape[1]} features"
            )
        return x

    def loss(self, logits: torch.Tensor, label: torch.Tensor, **kwargs) -> dict:
        """Logits and labels (indices (N,) or soft (N, C)) -> ``{'loss': tensor, ...}``."""
        out = {"loss": self.compute_loss(logits, label, **kwargs)}
        if self.cal_acc and label.dim() == 1:
            with torch.no_grad():
                num_classes = logits.shape[1]
                ranked = logits.topk(min(max(self.topk), num_classes), dim=1).indices
                hits = ranked == label.view(-1, 1).long()
                for k in self.topk:
                    out[f"acc_top{k}"] = hits[:, : min(k, num_classes)].any(dim=1).float().mean()
        return out

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) -> probabilities (N, C)."""
        if self.activation == "sigmoid":
            return logits.sigmoid()
        return logits.softmax(dim=1)


@MODELS.register_module()
class StackedLinearClsHead(ClsHead):
    """Several Linear (+ norm, activation, dropout) layers, then a Linear classifier.

    Args:
        num_classes: number of classes.
        in_channels: feature size of the backbone output (4-D maps are average-pooled).
        mid_channels: widths of the hidden layers, e.g. ``[256]``.
        dropout_rate: dropout after each hidden layer.
        norm_cfg: None or ``dict(type='BN1d')`` (also 'LN') after each hidden Linear.
        act_cfg: ``dict(type='ReLU')``; any ``torch.nn`` activation name (GELU, SiLU, ...) or None.
        loss, topk, cal_acc: as in ClsHead.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mid_channels: Sequence[int] = (),
        dropout_rate: float = 0.0,
        norm_cfg=None,
        act_cfg=None,
        loss=None,
        topk: int | Sequence[int] = (1,),
        cal_acc: bool = False,
        init_cfg=None,
    ):
        super().__init__(loss=loss, topk=topk, cal_acc=cal_acc)
        path = config_path("model.head")
        if int(num_classes) < 1 or int(in_channels) < 1:
            raise ConfigError(f"{path}: in_channels and num_classes must be >= 1")
        if isinstance(mid_channels, int):
            mid_channels = [mid_channels]
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        act_cfg = {"type": "ReLU"} if act_cfg is None else act_cfg
        if act_cfg:
            _activation(act_cfg, f"{path}.act_cfg")  # check it even without hidden layers
        if norm_cfg:
            _norm(norm_cfg, 1, f"{path}.norm_cfg")
        layers: list[nn.Module] = []
        width = self.in_channels
        for mid in mid_channels:
            layers.append(nn.Linear(width, int(mid)))
            if norm_cfg:
                layers.append(_norm(norm_cfg, int(mid), f"{path}.norm_cfg"))
            if act_cfg:
                layers.append(_activation(act_cfg, f"{path}.act_cfg"))
            if dropout_rate > 0:
                layers.append(nn.Dropout(dropout_rate))
            width = int(mid)
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(width, self.num_classes)

    def forward(self, x) -> torch.Tensor:
        return self.fc(self.layers(self._check_width(_pool(_last_feature(x)))))


_NORMS = {"BN": nn.BatchNorm1d, "BN1d": nn.BatchNorm1d, "LN": nn.LayerNorm}


def _norm(cfg, width: int, path: str) -> nn.Module:
    kind = cfg.get("type") if isinstance(cfg, dict) else cfg
    if kind not in _NORMS:
        raise ConfigError(f"{path}.type: unknown norm {kind!r} (one of {sorted(_NORMS)})")
    return _NORMS[kind](width)


def _activation(cfg, path: str) -> nn.Module:
    cfg = dict(cfg) if isinstance(cfg, dict) else {"type": cfg}
    kind = cfg.pop("type", None)
    cls = getattr(nn, str(kind), None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"{path}.type: unknown activation {kind!r} (a torch.nn name such as 'ReLU')"
        )
    try:
        return cls(**cfg)
    except TypeError as exc:
        raise ConfigError(f"{path}: {kind} {exc}") from None
