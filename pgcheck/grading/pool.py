"""Grading many notebooks: in this process, or on worker processes ``jobs`` at a time.

The workers fork from one server process that has imported :mod:`pgcheck.grading.grader`
(and with it torch) once; nothing of the calling process is inherited. This module itself
imports neither, so a command that hands every notebook to the workers never pays for torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pgcheck.grading.jail import require_sandbox
from pgcheck.grading.records import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_TIMEOUT,
    CellGrade,
    Options,
    Submission,
)
from pgcheck.grading.spec import NotebookSpec, parse_source

#: the jail slot (its uid and scratch folder) of this worker process
_SLOT: list[int] = [0]


def _worker_init(slots: Any) -> None:
    import torch

    torch.set_num_threads(1)
    _SLOT[0] = int(slots.get())


def _worker(sub: Submission, spec_path: str, options: Options) -> list[CellGrade]:
    from pgcheck.grading.grader import grade_one

    return grade_one(sub, parse_source(spec_path), options, slot=_SLOT[0])


def grade_submissions(
    items: Iterable[tuple[Submission, NotebookSpec]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    preload: Sequence[str | Path] = (),
    jobs: int | None = None,
    sandbox: bool = True,
    python: str | None = None,
    seed: int | None = None,
) -> list[CellGrade]:
    """Grade many submitted notebooks, each in its own jail(s), ``jobs`` at a time
    (default: one per CPU, and never more workers than notebooks).

    Raises:
        SandboxUnavailable: ``sandbox`` is on and a jail cannot start here (why, how to fix).
    """
    if sandbox:
        require_sandbox()
    options = Options(
        timeout=timeout,
        cell_timeout=cell_timeout,
        sandbox=sandbox,
        python=python,
        preload=tuple(str(Path(p).resolve()) for p in preload),
    )
    if seed is not None:
        options.seed = seed
    work = list(items)
    workers = worker_count(jobs, len(work))
    if workers == 1:
        from pgcheck.grading.grader import grade_one

        return [grade for sub, spec in work for grade in grade_one(sub, spec, options)]
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pgcheck.grading.grader"])
    slots = context.Queue()
    for slot in range(workers):
        slots.put(slot)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                             initargs=(slots,)) as pool:  # fmt: skip
        futures = [pool.submit(_worker, sub, str(spec.path), options) for sub, spec in work]
        return [grade for f in futures for grade in f.result()]


def worker_count(jobs: int | None, notebooks: int) -> int:
    """Worker processes for ``notebooks`` notebooks: ``jobs`` (default: the CPUs), at most
    one per notebook, at least one."""
    return max(1, min(jobs or os.cpu_count() or 1, notebooks))


def grade_notebook(
    source: str | Path,
    submission: str | Path,
    *,
    student: str = "student",
    assignment: str = "",
    **kwargs: Any,
) -> list[CellGrade]:
    """Grade one submitted notebook file against its instructor source notebook."""
    spec = parse_source(source)
    path = Path(submission)
    sub = Submission(student, assignment or Path(source).parent.name, path, path.parent)
    return grade_submissions([(sub, spec)], **kwargs)
