"""Reference solutions to the tutorials' exercises, one module per notebook.

Each notebook's answer cells import from here, so that the notebooks run top to bottom and the
tests execute every solution against the checks in ``checks.py``. Replace an import with your
own code to try an exercise. The ``NN-*.md`` files discuss the answers, with full-run outputs.
"""
