"""OptimWrapper / OptimWrapperDict: accumulation, clipping, ordered teacher/student updates."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from antgo_mlflow.engine.launch import run_from_config
from antgo_mlflow.engine.optim_wrapper import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from antgo_mlflow.errors import ConfigError
from tests.engine import toys


def _wrapper(model, **options):
    return build_optim_wrapper(model, dict(type="SGD", lr=0.1), dict(options), torch.device("cpu"))


def test_accumulation_steps_every_n_calls_with_the_mean_gradient():
    torch.manual_seed(0)
    model, twin = nn.Linear(3, 1), nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    xs = [torch.randn(4, 3) for _ in range(4)]
    wrapper = _wrapper(model, accumulative_counts=2)
    reference = _wrapper(twin)
    for k, x in enumerate(xs):
        before = model.weight.detach().clone()
        wrapper.update_params(model(x).pow(2).mean())
        assert torch.equal(model.weight, before) == (k % 2 == 0)  # steps after calls 2 and 4
    for k in (0, 2):  # the same updates from the means of each pair
        reference.update_params((twin(xs[k]).pow(2).mean() + twin(xs[k + 1]).pow(2).mean()) / 2)
    assert torch.allclose(model.weight, twin.weight, atol=1e-6)


def test_the_last_short_group_of_a_run_still_steps():
    model = nn.Linear(2, 1)
    wrapper = _wrapper(model, accumulative_counts=4)
    wrapper.initialize_count_status(0, 6)  # groups of 4, then 2
    stepped = []
    for _ in range(6):
        before = model.weight.detach().clone()
        wrapper.update_params(model(torch.ones(1, 2)).sum())
        stepped.append(not torch.equal(model.weight, before))
    assert stepped == [False, False, False, True, False, True]


def test_clipping_bounds_the_gradient_norm():
    model = nn.Linear(4, 1)
    wrapper = _wrapper(model, grad_clip=dict(max_norm=0.01))
    wrapper.update_params(model(torch.full((2, 4), 100.0)).sum())
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(norm) <= 0.01 + 1e-6


def test_per_module_optimizers_make_an_optim_wrapper_dict():
    model = toys.EngineTwoPartNet()
    wrapper = build_optim_wrapper(
        model,
        dict(backbone=dict(type="SGD", lr=0.1), head=dict(type="Adam", lr=0.01)),
        None,
        torch.device("cpu"),
    )
    assert isinstance(wrapper, OptimWrapperDict) and set(wrapper) == {"backbone", "head"}
    assert isinstance(wrapper["head"], OptimWrapper)
    before = [p.detach().clone() for p in model.parameters()]
    wrapper.update_params(model(torch.randn(2, 1, 8, 8), label=torch.tensor([0, 1]))["loss"])
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_teacher_update_uses_the_students_loss_after_the_student_stepped():
    torch.manual_seed(0)
    model = toys.EngineTeacherStudent()
    wrapper = build_optim_wrapper(
        model,
        dict(student=dict(type="SGD", lr=0.5), teacher=dict(type="SGD", lr=1.0)),
        None,
        torch.device("cpu"),
    )
    toys.EngineTeacherStudent.log.clear()
    batch = {"image": torch.randn(8, 1, 8, 8), "label": torch.arange(8) % toys.NUM_CLASSES}
    w = model.teacher.w.item()
    student = model.student.weight.detach().clone()
    model.train_step(batch, wrapper)
    (entry,) = toys.EngineTeacherStudent.log
    assert not torch.equal(model.student.weight, student)  # the student stepped first
    # w moved by exactly the post-update loss (d(w * L_after)/dw = L_after, lr 1) ...
    assert w - model.teacher.w.item() == pytest.approx(entry["after"], rel=1e-5)
    # ... which the updated student gives, not the loss before its step.
    x, y = batch["image"].flatten(1), batch["label"]
    with torch.no_grad():
        recomputed = nn.functional.cross_entropy(model.student(x), y)
    assert float(recomputed) == pytest.approx(entry["after"], rel=1e-5)


def test_a_teacher_student_model_trains_through_the_runner(make_config, tmp_path):
    toys.EngineTeacherStudent.log.clear()
    cfg = make_config(
        model="dict(type='EngineTeacherStudent')",
        optimizer="dict(student=dict(type='SGD', lr=0.1), teacher=dict(type='SGD', lr=0.01))",
        lr_config="dict(student=dict(policy='Fixed'), teacher=dict(policy='Fixed'))",
        max_epochs="1",
    )
    run = MlflowClient().get_run(run_from_config(cfg, work_dir=tmp_path / "w"))
    assert run.info.status == "FINISHED"
    assert {
        "train/loss_student",
        "train/loss_teacher",
        "train/lr_student",
        "train/lr_teacher",
    } <= set(run.data.metrics)
    assert len(toys.EngineTeacherStudent.log) == 8


def test_bad_optimizer_config_values_name_the_key():
    model = nn.Linear(2, 1)
    with pytest.raises(ConfigError, match="optimizer_config.type: 'Fp32Hook' is not supported"):
        _wrapper(model, type="Fp32Hook")
    with pytest.raises(ConfigError, match="optimizer_config.grad_clip: expected dict"):
        _wrapper(model, grad_clip=1.0)


def test_a_grad_scaler_scales_unscales_before_clipping_and_skips_non_finite_steps():
    """AMP's GradScaler sequence, on the CPU (no GPU here): the config enables AMP on CUDA
    only, so the wrapper is built by hand with torch's CPU GradScaler and bfloat16 autocast."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1),
        clip_grad=dict(max_norm=0.5),
        amp=torch.bfloat16,
        scaler=scaler,
        device_type="cpu",
    )
    with wrapper.optim_context(model):
        out = model(torch.full((2, 4), 10.0))
    assert out.dtype == torch.bfloat16
    before = model.weight.detach().clone()
    wrapper.update_params(out.float().sum())
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(norm) <= 0.5 + 1e-5  # clipped after unscaling, not the 1024x scaled grads
    assert not torch.equal(model.weight, before)
    stepped = model.weight.detach().clone()
    wrapper.update_params(model(torch.full((1, 4), float("inf"))).sum())
    assert torch.equal(model.weight, stepped) and scaler.get_scale() < 1024.0  # skipped, backed off
