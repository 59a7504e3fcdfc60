"""The test suite runs the notebooks (pytest --nbmake) at their small size."""

import os

# Kernels inherit this environment: each notebook trains a few steps only.
os.environ.setdefault("NOTEBOOK_SIZE", "small")
