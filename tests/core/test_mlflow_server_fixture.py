"""The shared fixtures give a working store both ways (SQLite file and a real server over HTTP)."""

import pytest


@pytest.mark.server
def test_tracking_uri_fixture_logs_a_run(tracking_uri):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp_id = mlflow.create_experiment(f"fixture-{abs(hash(tracking_uri)) % 10**6}")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_metric("m", 1.0)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.metrics["m"] == 1.0 and got.info.status == "FINISHED"
