"""Projects, experiments, model roles, data registrations and settings, stored only in MLflow.

A project is an MLflow experiment tagged ``antgo.project``; an experiment ("exp") is a group of its
runs tagged ``antgo.exp``; roles are aliases of the registered model named after the project.
This package ``__init__`` stays empty of imports: MLflow loads ``context_provider`` in every
process that starts a run, and that must not pull in torch or the rest of antgo.
"""
