"""The plain records of a grading run: a :class:`Submission` goes in, :class:`CellGrade` rows
come out, :class:`Options` travel to the worker processes.

Nothing here imports torch, so the commands that only read or write grades (``release``,
the gradebook, the feedback preprocessor run by ``nbgrader generate_feedback``) start in a
fraction of a second.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pgcheck.grading.jail import Limits

DEFAULT_TIMEOUT = 60.0
DEFAULT_CELL_TIMEOUT = 30.0


@dataclass
class CellGrade:
    """The trusted score of one graded cell of one submission, with a plain reason."""

    student: str
    assignment: str
    notebook: str
    grade_id: str
    kind: str  # "hidden" or "visible"
    points: float
    score: float
    status: str  # "passed", "failed", or why it could not be graded
    message: str = ""
    seconds: float = 0.0


@dataclass
class Submission:
    """One student's copy of one notebook; ``anchor`` is the folder it must stay inside."""

    student: str
    assignment: str
    path: Path
    anchor: Path | None = None


@dataclass
class Options:
    """Settings of one grading run (picklable: sent to the worker processes)."""

    timeout: float = DEFAULT_TIMEOUT
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    sandbox: bool = True
    python: str | None = None
    preload: tuple[str, ...] = ()
    seed: int = field(default_factory=lambda: secrets.randbits(62))
    limits: Limits = field(default_factory=Limits)
