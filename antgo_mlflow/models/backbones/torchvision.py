"""torchvision classification networks as backbones: ``TVBackbone`` and antgo's ``ResnetTV``.

Weights are never downloaded: ``pretrained=True`` loads them only from torch's local hub cache
(``$TORCH_HOME/hub/checkpoints``) and otherwise fails with one line saying where to put the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import config_path
from antgo_mlflow.registry import MODELS, did_you_mean

#: Networks whose classifier and stem this wrapper knows how to replace.
SUPPORTED = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
)


def _check_name(name: str, path: str) -> str:
    if name not in SUPPORTED:
        raise ConfigError(
            f"{path}: unknown torchvision network {name!r}{did_you_mean(str(name), SUPPORTED)} "
            f"(supported: {', '.join(SUPPORTED)})"
        )
    return name


def cached_weights_file(name: str) -> Path:
    """Where torch's hub cache keeps the default ImageNet weights of ``name``."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _create(name: str, pretrained: bool, path: str) -> nn.Module:
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    file = cached_weights_file(name)
    if not file.is_file():
        raise ConfigError(
            f"{path}.pretrained: {name} ImageNet weights are not cached at {file} "
            "(antgo never downloads; copy the file there or set pretrained=False)"
        )
    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return model


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The parent module, attribute name and module of the last nn.Linear (the classifier)."""
    found = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    if found is None:
        raise ConfigError(f"torchvision network {type(model).__name__} has no Linear classifier")
    return found


def _replace_stem(model: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d for one taking ``in_channels`` (weights averaged/repeated if any)."""
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    child.bias is not None,
                )
                with torch.no_grad():
                    mean = child.weight.mean(dim=1, keepdim=True)
                    new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * 3 / in_channels)
                setattr(parent, attr, new)
                return


@MODELS.register_module()
class TVBackbone(nn.Module):
    """A torchvision classification network by name, as a backbone.

    Args:
        model_name: one of ``SUPPORTED`` (resnet18/50, mobilenet_v2, mobilenet_v3_small/large,
            efficientnet_b0, ...).
        num_classes: replace the classifier by a Linear to ``num_classes`` (outputs logits);
            None removes it (outputs pooled features (N, out_channels) for a head).
        pretrained: load ImageNet weights from the local torch hub cache (never downloads).
        in_channels: image channels (a different number replaces the first convolution).
    """

    def __init__(
        self,
        model_name: str = "resnet18",
        num_classes: int | None = None,
        pretrained: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        path = config_path("model.backbone")
        self.model_name = _check_name(model_name, f"{path}.model_name")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(
                f"{path}.num_classes: expected a positive integer, got {num_classes!r}"
            )
        self.net = _create(model_name, bool(pretrained), path)
        if in_channels != 3:
            _replace_stem(self.net, int(in_channels))
        parent, attr, linear = _last_linear(self.net)
        self.feature_channels = linear.in_features
        if num_classes is None:
            setattr(parent, attr, nn.Identity())
            self.out_channels = linear.in_features
        else:
            setattr(parent, attr, nn.Linear(linear.in_features, num_classes))
            self.out_channels = num_classes
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> logits (N, num_classes) or features (N, out_channels)."""
        return self.net(x)


@MODELS.register_module()
class ResnetTV(nn.Module):
    """antgo's ``ResnetTV``: a torchvision ResNet giving logits or multi-scale feature maps.

    Args:
        model: resnet18/34/50/101/152, resnext50_32x4d or wide_resnet50_2.
        pretrained: load ImageNet weights from the local torch hub cache (default False here:
            antgo's default True would download).
        class_num: replace ``fc`` by a Linear to ``class_num`` and output logits; None outputs
            the feature maps of layers 1..4 selected by ``output``.
        output: indices (0..3) of the feature maps returned when ``class_num`` is None.
        in_channels: image channels.
    """

    def __init__(
        self,
        model: str = "resnet18",
        pretrained: bool = False,
        class_num: int | None = None,
        output: Sequence[int] = (0, 1, 2, 3),
        in_channels: int = 3,
    ):
        super().__init__()
        path = config_path("model.backbone")
        _check_name(model, f"{path}.model")
        if "res" not in model:
            raise ConfigError(
                f"{path}.model: ResnetTV takes a ResNet, got {model!r} (use TVBackbone)"
            )
        if any(not isinstance(i, int) or not 0 <= i <= 3 for i in output) or not output:
            raise ConfigError(f"{path}.output: expected indices in 0..3, got {output!r}")
        self.model = _create(model, bool(pretrained), path)
        if in_channels != 3:
            _replace_stem(self.model, int(in_channels))
        self.class_num = class_num
        self.output_index = list(output)
        in_features = self.model.fc.in_features
        self.model.fc = (
            nn.Linear(in_features, class_num) if class_num is not None else nn.Identity()
        )
        widths = [in_features // 8, in_features // 4, in_features // 2, in_features]
        self.out_channels = (
            class_num if class_num is not None else [widths[i] for i in self.output_index]
        )

    def forward(self, x: torch.Tensor):
        """Logits (N, class_num), or a list of feature maps when ``class_num`` is None."""
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x4 = m.layer1(x)
        x8 = m.layer2(x4)
        x16 = m.layer3(x8)
        x32 = m.layer4(x16)
        if self.class_num is None:
            feats = [x4, x8, x16, x32]
            return [feats[i] for i in self.output_index]
        return m.fc(torch.flatten(m.avgpool(x32), 1))
