"""The hpo section: every key checked against the config, each mistake named in one line."""

from __future__ import annotations

import pytest

from antgo_mlflow.config import Config
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.hpo.space import infer_direction, parse_spec


def _cfg(space, **hpo) -> Config:
    return Config(
        {
            "model": {"type": "Net", "backbone": {"depth": 10, "widen_factor": 1}},
            "optimizer": {"type": "AdamW", "lr": 0.005, "weight_decay": 1e-4},
            "data": {"val": {"type": "D"}, "train": {"pipeline": [{"type": "A", "size": 32}]}},
            "evaluation": {"metric": {"type": "AccuracyEval"}},
            "hpo": {"metric": "val/top_1", "space": space, **hpo},
        },
        filename="/x/config.py",
    )


def test_a_valid_space_parses_every_kind():
    spec = parse_spec(
        _cfg(
            {
                "optimizer.lr": dict(type="float", low=1e-4, high=0.3, log=True),
                "model.backbone.widen_factor": dict(type="int", low=1, high=4),
                "optimizer.type": dict(type="categorical", choices=["SGD", "AdamW"]),
                "data.train.pipeline.0.size": dict(type="int", low=16, high=48, step=16),
            }
        )
    )
    kinds = {d.key: d.kind for d in spec.space}
    assert kinds == {
        "optimizer.lr": "float",
        "model.backbone.widen_factor": "int",
        "optimizer.type": "categorical",
        "data.train.pipeline.0.size": "int",
    }
    assert spec.metric == "val/top_1" and spec.metric_key == "top_1"
    assert spec.direction == "maximize"
    size = next(d for d in spec.space if d.key == "data.train.pipeline.0.size")
    assert size.grid_values("hpo.space") == [16, 32, 48]


def test_a_typo_in_a_space_key_names_the_key_and_suggests_the_right_one():
    with pytest.raises(ConfigError) as err:
        parse_spec(_cfg({"optimizer.lrr": dict(type="float", low=0.1, high=0.2)}))
    message = str(err.value)
    assert "hpo.space" in message and "'optimizer.lrr'" in message
    assert "did you mean 'optimizer.lr'" in message and "/x/config.py" in message


@pytest.mark.parametrize(
    ("dim", "fragments"),
    [
        (dict(type="float", low=0.3, high=0.1), ["optimizer.lr", "low=0.3", "greater than high"]),
        (dict(type="float", low=0.0, high=0.1, log=True), ["optimizer.lr.low", "log=True"]),
        (dict(type="floot", low=0.1, high=0.2), ["optimizer.lr.type", "float, int, categorical"]),
        (dict(type="float", low=0.1), ["optimizer.lr.high", "missing"]),
        (dict(type="float", low=0.1, hi=0.2), ["optimizer.lr.hi", "unknown option"]),
        (dict(type="int", low=1.5, high=3), ["optimizer.lr.low", "integer"]),
        (dict(type="categorical", choices=[]), ["optimizer.lr.choices", "non-empty"]),
        (dict(type="categorical", choices=[[1, 2]]), ["optimizer.lr.choices.0"]),
        (dict(type="float", low=0.1, high=0.2, log=True, step=0.1), ["step and log"]),
        (0.1, ["optimizer.lr", "expected dict(type="]),
    ],
)
def test_bad_dimensions_are_one_line_errors(dim, fragments):
    with pytest.raises(ConfigError) as err:
        parse_spec(_cfg({"optimizer.lr": dim}))
    assert "\n" not in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_section_errors():
    cfg = _cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.2)})
    cfg.hpo["metrc"] = "x"
    with pytest.raises(ConfigError, match="hpo.metrc: unknown key"):
        parse_spec(cfg)
    cfg = _cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.2)}, metric="train/loss")
    with pytest.raises(ConfigError, match="not a validation metric"):
        parse_spec(cfg)
    cfg = _cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.2)}, direction="up")
    with pytest.raises(ConfigError, match="hpo.direction"):
        parse_spec(cfg)
    cfg = _cfg({})
    with pytest.raises(ConfigError, match="hpo.space: expected a non-empty dict"):
        parse_spec(cfg)
    cfg = _cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.2)})
    del cfg["hpo"]
    with pytest.raises(ConfigError, match="has no hpo section"):
        parse_spec(cfg)


def test_a_config_without_validation_cannot_be_searched():
    cfg = _cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.2)})
    del cfg["data"]["val"]
    with pytest.raises(ConfigError, match="comes from validation.*no data.val"):
        parse_spec(cfg)


def test_list_index_and_non_dict_paths_are_checked():
    with pytest.raises(ConfigError, match="list of 1, '3' is not an index"):
        parse_spec(_cfg({"data.train.pipeline.3.size": dict(type="int", low=1, high=2)}))
    with pytest.raises(ConfigError, match="optimizer.lr is a float"):
        parse_spec(_cfg({"optimizer.lr.x": dict(type="int", low=1, high=2)}))


def test_a_bare_metric_means_validation_and_loss_metrics_minimise():
    spec = parse_spec(_cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.2)}, metric="nll"))
    assert spec.metric == "val/nll" and spec.direction == "minimize"
    assert infer_direction("val/top_1") == "maximize"


def test_grid_needs_a_step_for_floats():
    spec = parse_spec(_cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.3)}))
    with pytest.raises(ConfigError, match="--sampler=grid needs discrete values"):
        spec.grid()
    spec = parse_spec(_cfg({"optimizer.lr": dict(type="float", low=0.1, high=0.3, step=0.1)}))
    assert spec.grid() == {"optimizer.lr": [0.1, 0.2, 0.3]}
