"""Training engine: Runner, hooks, optimizers/schedulers, metrics (built from antgo configs)."""
