"""Names shared by the study, its trials and their MLflow runs (trial attributes and run tags)."""

#: trial user attributes
RUN_ID_ATTR = "mlflow_run_id"  # the trial's MLflow child run
WORKER_ATTR = "worker"  # host:pid of the worker that ran it
ERROR_ATTR = "error"  # why a trial failed
#: study user attributes
PARENT_ATTR = "mlflow_parent_run_id"
EXPERIMENT_ATTR = "mlflow_experiment_id"
METRIC_ATTR = "metric"
#: MLflow run tags
STATE_TAG = "antgo.hpo.state"  # complete | pruned | failed | lost
TAG_STUDY = "antgo.hpo.study"
TAG_TRIAL = "antgo.hpo.trial"
