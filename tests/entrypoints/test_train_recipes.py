"""The semi-supervised and distillation recipes through the ``train`` entry point (what
``mlflow run . -e train -P config=recipes/digits/<recipe>.py`` runs), a few iterations each on
the real digits, into a SQLite store: runs finish, the new per-step metrics are logged, and the
logged/exported model is the plain classifier that export and pseudo-label load."""

from __future__ import annotations

import pytest

from tests.entrypoints.conftest import REPO

RECIPES = REPO / "recipes" / "digits"
TINY = [
    "train_cfg.max_iters=2",
    "train_cfg.val_interval=2",
    "log_config.interval=1",
    "data.labeled_dataloader.samples_per_gpu=4",
    "data.unlabeled_dataloader.samples_per_gpu=8",
]
NO_MODEL = "log_config.hooks=[{'type':'MlflowLoggerHook','log_model':False}]"


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    from antgo_mlflow.data.sources.digits import prepare_digits_subset

    cache = tmp_path_factory.mktemp("digits-cache")
    prepare_digits_subset(per_class=4, root=cache)
    prepare_digits_subset(fraction=0.1, root=cache)
    return cache


def train(recipe: str, options: list[str], tmp_path, monkeypatch, cache) -> str:
    """Run the train entry point in this process; returns its MLflow run id."""
    from mlflow import MlflowClient

    from antgo_mlflow.entrypoints.train import main

    monkeypatch.setenv("ANTGO_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    before = {
        r.info.run_id
        for e in MlflowClient().search_experiments()
        for r in MlflowClient().search_runs([e.experiment_id])
    }
    args = ["--config", str(RECIPES / recipe), "--work-dir", str(tmp_path / "work")]
    assert main([*args, "--cfg-options", *options]) == 0
    client = MlflowClient()
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.info.run_id not in before and r.data.tags.get("antgo.process") == "train"
    ]
    assert len(runs) == 1
    return runs[0].info.run_id


def metrics_of(run_id: str) -> dict:
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    return run.data.metrics


