"""Training engine: Runner, loops (LOOPS), OptimWrapper, hooks, metrics, checkpoints, DDP.

``launch.run_from_config`` starts a run from a config file; ``runner.Runner`` holds its state;
``loops`` arrange the iterations; the model's own ``train_step`` / ``val_step`` do the work.
"""
