"""Verdicts do not depend on machine load (the budget is the learner's CPU time), and the
forked measurement does not disturb a Jupyter kernel's output."""

from __future__ import annotations

import subprocess
import sys
import time

import nbformat
import pytest
import torch

import pgcheck
from pgcheck.diagnosis import estimators as E


def chatty(log_probs, q_values, gamma, mask):
    for i in range(2000):
        print("step", i)
    return E.reward_to_go(log_probs, q_values, gamma, mask)


def slowish(log_probs, returns, mask):
    total = 0
    for i in range(log_probs.shape[0]):  # a Python loop over the batch, as tutorials do
        total = total - returns[i] * (log_probs[i] * mask[i]).sum()
    return total / log_probs.shape[0]


LOSSES = [E.reward_to_go, E.MISTAKES["missing_gamma_t"], chatty, slowish, E.leave_one_out_baseline]


def verdicts() -> list[dict]:
    return [pgcheck.check_pseudo_loss(f, timeout=2.0).to_dict() for f in LOSSES]


def test_same_verdicts_on_a_quiet_and_a_loaded_machine():
    quiet = verdicts()
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)
    ]  # both cores busy
    try:
        time.sleep(0.2)
        loaded = verdicts()
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert loaded == quiet
    assert [d["verdict"] for d in quiet] == [
        "unbiased",
        "biased",
        "unbiased",
        "unbiased",
        "unbiased",
    ]


@pytest.mark.parametrize("fn", [E.reward_to_go, E.MISTAKES["missing_gamma_t"]])
def test_check_cpu_time(fn):
    """Every check under 1 s on a correct loss and under 2 s on a mistake, on one core."""
    torch.set_num_threads(1)
    pgcheck.check_pseudo_loss(fn)  # warm caches (∇J, references)
    start = time.process_time()
    pgcheck.check_pseudo_loss(fn)
    assert time.process_time() - start < 1.0


NOTEBOOK_CELLS = [
    "import torch, pgcheck\ntorch.set_num_threads(1)",
    "import os\n"
    "def forks(log_probs, returns, mask):\n"
    "    os.fork()\n"
    "    print('hi from the loss')\n"
    "    os.write(2, b'fd 2')\n"
    "    return -(returns[:, None] * log_probs * mask).sum(1).mean()\n"
    "r = pgcheck.check_pseudo_loss(forks)\n"
    "print(r.verdict)",
    "def exits(log_probs):\n    os._exit(3)\nprint(pgcheck.check_pseudo_loss(exits).verdict)",
    "print('kernel alive')",
]


def test_fork_in_a_jupyter_kernel_keeps_its_output_clean():
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [
        [(o.get("name"), o.get("text")) for o in c.outputs if o.output_type == "stream"]
        for c in nb.cells
    ]
    assert outputs[1] == [("stdout", "unbiased\n")]  # one report, no fork's copy, no fd 2
    assert outputs[2] == [("stdout", "error\n")]
    assert outputs[3] == [("stdout", "kernel alive\n")]
