"""antgo-mlflow: the antgo computer-vision workflow on MLflow.

Importing the package is cheap: it pulls in neither torch nor mlflow. The public names
below are resolved lazily on first access.
"""

__version__ = "0.1.0"

_LAZY = {
    "Config": "antgo_mlflow.config",
    "Registry": "antgo_mlflow.registry",
    "MODELS": "antgo_mlflow.registry",
    "DATASETS": "antgo_mlflow.registry",
    "TRANSFORMS": "antgo_mlflow.registry",
    "HOOKS": "antgo_mlflow.registry",
    "METRICS": "antgo_mlflow.registry",
    "LOSSES": "antgo_mlflow.registry",
    "OPTIMIZERS": "antgo_mlflow.registry",
    "SCHEDULERS": "antgo_mlflow.registry",
    "LOOPS": "antgo_mlflow.registry",
    "SAMPLERS": "antgo_mlflow.registry",
    "COLLATE": "antgo_mlflow.registry",
    "AntgoError": "antgo_mlflow.errors",
    "InteractContext": "antgo_mlflow.review.interact",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'antgo_mlflow' has no attribute {name!r}")
