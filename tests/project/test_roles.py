"""Model roles on the Model Registry: aliases, mirrored stages, history, bad input, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from antgo_mlflow.errors import AntgoError, TrackingError, UsageError
from antgo_mlflow.project import roles
from antgo_mlflow.project.projects import create_project, get_client
from tests.project.conftest import registry_state


def _alias(project, alias):
    return roles.alias_version(get_client(), project, alias)


def _stage(project, version):
    return get_client().get_model_version(project, version).current_stage


def test_add_product_registers_the_run_model_with_alias_and_stage(project, make_run):
    import mlflow.pytorch
    import torch

    run_id = make_run(project, metrics={"top_1": 0.7}, real=True)
    change = roles.add_role(project, "product", "e1", run_id, note="first release")
    assert change.changed and change.version == "1"
    assert _alias(project, "production") == "1"
    assert _stage(project, "1") == "Production"
    mv = get_client().get_model_version(project, "1")
    assert mv.run_id == run_id and mv.source.startswith("models:/m-")
    # the URI printed by `show project` loads the model
    model = mlflow.pytorch.load_model(roles.model_uri(project, "production"))
    assert model(torch.zeros(1, 2)).shape == (1, 1)
    (event,) = roles.role_history(project)
    assert event["role"] == "product" and event["action"] == "promote"
    assert event["from_version"] is None and event["to_version"] == "1"
    assert event["note"] == "first release" and "@" in event["who"] and event["when"]


def test_repeating_a_role_change_changes_nothing(project, make_run):
    run_id = make_run(project)
    roles.add_role(project, "product", "e1", run_id)
    before = registry_state(project)
    again = roles.add_role(project, "product", "e1", run_id)
    assert not again.changed and again.version == "1"
    assert roles.promote(project, 1, "product").changed is False
    assert registry_state(project) == before  # no second version, no extra history tag


def test_a_new_product_moves_the_alias_and_archives_the_old_stage(project, make_run):
    first, second = make_run(project), make_run(project)
    roles.add_role(project, "product", "e1", first)
    roles.add_role(project, "product", "e1", second, note="better")
    assert _alias(project, "production") == "2"
    assert (_stage(project, "1"), _stage(project, "2")) == ("Archived", "Production")
    promotes = [e for e in roles.role_history(project) if e["action"] == "promote"]
    assert [(e["from_version"], e["to_version"]) for e in promotes] == [(None, "1"), ("1", "2")]
    replaced = [e for e in roles.role_history(project) if e["action"] == "replaced"]
    assert replaced and replaced[0]["tagged_version"] == "1"


def test_product_without_id_is_the_best_finished_run_with_a_model(project, make_run):
    make_run(project, metrics={"top_1": 0.6})
    best = make_run(project, metrics={"top_1": 0.9})
    make_run(project, metrics={"top_1": 0.95}, model=False)  # better, but no model
    make_run(project, metrics={"top_1": 0.99}, status="FAILED")
    make_run(project, exp="other", metrics={"top_1": 1.0})
    change = roles.add_role(project, "product", "e1")
    assert get_client().get_model_version(project, change.version).run_id == best


def test_experts_are_many_and_champion_follows_the_newest(project, make_run):
    a, b, c = make_run(project), make_run(project), make_run(project)
    roles.add_role(project, "expert", "e1", a)
    roles.add_role(project, "expert", "e1", b)
    assert _alias(project, "champion") == "2"
    roles.add_role(project, "expert", "e1", c, keep_champion=True)
    assert _alias(project, "champion") == "2"
    assert roles.expert_versions(get_client(), project) == ["1", "2", "3"]
    tags = {v: get_client().get_model_version(project, v).tags.get("antgo.role") for v in "123"}
    assert tags == {"1": "expert", "2": "expert", "3": "expert"}
    # removing the champion moves it to the newest remaining expert; the last one drops the alias
    roles.remove_role(project, "expert", exp="e1", run_id=b)
    assert _alias(project, "champion") == "3"
    roles.remove_role(project, "expert", version="3")
    roles.remove_role(project, "expert", version="1")
    assert _alias(project, "champion") is None
    assert roles.expert_versions(get_client(), project) == []
    assert not roles.remove_role(project, "expert", version="1").changed


def test_baseline_is_alias_staging_and_demote_clears_it(project, make_run):
    run_id = make_run(project)
    roles.add_role(project, "baseline", "e1", run_id)
    assert _alias(project, "staging") == "1" and _stage(project, "1") == "Staging"
    roles.promote(project, "1", "product")  # one version may hold two roles
    assert _alias(project, "production") == "1" and _stage(project, "1") == "Production"
    roles.demote(project, "product", note="rollback")
    assert _alias(project, "production") is None and _stage(project, "1") == "Staging"
    roles.demote(project, "baseline", "1")
    assert _alias(project, "staging") is None and _stage(project, "1") == "Archived"
    assert not roles.demote(project, "baseline").changed


def test_bad_input_is_one_clear_error_and_leaves_the_registry_unchanged(project, make_run):
    run_id = make_run(project)
    no_model = make_run(project, model=False)
    roles.add_role(project, "product", "e1", run_id)
    other = f"{project}x"
    create_project(name=other)
    foreign = make_run(other)
    before = registry_state(project)
    cases = [
        (lambda: roles.add_role("nosuchproject", "product", "e1", run_id), "no such antgo project"),
        (lambda: roles.add_role(project, "product", "nosuchexp", run_id), "no such exp"),
        (lambda: roles.add_role(project, "expert", "e1", "0" * 32), "no such MLflow run"),
        (lambda: roles.add_role(project, "expert", "e1", "bad'id"), "not an MLflow run id"),
        (lambda: roles.add_role(project, "expert", "e1", foreign), "not in project"),
        (lambda: roles.add_role(project, "expert", "e1", no_model), "has no logged model"),
        (lambda: roles.add_role(project, "expert", "e1"), "--id is required"),
        (lambda: roles.add_role(project, "boss", "e1", run_id), "no such role"),
        (lambda: roles.promote(project, "7", "baseline"), "no model version 7"),
        (lambda: roles.promote(project, "x", "baseline"), "expected a model version"),
    ]
    for call, fragment in cases:
        with pytest.raises(AntgoError) as info:
            call()
        assert fragment in str(info.value) and "\n" not in str(info.value)
    assert registry_state(project) == before


def test_a_stale_lock_is_broken_and_a_held_one_times_out(project, make_run, monkeypatch):
    client = get_client()
    roles.add_role(project, "product", "e1", make_run(project))
    lock = project + roles.LOCK_SUFFIX
    client.create_registered_model(lock, tags={"antgo.lock.since": str(time.time() - 3600)})
    assert roles.demote(project, "product").changed  # broke the stale lock
    client.create_registered_model(
        lock, tags={"antgo.lock.owner": "someone", "antgo.lock.since": str(time.time())}
    )
    with pytest.raises(TrackingError, match="someone"):
        with roles.role_lock(client, project, timeout=0.3):
            pass
    client.delete_registered_model(lock)


def test_a_lock_released_while_the_store_reports_the_clash_is_taken_on_retry(project):
    """MLflow's SQL store answers a duplicate create by reading the model back; when the holder
    deletes it in that window, the create fails with RESOURCE_DOES_NOT_EXIST (seen once in CI with
    two real promoters). The window is too short to hit on purpose, so this client wrapper replays
    it: the first create releases the held lock and fails as the store then does."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    client = get_client()
    lock = project + roles.LOCK_SUFFIX
    client.create_registered_model(lock, tags={"antgo.lock.since": str(time.time())})

    class ReleasedDuringCreate:
        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(client, name)

        def create_registered_model(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 1:
                client.delete_registered_model(lock)
                raise MlflowException(
                    f"Registered Model with name={lock} not found",
                    error_code=RESOURCE_DOES_NOT_EXIST,
                )
            return client.create_registered_model(*args, **kwargs)

    racing = ReleasedDuringCreate()
    with roles.role_lock(racing, project, timeout=5):
        assert racing.calls == 2
        assert "antgo.lock.owner" in client.get_registered_model(lock).tags
    assert not client.search_registered_models(f"name = '{lock}'")


_PROMOTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from antgo_mlflow.project.roles import promote
    project, go, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
    while not go.exists():
        time.sleep(0.01)
    for v in versions:
        promote(project, v, "product", note=f"pid-run {v}")
    """
)


def test_concurrent_promotions_leave_one_product_and_a_consistent_history(
    project, make_run, tmp_path
):
    for _ in range(3):
        roles.add_role(project, "expert", "e1", make_run(project))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROMOTER, project, str(go), versions],
            stderr=subprocess.PIPE,
            text=True,
        )
        for versions in ("1,2", "2,3")
    ]
    time.sleep(1.0)  # both interpreters import mlflow before the start signal
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    product = _alias(project, "production")
    assert product in ("2", "3")  # the last promotion of one of the two processes
    stages = {v: _stage(project, v) for v in "123"}
    assert [v for v, s in stages.items() if s == "Production"] == [product]
    chain = [
        e
        for e in roles.role_history(project)
        if e["role"] == "product" and e["action"] == "promote"
    ]
    assert len(chain) >= 2
    assert chain[0]["from_version"] is None
    for prev, cur in zip(chain, chain[1:]):
        assert cur["from_version"] == prev["to_version"], json.dumps(chain, indent=1)
    assert chain[-1]["to_version"] == product
    assert len({e["pid"] for e in chain}) == 2  # both processes really promoted
    assert get_client().search_registered_models(f"name='{project}{roles.LOCK_SUFFIX}'") == []


def test_role_name_must_exist():
    with pytest.raises(UsageError, match="no such role"):
        roles.get_role("owner")


def _fail_history_writes(monkeypatch):
    """The store refuses the history record (as it would a value over its limit): fault injection."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    real = MlflowClient.set_model_version_tag

    def refusing(self, name, version, key, value):
        if key.startswith(roles.HISTORY_PREFIX):
            raise MlflowException(
                "'value' exceeds the maximum length", error_code="INVALID_PARAMETER_VALUE"
            )
        return real(self, name, version, key, value)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", refusing)
    return lambda: monkeypatch.setattr(MlflowClient, "set_model_version_tag", real)


def test_failed_role_change_leaves_no_trace(project, make_run, monkeypatch, cli):
    first, second = make_run(project), make_run(project)
    # a note no store can record is refused before anything is written
    before = registry_state(project)
    res = cli(
        "add",
        "product",
        f"--project={project}",
        "--exp=e1",
        f"--id={first}",
        "--note=" + "n" * 200_000,
    )
    assert (
        res.code == 2
        and "--note: 200000 characters" in res.stderr
        and "nnnnnnnnnn" * 50 not in res.stderr
    )
    assert registry_state(project) == before
    # a write failing part-way: the registered model, version, alias and stage it made are undone
    restore = _fail_history_writes(monkeypatch)
    with pytest.raises(Exception, match="maximum length"):
        roles.add_role(project, "product", "e1", first)
    assert registry_state(project) == before
    restore()
    assert roles.add_role(project, "product", "e1", first).changed  # the retry really changes
    roles.add_role(project, "expert", "e1", first)
    # an expert change failing after the role tag and the champion alias moved
    before = registry_state(project)
    restore = _fail_history_writes(monkeypatch)
    with pytest.raises(Exception, match="maximum length"):
        roles.add_role(project, "expert", "e1", second)
    with pytest.raises(Exception, match="maximum length"):
        roles.demote(project, "product")
    assert registry_state(project) == before
    restore()
    change = roles.add_role(project, "expert", "e1", second)
    assert change.changed and "already" not in change.message
    assert _alias(project, "champion") == change.version


def test_a_lock_whose_holder_died_is_broken_at_once(project, make_run):
    from antgo_mlflow.owner import current_owner

    client = get_client()
    roles.add_role(project, "product", "e1", make_run(project))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    holder = {f"antgo.lock.{k}": v for k, v in {**current_owner(), "pid": dead}.items()}
    lock = project + roles.LOCK_SUFFIX
    client.create_registered_model(lock, tags={"antgo.lock.since": str(time.time()), **holder})
    start = time.monotonic()
    assert roles.demote(project, "product").changed
    assert time.monotonic() - start < 10  # not LOCK_TIMEOUT_S, nor LOCK_STALE_S
    assert client.search_registered_models(f"name='{lock}'") == []
