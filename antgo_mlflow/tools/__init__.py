"""Data tools as pure functions: extract_* (raw data -> standard GT), and later package_*, label_*.

Nothing here imports torch or mlflow; the `antgo tool ...` commands in `antgo_mlflow/cli/` are thin
wrappers around these functions.
"""
