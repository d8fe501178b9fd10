"""Optimizers by torch.optim name (also per sub-module) and antgo LR policies on torch schedulers."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as tls

from antgo_mlflow.engine.optim import build_optimizers, build_schedulers
from antgo_mlflow.errors import ConfigError
from antgo_mlflow.registry import OPTIMIZERS, SCHEDULERS
from tests.engine.toys import EngineTwoPartNet


def _lrs(lr_config, epochs=4, iters=5, lr=0.1, opt="SGD"):
    model = torch.nn.Linear(2, 2)
    optimizers = build_optimizers(model, dict(type=opt, lr=lr))
    schedule = build_schedulers(optimizers, lr_config, epochs, iters)
    out = []
    for _ in range(epochs):
        for _ in range(iters):
            out.append(optimizers[""].param_groups[0]["lr"])
            optimizers[""].step()
            if not schedule.by_epoch:
                schedule.step()
        if schedule.by_epoch:
            schedule.step()
    return out, schedule


def test_every_torch_optimizer_and_scheduler_is_registered():
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "LBFGS"):
        assert OPTIMIZERS.get(name) is getattr(torch.optim, name)
    for name in ("StepLR", "CosineAnnealingLR", "OneCycleLR", "LambdaLR", "SequentialLR"):
        assert SCHEDULERS.get(name) is getattr(tls, name)


def test_cosine_with_linear_warmup_uses_torch_schedulers():
    lrs, schedule = _lrs(
        dict(
            policy="CosineAnnealing", min_lr=1e-3, warmup="linear", warmup_iters=5, warmup_ratio=0.1
        )
    )
    assert isinstance(schedule.schedulers[""], tls.SequentialLR)
    assert lrs[0] == pytest.approx(0.01)  # warmup_ratio * lr
    assert lrs[5] == pytest.approx(0.1)  # warm-up done, cosine starts at the base LR
    assert lrs[-1] == pytest.approx(1e-3, abs=2e-3) and lrs == lrs[:5] + sorted(
        lrs[5:], reverse=True
    )


def test_step_policy_counts_epochs():
    lrs, _ = _lrs(dict(policy="Step", step=[2, 3], gamma=0.1))
    assert lrs[:10] == [pytest.approx(0.1)] * 10
    assert lrs[10:15] == [pytest.approx(0.01)] * 5
    assert lrs[15:] == [pytest.approx(0.001)] * 5


def test_poly_onecycle_and_fixed():
    poly, _ = _lrs(dict(policy="Poly", power=1.0, min_lr=0.0))
    assert poly[0] == pytest.approx(0.1) and poly[10] == pytest.approx(0.05)
    poly_min, _ = _lrs(dict(policy="Poly", power=2.0, min_lr=0.01))
    assert min(poly_min) >= 0.01 - 1e-9
    onecycle, schedule = _lrs(dict(policy="OneCycle", max_lr=0.5, pct_start=0.5))
    assert isinstance(schedule.schedulers[""], tls.OneCycleLR)
    assert max(onecycle) == pytest.approx(0.5, rel=0.05) and onecycle[0] < 0.05
    fixed, _ = _lrs(dict(policy="Fixed"))
    assert set(fixed) == {0.1}


def test_a_raw_torch_scheduler_steps_per_epoch():
    lrs, schedule = _lrs(dict(type="StepLR", step_size=1, gamma=0.5))
    assert schedule.by_epoch
    assert lrs[::5] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def test_schedule_state_round_trips_for_resume():
    model = torch.nn.Linear(2, 2)
    cfg = dict(policy="CosineAnnealing", min_lr=0.0, warmup="linear", warmup_iters=3)
    opts = build_optimizers(model, dict(type="SGD", lr=0.1))
    schedule = build_schedulers(opts, cfg, 2, 5)
    for _ in range(4):
        opts[""].step()
        schedule.step()
    state, lr = schedule.state_dict(), opts[""].param_groups[0]["lr"]
    # The Runner's resume order: build both, then load the optimizer, then the schedule.
    opts2 = build_optimizers(model, dict(type="SGD", lr=0.1))
    schedule2 = build_schedulers(opts2, cfg, 2, 5)
    opts2[""].load_state_dict(opts[""].state_dict())
    schedule2.load_state_dict(state)
    opts[""].step(), schedule.step(), opts2[""].step(), schedule2.step()
    assert opts2[""].param_groups[0]["lr"] == pytest.approx(opts[""].param_groups[0]["lr"]) != lr


def test_per_module_optimizers_and_schedules():
    model = EngineTwoPartNet()
    opts = build_optimizers(
        model, dict(backbone=dict(type="SGD", lr=0.1), head=dict(type="Adam", lr=1e-3))
    )
    assert isinstance(opts["backbone"], torch.optim.SGD) and isinstance(
        opts["head"], torch.optim.Adam
    )
    assert {id(p) for g in opts["head"].param_groups for p in g["params"]} == {
        id(p) for p in model.head.parameters()
    }
    schedule = build_schedulers(
        opts, dict(backbone=dict(policy="Step", step=[1]), head=dict(policy="Fixed")), 2, 3
    )
    assert set(schedule.schedulers) == {"backbone", "head"}


@pytest.mark.parametrize(
    "optimizer, lr_config, message",
    [
        (
            dict(type="SGD", lr=0.1, momentun=0.9),
            None,
            "optimizer.momentun: SGD has no argument 'momentun'",
        ),
        (dict(type="SGDD", lr=0.1), None, "optimizer.type: unknown optimizer 'SGDD'"),
        (
            dict(neck=dict(type="SGD", lr=0.1)),
            None,
            "optimizer.neck: the model has no sub-module 'neck'",
        ),
        (
            dict(type="SGD", lr=0.1),
            dict(policy="Cosinus"),
            "lr_config.policy: unknown policy 'Cosinus'",
        ),
        (dict(type="SGD", lr=0.1), dict(policy="Step"), "lr_config.step: policy Step needs step="),
        (
            dict(type="SGD", lr=0.1),
            dict(policy="Fixed", warmup="cubic", warmup_iters=2),
            "lr_config.warmup: unknown warm-up 'cubic'",
        ),
        (
            dict(type="SGD", lr=0.1),
            dict(policy="Fixed", warmup="linear"),
            "lr_config.warmup_iters: must be a positive",
        ),
        (
            dict(type="SGD", lr=0.1),
            dict(type="StepLR", step_sise=1),
            "lr_config.step_sise: StepLR has no argument",
        ),
    ],
)
def test_bad_optimizer_or_schedule_names_the_key(optimizer, lr_config, message):
    model = EngineTwoPartNet()
    with pytest.raises(ConfigError) as info:
        build_schedulers(build_optimizers(model, optimizer), lr_config, 2, 3)
    assert message in str(info.value)


def test_grad_clip_limits_the_gradient_norm(make_config, tmp_path):
    from antgo_mlflow.engine.launch import run_from_config
    from tests.engine.toys import EngineGradNormHook

    EngineGradNormHook.norms.clear()
    cfg = make_config(
        max_epochs="1",
        optimizer_config="dict(grad_clip=dict(max_norm=0.05, norm_type=2))",
        custom_hooks="[dict(type='EngineGradNormHook')]",
        evaluation=None,
    )
    run_from_config(cfg, work_dir=tmp_path / "w")
    assert len(EngineGradNormHook.norms) == 8
    assert max(EngineGradNormHook.norms) <= 0.05 + 1e-6
