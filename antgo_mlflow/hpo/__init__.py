"""Hyper-parameter search with Optuna: every trial an MLflow child run, many workers on one study.

``space`` (the config's ``hpo`` section), ``samplers`` (sampler/pruner choice), ``storage``
(where the study lives), ``claim`` (an exact trial budget across workers), ``pruning`` (the engine
hook), ``objective`` (one trial = one training run), ``worker`` (the trial loop), ``tracking``
(the study's MLflow run), ``plots``, ``table``, and ``study`` (``run_study``, ``show_study``).
Importing this package imports nothing heavy.
"""
