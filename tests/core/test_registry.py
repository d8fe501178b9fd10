"""Registry: decorator and call registration, duplicates, build with signature checks and hints."""

import pytest

from antgo_mlflow.errors import RegistryError
from antgo_mlflow.registry import ROOT_REGISTRIES, Registry


@pytest.fixture
def reg():
    models = Registry("model")

    @models.register_module()
    class WideResNet:
        def __init__(self, num_classes, depth=28, widen_factor=2):
            self.num_classes, self.depth = num_classes, depth

    @models.register_module()
    class ImageClassifier:
        def __init__(self, backbone, head=None):
            self.backbone = models.build(backbone)

    def factory(width=4, **kwargs):
        return ("factory", width, kwargs)

    models.register_module(name="Factory", module=factory)
    return models


def test_build_from_type_and_kwargs(reg):
    net = reg.build(dict(type="WideResNet", num_classes=10, depth=16))
    assert (net.num_classes, net.depth) == (10, 16)
    assert reg.build(dict(type="Factory", extra=1)) == ("factory", 4, {"extra": 1})


def test_duplicate_rejected_unless_force(reg):
    class WideResNet:  # a different class under the same name
        pass

    with pytest.raises(RegistryError, match="already registered"):
        reg.register_module(module=WideResNet)
    reg.register_module(module=WideResNet, force=True)
    assert reg.get("WideResNet") is WideResNet


def test_unknown_type_suggests_closest_and_names_nested_path(reg):
    cfg = dict(type="ImageClassifier", backbone=dict(type="WideResNett", num_classes=3))
    with pytest.raises(RegistryError) as info:
        reg.build(cfg, path="model")
    assert "model.backbone.type" in str(info.value)
    assert "did you mean 'WideResNet'" in str(info.value)


def test_bad_kwarg_is_caught_at_build_time(reg):
    with pytest.raises(RegistryError, match=r"model.depht: .*did you mean 'depth'"):
        reg.build(dict(type="WideResNet", num_classes=3, depht=10), path="model")
    with pytest.raises(RegistryError, match="needs argument 'num_classes'"):
        reg.build(dict(type="WideResNet"), path="model")
    with pytest.raises(RegistryError, match="missing 'type'"):
        reg.build(dict(num_classes=3), path="model")


def test_list_and_contains(reg):
    assert reg.list("*Res*") == ["WideResNet"]
    assert "ImageClassifier" in reg and "Nope" not in reg


def test_named_registries_exist():
    assert set(ROOT_REGISTRIES) >= {
        "MODELS",
        "DATASETS",
        "TRANSFORMS",
        "HOOKS",
        "METRICS",
        "LOSSES",
        "OPTIMIZERS",
        "SCHEDULERS",
    }
