"""build_training_config: base config + project/semi|distillation + registered data -> one config.

Most tests pass settings and registrations directly; one goes through a real project store
(``antgo update project/semi`` + ``add train/unlabel``), and one builds and trains nothing but
checks that the result loads as a config the Runner accepts.
"""

from __future__ import annotations

import pytest

from antgo_mlflow.config import Config
from antgo_mlflow.errors import AntgoError, ConfigError, UsageError
from antgo_mlflow.project.training_config import build_training_config, validate_setting

PIPELINE = [
    dict(type="Meta", keys=["image_file", "tag"]),
    dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
    dict(type="RandomCrop", size=(32, 32), padding=2, keys=["image"]),
    dict(type="ToTensor", keys=["image"]),
    dict(type="Normalize", mean=(0.5,) * 3, std=(0.5,) * 3, keys=["image"]),
]
MODEL = dict(
    type="ImageClassifier",
    backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1),
    head=dict(type="ClsHead"),
)


def base_config() -> Config:
    return Config(
        dict(
            model=MODEL,
            data=dict(
                train=dict(
                    type="TFDataset",
                    data_path_list=["/data/train"],
                    pipeline=PIPELINE,
                    description={"image": "numpy", "label": "int"},
                ),
                train_dataloader=dict(samples_per_gpu=16),
            ),
            optimizer=dict(type="SGD", lr=0.03),
            max_epochs=2,
        )
    )


def setting(method, **config):
    return {"method": method, "config": {"method": method, **config}, "source": None}


UNLABEL = {"train/unlabel": [{"address": "/data/pool", "kind": "shards"}], "train/label": []}


def test_fixmatch_wraps_the_model_adds_views_and_sizes_the_batches():
    cfg = build_training_config(
        base_config(),
        stage="auto",
        settings={
            "semi": setting("fixmatch", model=dict(threshold=0.9, mu=5)),
            "distillation": None,
        },
        registrations=UNLABEL,
    )
    assert cfg.model.type == "FixMatch" and cfg.model.model == MODEL
    assert cfg.model.threshold == 0.9
    train = cfg.data.train
    assert train.labeled.data_path_list == ["/data/train"]
    unl = train.unlabeled
    assert unl.type == "TFDataset" and unl.data_path_list == ["/data/pool"]
    assert [s["type"] for s in unl.weak_pipeline] == ["Meta", "INumpyToPIL", "RandomCrop"]
    assert [s["type"] for s in unl.strong_pipeline] == ["RandAugment", "RandomErasingImage"]
    assert [s["type"] for s in unl.pipeline] == ["ToTensor", "Normalize"]
    assert cfg.data.labeled_dataloader.samples_per_gpu == 16
    assert cfg.data.unlabeled_dataloader.samples_per_gpu == 80  # mu = 5
    assert base_config().model == MODEL  # the base is not modified


def test_mpl_gets_one_optimizer_per_network_and_overlay_keys_apply():
    cfg = build_training_config(
        base_config(),
        stage="semi",
        settings={
            "semi": setting("mpl", train_cfg=dict(type="IterBasedTrainLoop", max_iters=9)),
            "distillation": None,
        },
        registrations=UNLABEL,
    )
    assert cfg.model.type == "MetaPseudoLabels"
    assert set(cfg.optimizer) == {"teacher", "student"} and cfg.optimizer.student.lr == 0.03
    assert cfg.train_cfg.max_iters == 9


def test_distillation_defaults_to_the_projects_champion_and_registered_gt(tmp_path):
    regs = {
        "train/label": [{"address": "/data/more.json", "kind": "gt"}],
        "train/unlabel": [{"address": "/data/pool.json", "kind": "gt"}],
    }
    cfg = build_training_config(
        base_config(),
        project="digits",
        stage="distillation",
        settings={"semi": None, "distillation": setting("kd", model=dict(alpha=0.5))},
        registrations=regs,
        client=object(),  # settings and registrations are given: the store is not asked
    )
    assert cfg.model.type == "Distiller" and cfg.model.teacher == "models:/digits@champion"
    assert cfg.model.alpha == 0.5
    labeled = cfg.data.train.labeled
    assert labeled.type == "ConcatDataset"  # the base's shards + a registered GT JSON
    assert labeled.datasets[1] == dict(
        type="GTDataset", ann_file=["/data/more.json"], pipeline=PIPELINE
    )
    assert cfg.data.train.unlabeled.type == "GTDataset"
    assert "weak_pipeline" not in cfg.data.train.unlabeled  # one view for distillation
    assert cfg.data.unlabeled_dataloader.samples_per_gpu == 64


