"""The automation server (``antgo server``): antgo's data-driven iteration loop on MLflow.

``loop.py`` drives one iteration per new ``train/unlabel`` registration through the steps in
``steps/`` (predict, select, label, pack_register, train, evaluate_promote); ``state.py`` keeps
every step's state in MLflow runs keyed by (iteration, step, input digest); ``lock.py`` lets one
server serve a project at a time.
"""
