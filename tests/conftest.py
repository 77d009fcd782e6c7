"""Shared test settings, and the ``slow`` marker.

``slow`` marks the tests that take more than a few seconds each (the course pipeline per
assignment, the real-browser test). ``.ci/run`` runs them all and starts them first, so the
two workers stay busy to the end; ``-m "not slow"`` gives a quick run while developing.
"""

import os

import matplotlib
import pytest
import torch
from hypothesis import settings

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (run by .ci/run)")
