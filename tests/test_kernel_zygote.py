"""The pipeline's forked kernels are what a learner's fresh kernel is, where a notebook can see.

``fixtures/kernel_zygote.py`` forks nbgrader's kernels from a parent that imported torch,
matplotlib and gymnasium once (the suite's biggest fixed cost). These tests run the same
cell in an ordinary kernel and in forked ones and compare what the cell sees.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

import kernel_zygote  # noqa: E402

# one zygote per worker: keep these on one
pytestmark = pytest.mark.xdist_group("kernel_zygote")

#: what a notebook's cell can observe of its interpreter (after importing what the zygote
#: preloads, so that both kernels have run the same imports)
PROBE = """\
import json, os, random, sys, warnings
import gymnasium, matplotlib, matplotlib.pyplot, numpy, torch, tqdm
print(json.dumps({
    "namespace": sorted(k for k in globals() if not k.startswith("_")),
    "sys.path": sys.path,
    "cwd": os.getcwd(),
    "argv0": sys.argv[0],
    "environment": {
        k: v for k, v in os.environ.items()
        if k.startswith(("PGC_", "MPL", "OMP")) and k != "PGC_KERNEL_ZYGOTE"  # the switch
    },
    "warning filters": sorted(map(str, warnings.filters)),
    "__main__": type(sys.modules["__main__"]).__name__,
    "backend": matplotlib.get_backend(),
    "torch threads": torch.get_num_threads(),
    "default dtype": str(torch.get_default_dtype()),
    "seeds": [random.random(), float(numpy.random.rand()), torch.initial_seed()],
    "parent": os.getppid(),
}))
os.write(2, b"fd 2\\n")
print("print to stderr", file=sys.stderr)
"""
DIFFER = {"seeds", "parent"}  # drawn afresh by each interpreter; the parent is the zygote


def _execute(
    cells: list[str], cwd: Path, *, forked: bool, timeout: int = 60, **options: Any
) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "py"}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        **options,
    )
    if forked:
        with kernel_zygote.zygote_kernels(always=True):
            client.execute()
    else:
        client.execute()
    return nb


def _probe(nb: Any) -> tuple[dict[str, Any], list[str]]:
    outputs = nb.cells[0].outputs
    seen = json.loads(next(o["text"] for o in outputs if o.get("name") == "stdout"))
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    return seen, stderr.splitlines()


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cwd = tmp_path_factory.mktemp("zygote")
    os.environ["PGC_PROBE"] = "passed on"
    try:
        started = time.monotonic()
        ordinary = _execute([PROBE], cwd, forked=False)
        ordinary_seconds = time.monotonic() - started
        forked = [_execute([PROBE], cwd, forked=True) for _ in range(2)]
    finally:
        del os.environ["PGC_PROBE"]
    return {
        "cwd": str(cwd),
        "ordinary": _probe(ordinary),
        "forked": [_probe(nb) for nb in forked],
        "ordinary_seconds": ordinary_seconds,
        "zygote_pid": kernel_zygote.zygote_pid(),
    }


def test_a_forked_kernel_sees_what_a_fresh_kernel_sees(probes: dict[str, Any]) -> None:
    (ordinary, ordinary_err), (forked, forked_err) = probes["ordinary"], probes["forked"][0]
    assert {k: v for k, v in forked.items() if k not in DIFFER} == {
        k: v for k, v in ordinary.items() if k not in DIFFER
    }
    assert ordinary["cwd"] == probes["cwd"] and ordinary["environment"]["PGC_PROBE"] == "passed on"
    # what reaches the cell's stderr output is the same (sys.stderr; not a write to fd 2)
    assert forked_err == ordinary_err == ["print to stderr"]


def test_each_forked_kernel_draws_its_own_seeds(probes: dict[str, Any]) -> None:
    (ordinary, _), (first, _), (second, _) = probes["ordinary"], *probes["forked"]
    assert first["parent"] == second["parent"] == probes["zygote_pid"] != ordinary["parent"]
    for a, b in [(first, second), (first, ordinary)]:
        assert all(x != y for x, y in zip(a["seeds"], b["seeds"], strict=True)), (a, b)


def test_a_forked_kernel_is_interrupted_and_leaves_no_process(tmp_path: Path) -> None:
    """A cell over its timeout is interrupted (nbclient sends SIGINT to the client's process
    group; the client forwards it to the kernel), and once nbclient has shut the kernel down,
    the zygote has no kernel left."""
    with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
        _execute(
            ["import time\ntime.sleep(60)"],
            tmp_path,
            forked=True,
            timeout=2,
            interrupt_on_timeout=True,
        )
    deadline = time.monotonic() + 10
    while kernel_zygote.live_kernels() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel_zygote.live_kernels() == []


def test_a_different_import_time_environment_gets_an_ordinary_kernel(tmp_path: Path) -> None:
    """``MPLBACKEND`` is read when matplotlib is imported: a kernel asking for another value
    than the zygote imported with is an ordinary one (its parent is not the zygote)."""
    saved = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "svg" if saved != "svg" else "pdf"
    try:
        nb = _execute(
            ["import os, matplotlib\nprint(os.getppid(), matplotlib.get_backend())"],
            tmp_path,
            forked=True,
        )
    finally:
        if saved is None:
            del os.environ["MPLBACKEND"]
        else:
            os.environ["MPLBACKEND"] = saved
    parent, backend = nb.cells[0].outputs[0]["text"].split()
    assert int(parent) != kernel_zygote.zygote_pid()
    assert backend == ("svg" if saved != "svg" else "pdf")
