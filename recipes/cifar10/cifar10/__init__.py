"""The {{name}} experiment: importing it registers its models, datasets, hooks and metrics.

main.py imports this package before building anything from the config, so every
``@MODELS/DATASETS/HOOKS/METRICS.register_module()`` class below is available by name.
"""

from . import dataset, hooks, metrics, models  # noqa: F401  (registration side effects)
