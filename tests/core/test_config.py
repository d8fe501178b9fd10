"""Config: _base_ inheritance, overrides, dump/reload, flatten, errors naming file and key."""

import textwrap

import pytest

from antgo_mlflow.config import Config, parse_value
from antgo_mlflow.errors import ConfigError


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def cfg_files(tmp_path):
    write(
        tmp_path / "base.py",
        """
        model = dict(type='ImageClassifier', backbone=dict(type='WideResNet', depth=28, widen_factor=2))
        optimizer = dict(type='SGD', lr=0.05, momentum=0.9)
        data = dict(train_dataloader=dict(samples_per_gpu=128, shuffle=True),
                    train=dict(pipeline=[dict(type='ToTensor', keys=['image'])]))
        max_epochs = 10
        """,
    )
    write(
        tmp_path / "child.py",
        """
        _base_ = './base.py'
        import math
        optimizer = dict(lr=0.1)
        model = dict(backbone=dict(_delete_=True, type='ResnetTV', model_name='resnet18'))
        max_epochs = int(math.sqrt(16))
        _private = 3
        """,
    )
    return tmp_path


def test_base_inheritance_merges_and_delete_replaces(cfg_files):
    cfg = Config.fromfile(cfg_files / "child.py")
    assert cfg.optimizer == {"type": "SGD", "lr": 0.1, "momentum": 0.9}
    assert cfg.model.backbone == {"type": "ResnetTV", "model_name": "resnet18"}
    assert cfg.max_epochs == 4
    assert "math" not in cfg and "_private" not in cfg and "_base_" not in cfg


def test_dotted_overrides_parse_values_and_index_lists(cfg_files):
    cfg = Config.fromfile(cfg_files / "base.py")
    cfg.merge_overrides(
        [
            "optimizer.lr=0.2",
            "data.train_dataloader.samples_per_gpu=64",
            "data.train.pipeline.0.keys=['image','label']",
            "data.train_dataloader.shuffle=false",
            "optimizer.nesterov=True",
        ]
    )
    assert cfg.optimizer.lr == 0.2
    assert cfg.data.train_dataloader.samples_per_gpu == 64
    assert cfg.data.train.pipeline[0]["keys"] == ["image", "label"]
    assert cfg.data.train_dataloader.shuffle is False
    assert cfg.optimizer.nesterov is True


def test_override_typo_names_the_key_and_suggests(cfg_files):
    cfg = Config.fromfile(cfg_files / "base.py")
    with pytest.raises(ConfigError, match=r"optimzer.*did you mean 'optimizer'"):
        cfg.merge_overrides(["optimzer.lr=0.1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        cfg.merge_overrides(["optimizer.lr"])
    with pytest.raises(ConfigError, match="not a valid index"):
        cfg.merge_overrides(["data.train.pipeline.5.keys=1"])


def test_dump_reloads_to_an_equal_config(cfg_files, tmp_path):
    cfg = Config.fromfile(cfg_files / "child.py")
    cfg.merge_overrides(["data.train.pipeline.0.size=(32, 32)"])
    cfg.dump(tmp_path / "dumped.py")
    again = Config.fromfile(tmp_path / "dumped.py")
    assert again == cfg
    assert again.data.train.pipeline[0]["size"] == (32, 32)


def test_flatten_gives_dotted_scalars(cfg_files):
    flat = Config.fromfile(cfg_files / "base.py").flatten()
    assert flat["optimizer.lr"] == 0.05
    assert flat["data.train.pipeline.0.type"] == "ToTensor"
    assert flat["data.train.pipeline.0.keys"] == '["image"]'
    assert flat["model.backbone.depth"] == 28


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Config.fromfile(tmp_path / "missing.py")
    bad = write(tmp_path / "bad.py", "model = dict(\n")
    with pytest.raises(ConfigError, match=r"bad\.py:\d+: invalid Python"):
        Config.fromfile(bad)
    boom = write(tmp_path / "boom.py", "x = 1 / 0\n")
    with pytest.raises(ConfigError, match="boom.py: error while executing config: ZeroDivision"):
        Config.fromfile(boom)
    loop = write(tmp_path / "loop.py", "_base_ = './loop.py'\n")
    with pytest.raises(ConfigError, match="loops back"):
        Config.fromfile(loop)


def test_parse_value():
    assert parse_value("0.1") == 0.1
    assert parse_value("none") is None
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("resnet18") == "resnet18"


def test_hash_is_stable_and_content_based(cfg_files):
    a = Config.fromfile(cfg_files / "base.py")
    b = Config.fromfile(cfg_files / "base.py")
    assert a.hash() == b.hash()
    b.merge_overrides(["optimizer.lr=1.0"])
    assert a.hash() != b.hash()


def test_config_data_is_json_safe_and_rebuilds_an_equal_config(cfg_files):
    import json

    from antgo_mlflow.config import config_to_data

    cfg = Config.fromfile(cfg_files / "child.py")
    cfg.size = (32, 32)
    data = cfg.to_data()
    assert json.loads(json.dumps(data)) == data and data["size"] == [32, 32]
    assert Config.from_data(data) == cfg
    assert config_to_data({"model": {"type": "X", "act": print}}) is None  # not data: no config
    with pytest.raises(ConfigError, match="model.act: builtin_function_or_method"):
        config_to_data({"model": {"type": "X", "act": print}}, strict=True)
    with pytest.raises(ConfigError, match="ckpt.pth: model: key 3 is not a string"):
        Config.from_data({"model": {3: "x"}}, where="ckpt.pth")
    with pytest.raises(ConfigError, match="expected a dict"):
        Config.from_data("model = dict()", where="ckpt.pth")
