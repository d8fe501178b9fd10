"""Active learning: rank unlabelled samples to label next, and find label errors in labelled ones.

* ``strategies/`` — the registered acquisition strategies (ACQUISITIONS) on arrays.
* ``rank.py`` — ``antgo active rank``: models → scores → ``selected.json``/``rest.json``/``scores.csv``.
* ``label_issues.py`` — ``antgo active issues``: cleanlab on out-of-sample probabilities.
* ``detection.py`` — image-level uncertainty and label quality for detection predictions.
"""
