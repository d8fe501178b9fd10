"""Feature-pyramid backbones for the detectors (MODELS): ``TinyFPN``, ``ResNetFPN``, ``MobileNetV3FPN``.

A detection backbone maps an image batch (N, 3, H, W) to an ordered dict of feature maps, all
with ``out_channels`` channels, finest first, and says the stride of each map in ``strides``
(the detectors derive their anchor sizes from it). Weights are never downloaded: the torchvision
networks are built with ``weights=None``.

``TinyFPN`` is a few plain conv stages + torchvision's ``FeaturePyramidNetwork``: ~0.5 M
parameters, so that a detector trains from scratch on a CPU in minutes (the shapes recipe).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops.feature_pyramid_network import (
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import config_path
from antgo_mlflow.registry import MODELS

EXTRA_BLOCKS = ("none", "pool", "p6p7")


def _extra_block(name: str | None, channels: int, path: str):
    """The FPN's extra levels: none, one max-pooled level, or P6/P7 convolutions (FCOS, RetinaNet)."""
    name = "none" if name is None else str(name)
    if name not in EXTRA_BLOCKS:
        raise ConfigError(f"{path}.extra: expected one of {', '.join(EXTRA_BLOCKS)}, got {name!r}")
    if name == "pool":
        return LastLevelMaxPool(), 1
    if name == "p6p7":
        return LastLevelP6P7(channels, channels), 2
    return None, 0


def _check_levels(levels: Sequence[int], allowed: Sequence[int], path: str, what: str) -> list[int]:
    levels = [int(v) for v in levels]
    if not levels or any(v not in allowed for v in levels) or sorted(set(levels)) != levels:
        raise ConfigError(
            f"{path}.{what}: expected increasing values from {list(allowed)}, got {levels!r}"
        )
    return levels


