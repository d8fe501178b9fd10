"""Site settings of this experiment (antgo's system.py): where runs are tracked and data is cached.

main.py applies these before anything runs. A value left empty keeps the default, and an
environment variable that is already set always wins (so `mlflow run` keeps its own tracking URI).
"""

import os

# Where MLflow records runs: "" = MLflow's default (sqlite:///./mlflow.db + ./mlruns), or a team
# server such as "http://mlflow.internal:5000".
MLFLOW_TRACKING_URI = ""

# Where prepared datasets (the embedded digits, converted shards) are cached:
# "" = ~/.cache/antgo-mlflow.
ANTGO_CACHE_DIR = ""

# The MLflow experiment new runs go to: "" = the config's experiment_name/project, else "Default".
MLFLOW_EXPERIMENT_NAME = ""


def apply():
    """Export the non-empty settings as environment variables (unless already set)."""
    for key, value in {
        "MLFLOW_TRACKING_URI": MLFLOW_TRACKING_URI,
        "ANTGO_CACHE_DIR": ANTGO_CACHE_DIR,
        "MLFLOW_EXPERIMENT_NAME": MLFLOW_EXPERIMENT_NAME,
    }.items():
        if value and not os.environ.get(key):
            os.environ[key] = value
