"""WideResNet (WRN-depth-k) for 32x32 images, registered as ``WideResNet``.

antgo-mlflow ships a ``WideResNet`` too. This file's class replaces it (``force=True``) so that
edits made here are what ``configs/config.py`` builds; the library's models are loaded first so
the replacement is not undone later. To keep both, register this one under another name
(``@MODELS.register_module(name="MyWideResNet")``) and use that name in the config.
"""

import torch
from torch import nn

from antgo_mlflow.registry import MODELS

MODELS.import_locations()  # the library's models first, so the class below replaces its namesake


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropout=0.0, bn_momentum=0.1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=bn_momentum)
        self.relu1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=bn_momentum)
        self.relu2 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if in_planes != out_planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + shortcut


@MODELS.register_module(force=True)
class WideResNet(nn.Module):
    """WRN-depth-widen_factor; outputs logits (N, num_classes).

    Args:
        num_classes: number of classes.
        depth: 6n+4 (10, 16, 22, 28, 40).
        widen_factor: channel multiplier.
        dropout: dropout inside the residual blocks.
        dense_dropout: dropout before the classifier.
        bn_momentum: BatchNorm momentum (0.1 = PyTorch's default).
    """

    def __init__(
        self,
        num_classes,
        depth=28,
        widen_factor=2,
        dropout=0.0,
        dense_dropout=0.0,
        bn_momentum=0.1,
        **kwargs,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 (10, 16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        layers = []
        for i, stride in enumerate((1, 2, 2)):
            for j in range(n):
                layers.append(
                    BasicBlock(
                        widths[i] if j == 0 else widths[i + 1],
                        widths[i + 1],
                        stride if j == 0 else 1,
                        dropout,
                        bn_momentum,
                    )
                )
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[3], momentum=bn_momentum)
        self.relu = nn.LeakyReLU(0.1, inplace=True)
        self.dense_dropout = nn.Dropout(dense_dropout) if dense_dropout > 0 else nn.Identity()
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.relu(self.bn(self.blocks(self.conv1(x))))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dense_dropout(x))
