"""MLflow run-context plugin: tags runs started inside an antgo project folder with
``antgo.project`` / ``antgo.exp``, so ``mlflow run``, plain ``mlflow.start_run`` and Lightning's
MLflow logger group them like ``antgo train`` does.

Registered in setup.py under the entry-point group ``mlflow.run_context_provider``. A folder is an
antgo project folder when the nearest ``MLproject`` (searching from the working directory upwards)
has an ``antgo:`` section with ``project:`` (and optionally ``exp:``); ``ANTGO_PROJECT`` /
``ANTGO_EXP`` override it. See ``antgo_mlflow.project.experiments`` for the marker format.

A failing plugin must never break the user's run: any error becomes one warning and no tags.
"""

from __future__ import annotations

import warnings

from mlflow.tracking.context.abstract_context import RunContextProvider


class AntgoContextProvider(RunContextProvider):
    """Adds ``antgo.project`` and ``antgo.exp`` tags from the folder's antgo marker."""

    def _marker(self) -> dict[str, str]:
        try:
            from antgo_mlflow.project.experiments import find_marker

            return find_marker()
        except Exception as exc:  # never crash the host run
            warnings.warn(
                f"antgo run-context plugin disabled for this run: {type(exc).__name__}: {exc}",
                stacklevel=2,
            )
            return {}

    def in_context(self) -> bool:
        return bool(self._marker().get("project"))

    def tags(self) -> dict[str, str]:
        marker = self._marker()
        out = {}
        if marker.get("project"):
            out["antgo.project"] = marker["project"]
            if marker.get("exp"):
                out["antgo.exp"] = marker["exp"]
        return out
