"""This experiment's models (each module registers its classes in MODELS)."""

from . import wideres  # noqa: F401
