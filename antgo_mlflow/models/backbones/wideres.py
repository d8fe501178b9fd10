"""``WideResNet`` (Zagoruyko & Komodakis) for 32x32 inputs, as in the antgo seed / FixMatch.

WRN-28-2 with 10 classes has 1.47M parameters; WRN-10-1 (~78k) is the CPU-test size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import config_path
from antgo_mlflow.registry import MODELS


class _BasicBlock(nn.Module):
    """Pre-activation residual block: BN-act-conv3x3-BN-act-(dropout)-conv3x3 + shortcut."""

    def __init__(
        self, in_planes, out_planes, stride, dropout, activate_before_residual, bn_momentum, slope
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=bn_momentum)
        self.act1 = nn.LeakyReLU(slope, inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=bn_momentum)
        self.act2 = nn.LeakyReLU(slope, inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.activate_before_residual = activate_before_residual
        self.shortcut = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x):
        pre = self.act1(self.bn1(x))
        out = self.act2(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        if self.equal_in_out:
            return x + out
        return self.shortcut(pre if self.activate_before_residual else x) + out


@MODELS.register_module()
class WideResNet(nn.Module):
    """Wide residual network WRN-depth-widen_factor for small (32x32) images.

    Args:
        num_classes: size of the final Linear layer; None returns pooled features (N, 64*k)
            (use a head with ``in_channels=model.out_channels``).
        depth: 6n+4 (10, 16, 22, 28, 40).
        widen_factor: channel multiplier k.
        dropout: dropout inside each residual block.
        dense_dropout: dropout before the final Linear layer.
        in_channels: image channels.
        bn_momentum: BatchNorm momentum; 0.1 is PyTorch's default. FixMatch's 0.001 suits
            long semi-supervised runs but leaves running stats unusable after a few epochs.
        leaky_slope: negative slope of the LeakyReLU activations.
    """

    def __init__(
        self,
        num_classes: int | None,
        depth: int = 28,
        widen_factor: int = 2,
        dropout: float = 0.0,
        dense_dropout: float = 0.0,
        in_channels: int = 3,
        bn_momentum: float = 0.1,
        leaky_slope: float = 0.1,
    ):
        super().__init__()
        path = config_path("model.backbone")
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ConfigError(
                f"{path}.depth: WideResNet depth must be 6n+4 (10, 16, 22, 28, 40), got {depth!r}"
            )
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ConfigError(
                f"{path}.widen_factor: expected a positive integer, got {widen_factor!r}"
            )
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(
                f"{path}.num_classes: expected a positive integer, got {num_classes!r}"
            )
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.block1 = self._stage(
            channels[0], channels[1], n, 1, dropout, True, bn_momentum, leaky_slope
        )
        self.block2 = self._stage(
            channels[1], channels[2], n, 2, dropout, False, bn_momentum, leaky_slope
        )
        self.block3 = self._stage(
            channels[2], channels[3], n, 2, dropout, False, bn_momentum, leaky_slope
        )
        self.bn = nn.BatchNorm2d(channels[3], momentum=bn_momentum)
        self.act = nn.LeakyReLU(leaky_slope, inplace=True)
        self.dense_dropout = nn.Dropout(dense_dropout) if dense_dropout > 0 else nn.Identity()
        self.out_channels = channels[3] if num_classes is None else num_classes
        self.num_classes = num_classes
        self.fc = nn.Linear(channels[3], num_classes) if num_classes is not None else None
        self._init_weights(leaky_slope)

    @staticmethod
    def _stage(
        in_planes, out_planes, n, stride, dropout, activate_before_residual, bn_momentum, slope
    ):
        blocks = [
            _BasicBlock(
                in_planes if i == 0 else out_planes,
                out_planes,
                stride if i == 0 else 1,
                dropout,
                activate_before_residual,
                bn_momentum,
                slope,
            )
            for i in range(n)
        ]
        return nn.Sequential(*blocks)

    def _init_weights(self, slope: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, a=slope, mode="fan_out", nonlinearity="leaky_relu"
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> pooled features (N, 64k), the classifier's input."""
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        x = self.act(self.bn(x))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> logits (N, num_classes), or features (N, 64k) without num_classes."""
        x = self.forward_features(x)
        if self.fc is None:
            return x
        return self.fc(self.dense_dropout(x))
