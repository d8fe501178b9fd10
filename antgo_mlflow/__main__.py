"""`python -m antgo_mlflow` runs the `antgo` command."""

from antgo_mlflow.cli.main import main

main()
