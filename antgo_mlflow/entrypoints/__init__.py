"""What the MLproject entry points run: ``python -m antgo_mlflow.entrypoints.<train|export|pseudo_label|active_learning>``.

Each script validates its own parameters (MLflow checks none) and turns every user-fixable
problem into one line on stderr and exit code 2. ``run_main`` and ``ArgumentParser`` are what a
scaffold's ``main.py`` uses for the same behaviour; ``rerun_command`` prints the next command
(export) the way this run was started.
"""

from antgo_mlflow.entrypoints._common import (
    ArgumentParser,
    optional,
    parse_bool,
    parse_float,
    parse_int,
    rerun_command,
    run_main,
    split_options,
)

__all__ = [
    "ArgumentParser",
    "optional",
    "parse_bool",
    "parse_float",
    "parse_int",
    "rerun_command",
    "run_main",
    "split_options",
]