def _stage(cin: int, cout: int, convs: int) -> nn.Sequential:
    """``convs`` 3x3 conv + BN + ReLU layers, the first with stride 2."""
    layers: list[nn.Module] = []
    for k in range(convs):
        layers += [
            nn.Conv2d(cin if k == 0 else cout, cout, 3, 2 if k == 0 else 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class _PyramidBackbone(nn.Module):
    """Shared tail: the FPN over selected body outputs and the ``strides`` bookkeeping."""

    out_channels: int
    strides: tuple[int, ...]
    #: the keys of the output dict, finest first: "0".."k-1" for the tapped stages, then the
    #: extra levels ("pool", or "p6", "p7")
    level_names: tuple[str, ...]

    def _make_fpn(
        self, in_channels: list[int], strides: list[int], out_channels: int, extra, path
    ) -> None:
        block, extra_levels = _extra_block(extra, out_channels, path)
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=block)
        self.out_channels = int(out_channels)
        last = strides[-1]
        self.strides = tuple(strides) + tuple(last * 2 ** (k + 1) for k in range(extra_levels))
        extra_names = {0: (), 1: ("pool",), 2: ("p6", "p7")}[extra_levels]
        self.level_names = tuple(str(i) for i in range(len(strides))) + extra_names


@MODELS.register_module()
class TinyFPN(_PyramidBackbone):
    """A small conv backbone (stride-2 stages of 3x3 convs) + FPN, fast enough for CPU training.

    Args:
        channels: output channels of the stages at strides 2, 4, 8, 16, 32 (a shorter tuple
            stops earlier).
        convs: 3x3 conv layers per stage (the first one has stride 2); one value per stage.
        out_strides: which stage outputs feed the FPN (strides, e.g. ``(8, 16, 32)``).
        out_channels: channels of every pyramid level.
        extra: levels added above the last one: ``none``, ``pool`` or ``p6p7``.

    Example:
        >>> net = MODELS.build(dict(type="TinyFPN", channels=(16, 32, 64, 96), out_strides=(8, 16)))
        >>> [f.shape[-1] for f in net(torch.zeros(1, 3, 128, 128)).values()]
        [16, 8]
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64, 96, 128),
        convs: Sequence[int] = (1, 1, 2, 2, 2),
        out_strides: Sequence[int] = (8, 16, 32),
        out_channels: int = 64,
        extra: str | None = "none",
    ):
        super().__init__()
        path = config_path("model.backbone")
        channels = [int(c) for c in channels]
        if not 1 <= len(channels) <= 5 or any(c < 1 for c in channels):
            raise ConfigError(f"{path}.channels: expected 1-5 positive widths, got {channels!r}")
        convs = [int(c) for c in convs]
        if len(convs) < len(channels) or any(c < 1 for c in convs):
            raise ConfigError(
                f"{path}.convs: expected a count >= 1 for each of the {len(channels)} stages, "
                f"got {convs!r}"
            )
        available = [2 ** (i + 1) for i in range(len(channels))]
        out_strides = _check_levels(out_strides, available, path, "out_strides")
        stages, cin = [], 3
        for c, n in list(zip(channels, convs))[: available.index(out_strides[-1]) + 1]:
            stages.append(_stage(cin, c, n))
            cin = c
        self.stages = nn.ModuleList(stages)
        self._taps = [available.index(s) for s in out_strides]
        self._make_fpn([channels[i] for i in self._taps], out_strides, out_channels, extra, path)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self._taps:
                feats[str(len(feats))] = x
        return self.fpn(feats)


def _body_outputs(body: nn.Module, names: dict[str, str], x: torch.Tensor) -> OrderedDict:
    """Run the children of ``body`` in order, keeping the outputs of ``names`` (child -> key)."""
    out = OrderedDict()
    for name, module in body.named_children():
        x = module(x)
        if name in names:
            out[names[name]] = x
    return out


@MODELS.register_module()
class ResNetFPN(_PyramidBackbone):
    """A torchvision ResNet (random init, never downloaded) + FPN.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_strides: which of the stages at strides 4, 8, 16, 32 feed the FPN.
        out_channels: channels of every pyramid level (torchvision uses 256).
        extra: ``none``, ``pool`` (Faster R-CNN) or ``p6p7`` (FCOS, RetinaNet).
        norm: ``batch`` (trainable BatchNorm) or ``frozen`` (torchvision's FrozenBatchNorm2d,
            for small batches on pretrained weights).
    """

    DEPTHS = (18, 34, 50, 101, 152)

    def __init__(
        self,
        depth: int = 18,
        out_strides: Sequence[int] = (8, 16, 32),
        out_channels: int = 256,
        extra: str | None = "p6p7",
        norm: str = "batch",
    ):
        super().__init__()
        import torchvision
        from torchvision.ops import misc

        path = config_path("model.backbone")
        if depth not in self.DEPTHS:
            raise ConfigError(f"{path}.depth: expected one of {self.DEPTHS}, got {depth!r}")
        if norm not in ("batch", "frozen"):
            raise ConfigError(f"{path}.norm: expected 'batch' or 'frozen', got {norm!r}")
        out_strides = _check_levels(out_strides, (4, 8, 16, 32), path, "out_strides")
        norm_layer = misc.FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d
        net = torchvision.models.get_model(f"resnet{depth}", weights=None, norm_layer=norm_layer)
        stage_of = {4: "layer1", 8: "layer2", 16: "layer3", 32: "layer4"}
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        # stages above the last tapped one are left out: no unused parameters
        names = names[: names.index(stage_of[out_strides[-1]]) + 1]
        self.body = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))
        self._names = {stage_of[s]: str(i) for i, s in enumerate(out_strides)}
        expansion = 4 if depth >= 50 else 1
        width = {4: 64, 8: 128, 16: 256, 32: 512}
        self._make_fpn(
            [width[s] * expansion for s in out_strides], out_strides, out_channels, extra, path
        )

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(_body_outputs(self.body, self._names, x))


@MODELS.register_module()
class MobileNetV3FPN(_PyramidBackbone):
    """torchvision's MobileNetV3 (large or small, random init, never downloaded) + FPN.

    Args:
        arch: ``large`` or ``small``.
        out_strides: strides of the stages that feed the FPN (from 4, 8, 16, 32; torchvision's
            Faster R-CNN MobileNetV3-FPN uses 16 and 32).
        out_channels: channels of every pyramid level.
        extra: ``none``, ``pool`` or ``p6p7``.
    """

    def __init__(
        self,
        arch: str = "large",
        out_strides: Sequence[int] = (16, 32),
        out_channels: int = 256,
        extra: str | None = "pool",
    ):
        super().__init__()
        import torchvision

        path = config_path("model.backbone")
        if arch not in ("large", "small"):
            raise ConfigError(f"{path}.arch: expected 'large' or 'small', got {arch!r}")
        out_strides = _check_levels(out_strides, (4, 8, 16, 32), path, "out_strides")
        features = torchvision.models.get_model(f"mobilenet_v3_{arch}", weights=None).features
        # the last block of each stride: where the next block downsamples (or the end)
        ends, stride = {}, 2
        probe = torch.zeros(1, 3, 64, 64)
        with torch.no_grad():
            for i, block in enumerate(features):
                probe = block(probe)
                stride = 64 // probe.shape[-1]
                ends[stride] = (i, probe.shape[1])
        self.body = features[: ends[out_strides[-1]][0] + 1]
        self._names = {str(ends[s][0]): str(k) for k, s in enumerate(out_strides)}
        self._make_fpn([ends[s][1] for s in out_strides], out_strides, out_channels, extra, path)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(_body_outputs(self.body, self._names, x))