def test_registered_shards_join_the_base_shards():
    regs = {"train/label": [{"address": "/data/extra", "kind": "shards"}], "train/unlabel": []}
    cfg = build_training_config(base_config(), stage="supervised", settings={}, registrations=regs)
    assert cfg.data.train.data_path_list == ["/data/train", "/data/extra"]
    assert cfg.model == MODEL


def test_semi_without_unlabelled_data_is_one_line_before_training():
    with pytest.raises(ConfigError) as info:
        build_training_config(
            base_config(),
            project="mycls",
            stage="semi",
            settings={"semi": setting("fixmatch"), "distillation": None},
            registrations={"train/label": [], "train/unlabel": []},
            client=object(),
        )
    assert "data.train.unlabeled: project/semi (fixmatch) needs unlabelled data" in str(info.value)
    assert "antgo add train/unlabel --project=mycls" in str(info.value)


@pytest.mark.parametrize(
    "settings, stage, fragment",
    [
        (
            {"semi": setting("fixmatch"), "distillation": setting("kd")},
            "auto",
            "choose --stage=semi",
        ),
        ({"semi": None, "distillation": None}, "semi", "no project/semi setting"),
        ({"semi": None, "distillation": None}, "bogus", "--stage=bogus"),
    ],
)
def test_the_stage_must_be_clear(settings, stage, fragment):
    with pytest.raises(UsageError, match=fragment):
        build_training_config(base_config(), stage=stage, settings=settings, registrations=UNLABEL)


@pytest.mark.parametrize(
    "kind, name, data, fragment",
    [
        ("semi", "dense", {}, "detection dense-teacher comes later"),
        ("semi", None, {"model": {"threshold": 1.5}}, "model.threshold: must be in (0, 1]"),
        ("semi", None, {"model": {"mu": 0}}, "model.mu: must be > 0"),
        ("semi", "mpl", {"model": {"bogus": 1}}, "has no argument 'bogus'"),
        ("semi", None, {"model": {"model": {}}}, "the exp's own model is wrapped"),
        ("distillation", None, {"model": {"alpha": 2}}, "model.alpha"),
        ("semi", None, {"strong_pipeline": "RandAugment"}, "strong_pipeline must be a list"),
    ],
)
def test_bad_settings_are_refused_when_stored(kind, name, data, fragment):
    with pytest.raises(AntgoError) as info:
        validate_setting(kind, name, data, "semi_config.py")
    assert fragment in str(info.value) and "semi_config.py" in str(info.value)


def test_the_setting_of_a_config_file_names_its_method():
    assert (
        validate_setting("semi", None, {"model": {"type": "MetaPseudoLabels"}}, "x")["method"]
        == "mpl"
    )
    assert validate_setting("semi", None, {"method": "fixmatch"}, "x")["method"] == "fixmatch"


def test_through_a_real_project_store(project, tmp_path):
    from antgo_mlflow.data.pack import pack
    from antgo_mlflow.project.data_registry import add_data
    from antgo_mlflow.project.settings import update_setting
    from tests.data.gtfactory import make_dataset

    pool = make_dataset(tmp_path / "pool", n=3)
    pack(str(pool), str(tmp_path / "shards"), "pool", num=10)
    add_data(project, "train/unlabel", str(tmp_path / "shards" / "pool"), "pool")
    semi = tmp_path / "semi_config.py"
    semi.write_text("method = 'fixmatch'\nmodel = dict(threshold=0.8, mu=2)\n")
    update_setting(project, "semi", config=str(semi))
    cfg = build_training_config(base_config(), project=project)
    assert cfg.model.type == "FixMatch" and cfg.model.threshold == 0.8
    assert cfg.data.train.unlabeled.data_path_list == [str(tmp_path / "shards" / "pool")]
    assert cfg.data.unlabeled_dataloader.samples_per_gpu == 32