def test_fixmatch_recipe_logs_its_metrics_and_exports_the_ema_classifier(
    tmp_path, monkeypatch, digits_cache
):
    import torch

    from antgo_mlflow.export.workflow import export_model
    from antgo_mlflow.inference import load_model

    run_id = train("fixmatch.py", TINY + ["model.mu=2"], tmp_path, monkeypatch, digits_cache)
    metrics = metrics_of(run_id)
    for key in ("loss_x", "loss_u", "mask_ratio", "pseudo_acc", "pseudo_acc_all"):
        assert f"train/{key}" in metrics, key
    assert "val/top_1" in metrics and "test/top_1" in metrics

    # the run's checkpoint holds the wrapper; what loads from it is the EMA classifier
    ckpt = torch.load(tmp_path / "work" / "best.pth", weights_only=True)
    assert any(k.startswith("ema_model.") for k in ckpt["state_dict"])
    from_run = load_model(f"runs:/{run_id}")
    assert type(from_run.module).__name__ == "ImageClassifier"
    ema = {
        k[len("ema_model.") :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("ema_model.")
    }
    assert all(torch.equal(v, ema[k]) for k, v in from_run.module.state_dict().items())
    # the logged MLflow model (pseudo-label's models:/ path) is the plain classifier too
    from mlflow import MlflowClient

    logged = MlflowClient().search_logged_models(
        [MlflowClient().get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id='{run_id}'",
    )
    predictor = load_model(f"models:/{logged[0].model_id}")
    images = [(torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy() for _ in range(3)]
    assert predictor.predict_proba(images).shape == (3, 10)
    result = export_model(run_id=run_id, output=tmp_path / "fm.onnx", log=False)
    assert result.max_abs_diff <= 1e-4


def test_mpl_recipe_logs_teacher_and_student_losses(tmp_path, monkeypatch, digits_cache):
    run_id = train("mpl.py", TINY + ["model.mu=2", NO_MODEL], tmp_path, monkeypatch, digits_cache)
    metrics = metrics_of(run_id)
    for key in (
        "loss_x",
        "loss_u",
        "loss_mpl",
        "loss_student",
        "mpl_h",
        "mask_ratio",
        "pseudo_acc",
    ):
        assert f"train/{key}" in metrics, key
    assert "epoch/lr_teacher" in metrics and "epoch/lr_student" in metrics


def test_distill_recipe_trains_the_student_from_a_checkpoint_teacher(
    tmp_path, monkeypatch, digits_cache
):
    import torch

    from antgo_mlflow.registry import MODELS
    from tests.models.distill.test_distiller import WRN

    teacher = tmp_path / "teacher.pth"
    torch.save(
        {
            "meta": {"config_dict": {"model": WRN}},
            "state_dict": MODELS.build(WRN, path="model").state_dict(),
        },
        teacher,
    )
    options = TINY + [f"model.teacher={str(teacher)!r}", NO_MODEL]
    run_id = train("distill.py", options, tmp_path, monkeypatch, digits_cache)
    metrics = metrics_of(run_id)
    for key in ("loss_x", "loss_kd", "mask_ratio", "pseudo_acc_all"):
        assert f"train/{key}" in metrics, key
    ckpt = torch.load(tmp_path / "work" / "best.pth", weights_only=True)
    assert all(k.startswith("student.") for k in ckpt["state_dict"])  # the teacher is not saved


SUBSET = (
    "from antgo_mlflow.data.sources.digits import prepare_digits_subset\n"
    "_s = prepare_digits_subset(per_class=4)\n"
)
ONE_VIEW = SUBSET + (
    "data = dict(train=dict(unlabeled=dict(_delete_=True, type='TFDataset', "
    "data_path_list=_s.shard_paths('unlabeled'))))\n"
)
NO_UNLABELLED = SUBSET + (
    "data = dict(train=dict(_delete_=True, labeled=dict(type='TFDataset', "
    "data_path_list=_s.shard_paths('labeled'), description={'image': 'numpy', 'label': 'int'})))\n"
)


@pytest.mark.parametrize(
    "recipe, body, options, fragment",
    [
        ("fixmatch.py", "", ["model.threshold=1.5"], "model.threshold: must be in (0, 1]"),
        ("mpl.py", "", ["model.mu=0"], "model.mu: must be > 0"),
        ("fixmatch.py", ONE_VIEW, [], "data.train.unlabeled.strong_pipeline"),
        ("fixmatch.py", NO_UNLABELLED, [], "data.train.unlabeled: FixMatch needs an unlabelled"),
        (
            "distill.py",
            "",
            ["model.teacher='models:/nowhere@champion'"],
            "model.teacher: model URI",
        ),
    ],
)
def test_bad_semi_configs_stop_before_any_run_or_step(
    tmp_path, monkeypatch, digits_cache, recipe, body, options, fragment
):
    from mlflow import MlflowClient

    from antgo_mlflow.entrypoints.train import main
    from antgo_mlflow.errors import AntgoError

    monkeypatch.setenv("ANTGO_CACHE_DIR", str(digits_cache))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "child.py"  # inherits the recipe, changes what body says
    config.write_text(f"_base_ = {str(RECIPES / recipe)!r}\n{body}")
    args = ["--config", str(config), "--work-dir", str(tmp_path / "w"), "--cfg-options", *options]
    with pytest.raises(AntgoError) as info:
        main(args)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    client = MlflowClient()
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs == []  # nothing started: no run left RUNNING, no step taken


def test_a_bad_threshold_is_one_line_and_exit_2_from_the_command(tmp_path, digits_cache):
    import subprocess
    import sys

    from tests.entrypoints.conftest import entry_env
    from tests.helpers import assert_one_line_error

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "antgo_mlflow.entrypoints.train",
            "--config",
            str(RECIPES / "fixmatch.py"),
            "--cfg-options",
            "model.threshold=0",
        ],
        cwd=tmp_path,
        env=entry_env(f"sqlite:///{tmp_path / 'mlflow.db'}", digits_cache),
        capture_output=True,
        text=True,
        timeout=300,
    )

    class Result:
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr

    assert_one_line_error(Result, "model.threshold: must be in (0, 1], got 0")


@pytest.mark.parametrize("recipe", ["fixmatch.py", "mpl.py"])
def test_a_shipped_semi_recipe_has_mu_unlabelled_images_per_labelled_one(
    recipe, monkeypatch, digits_cache
):
    """As shipped (the other tests shrink both batches): mpl.py inherits fixmatch.py's loaders, so a
    change of the FixMatch recipe's mu alone would make MPL refuse to start."""
    from antgo_mlflow.config import Config

    monkeypatch.setenv("ANTGO_CACHE_DIR", str(digits_cache))
    cfg = Config.fromfile(RECIPES / recipe)
    labelled = cfg.data.labeled_dataloader.samples_per_gpu
    assert cfg.data.unlabeled_dataloader.samples_per_gpu == cfg.model.mu * labelled
