"""Shared test settings, and the ``slow`` marker.

``slow`` marks the tests that take more than a few seconds each (the course pipeline per
assignment, the real-browser test). ``.ci/run`` runs them all and starts them first, so the
workers stay busy to the end; ``-m "not slow"`` gives a quick run while developing.
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


@pytest.fixture(autouse=True)
def _torch_globals_restored():
    """Every test starts with the session's torch threads and default dtype, whatever the
    previous test on this worker set (a test of pgcheck's own state handling sets threads to 2
    on purpose; left set, it changed the last bits of later in-process computations)."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (run by .ci/run)")
    # pytest-xdist registers it only when its plugin is active (not with -p no:xdist)
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one worker")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (stable order otherwise): the longest jobs start at once on both
    xdist workers and the many quick tests fill the gaps at the end.

    With ``--dist loadgroup``, tests marked ``xdist_group(name)`` get ``@name`` appended to
    their node id, which is how the scheduler keeps a group on one worker. pytest-xdist 3.8
    does this by setting ``item._nodeid``, which pytest 9.2 no longer reads (node ids live in
    ``item._id``), so its groups are silently split; this does it the way pytest 9 stores ids.
    """
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("slow") is None)
    if not (os.environ.get("PYTEST_XDIST_WORKER") and config.getvalue("loadgroup")):
        return
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None or "@" in item.nodeid.rsplit("]", 1)[-1]:
            continue
        name = str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        grouped = f"{item.nodeid}@{name}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(grouped)
        else:
            item._nodeid = grouped
