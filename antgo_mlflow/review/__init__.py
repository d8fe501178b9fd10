"""Data review and labelling: GT <-> FiftyOne, the FiftyOne App browser, Label Studio, InteractContext.

FiftyOne is imported lazily (``antgo_mlflow.errors.require``) so importing this package is cheap.
"""

from __future__ import annotations


def __getattr__(name: str):
    # `from antgo_mlflow.review import InteractContext` without importing FiftyOne up front.
    if name == "InteractContext":
        from antgo_mlflow.review.interact import InteractContext

        return InteractContext
    raise AttributeError(name)
