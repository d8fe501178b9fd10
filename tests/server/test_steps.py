"""Each step alone on tiny digits data, with a real (untrained) model in a real MLflow registry."""

from __future__ import annotations

import json

import pytest

from antgo_mlflow.errors import UsageError
from antgo_mlflow.server import state
from antgo_mlflow.server.steps import step_function
from tests.server.conftest import digits_gt


def _ctx(project, tmp_path, iteration=1):
    from antgo_mlflow.project.projects import get_client, get_project

    client = get_client()
    exp_id = get_project(project, client).experiment_id
    pipe = state.pipeline_run(client, exp_id, f"src-{iteration}", project)
    return state.Context(
        project, client, exp_id, int(pipe.data.tags[state.ITERATION]), pipe.info.run_id,
        tmp_path / "work", echo=lambda _: None,
    )  # fmt: skip


def _run(ctx, name, inputs):
    return state.run_step(ctx, name, inputs, step_function(name))


def test_predict_and_select_split_the_pool_three_ways(product, tmp_path):
    pool = digits_gt(tmp_path / "pool", range(30), labelled=False)
    ctx = _ctx(product, tmp_path)
    models = [f"models:/{product}/1"]
    pred = _run(ctx, "predict", {"pool": str(pool), "models": models, "threshold": 0.0})
    assert pred["n_total"] == 30 and pred["n_confident"] == 30  # threshold 0: all confident
    sel = _run(ctx, "select", {"pool": str(pool), "models": models, "budget": 8,
                               "predicted": pred["all"], "strategy": "margin"})  # fmt: skip
    assert (sel["n_selected"], sel["n_pseudo"], sel["n_unlabel"]) == (8, 22, 0)
    selected = json.loads(open(sel["selected"]).read())
    assert all(s.get("image_label") is None for s in selected)  # people label these
    pseudo = json.loads(open(sel["pseudo"]).read())
    assert all(isinstance(s["image_label"], int) and s["image_label"] >= 0 for s in pseudo)
    names = {s["image_file"].rsplit("/", 1)[-1] for s in selected + pseudo}
    assert len(names) == 30  # every pool image in exactly one set


def test_pack_register_registers_tagged_sets_once(product, tmp_path):
    from antgo_mlflow.project.data_registry import list_data

    ctx = _ctx(product, tmp_path, iteration=1)
    human = digits_gt(tmp_path / "h", range(5))
    pseudo = digits_gt(tmp_path / "p", range(5, 12))
    rest = digits_gt(tmp_path / "r", range(12, 15), labelled=False)
    inputs = {"human": str(human), "pseudo": str(pseudo), "unlabel": str(rest)}
    out = _run(ctx, "pack_register", inputs)
    assert [(r["split"], r["tag"], r["num"]) for r in out["registered"]] == [
        ("train/label", "human-1", 5), ("train/label", "pseudo-1", 7), ("train/unlabel", "rest-1", 3),
    ]  # fmt: skip
    _run(ctx, "pack_register", inputs)  # skipped: same key
    # a rerun after a kill (key unfinished) registers the same tags again: still one each
    step_function("pack_register")(ctx, inputs)
    data = list_data(product)
    assert sorted(r["tag"] for r in data["train/label"]) == ["human-1", "pseudo-1"]
    assert [r["tag"] for r in data["train/unlabel"]] == ["rest-1"]


def test_promotion_rule_better_is_promoted_worse_is_not_with_the_note(product, tmp_path):
    from mlflow import MlflowClient

    from antgo_mlflow.project.roles import alias_version, role_history
    from antgo_mlflow.server.steps.evaluate_promote import decide
    from tests.server.conftest import log_candidate

    assert decide(0.9, 0.8, 0.01)[0] and not decide(0.8, 0.8, 0.01)[0]
    assert decide(0.5, None, 0.0) == (True, "no product yet; candidate top1=0.5000")
    test = digits_gt(tmp_path / "test", range(40))
    candidate = log_candidate(product)  # becomes version 2
    ctx = _ctx(product, tmp_path)
    worse = _run(
        ctx, "evaluate_promote", {"candidate": candidate, "test": str(test), "margin": 1.0}
    )
    assert (
        worse["promoted"] is False and alias_version(MlflowClient(), product, "production") == "1"
    )
    assert "not promoted: candidate top1=" in worse["why"] and "vs product top1=" in worse["why"]
    better = _run(
        ctx, "evaluate_promote", {"candidate": candidate, "test": str(test), "margin": -1.0}
    )
    assert (
        better["promoted"] is True and alias_version(MlflowClient(), product, "production") == "2"
    )
    notes = [e.get("note") or "" for e in role_history(product)]
    assert any("candidate top1=" in n and "product top1=" in n for n in notes)
    # champion never gets worse: it moved only if the candidate was at least as good
    champion = alias_version(MlflowClient(), product, "champion")
    assert (champion == "2") == (better["candidate_top1"] >= better["product_top1"])


def test_evaluate_restarted_after_its_promotion_still_compares_with_the_old_product(
    product, tmp_path
):
    """A server killed in *evaluate_promote* after the promotion: the restarted attempt (the same
    step run) compares the candidate with the product it replaced, not with itself."""
    from mlflow import MlflowClient

    from antgo_mlflow.project.roles import alias_version, role_history
    from antgo_mlflow.server.steps.evaluate_promote import run as evaluate
    from tests.server.conftest import log_candidate

    test = digits_gt(tmp_path / "test", range(40))
    candidate = log_candidate(product, seed=3)  # becomes version 2
    ctx = _ctx(product, tmp_path)
    inputs = {"candidate": candidate, "test": str(test), "margin": -1.0}

    def killed_after_promoting(ctx, inputs):
        evaluate(ctx, inputs)
        raise KeyboardInterrupt  # what kill -9 leaves: the step unfinished, the promotion done

    with pytest.raises(KeyboardInterrupt):
        state.run_step(ctx, "evaluate_promote", inputs, killed_after_promoting)
    assert alias_version(MlflowClient(), product, "production") == "2"
    promotions = len(role_history(product))
    again = _run(ctx, "evaluate_promote", inputs)  # the restart: same key, same step run
    first = top1_of(product, "1", test)
    assert again["product_top1"] == pytest.approx(first)  # version 1's, not the candidate's
    assert again["promoted"] is True and len(role_history(product)) == promotions  # not again
    runs = state._search(
        ctx.client, ctx.experiment_id, {state.KIND: "step", state.STEP: "evaluate_promote"}
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def top1_of(project, version, test):
    from antgo_mlflow.server.steps.evaluate_promote import top1

    return top1(f"models:/{project}/{version}", str(test))


def test_label_waits_and_says_so_when_label_studio_is_unreachable(product, tmp_path, monkeypatch):
    from tests.conftest import free_port

    selected = digits_gt(tmp_path / "sel", range(3), labelled=False)
    ctx = _ctx(product, tmp_path)
    inputs = {"selected": str(selected), "classes": [str(i) for i in range(10)],
              "label_type": "CLASS", "url": f"http://127.0.0.1:{free_port()}",
              "document_root": str(tmp_path)}  # fmt: skip
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(UsageError, match="LABEL_STUDIO_API_KEY"):
        _run(ctx, "label", inputs)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t0ken")
    with pytest.raises(state.StepWaiting, match="Label Studio unreachable, waiting"):
        _run(ctx, "label", inputs)
    info = state.loop_state(ctx.client, ctx.experiment_id)
    assert info["current_step"] == "label" and "unreachable" in info["note"]
