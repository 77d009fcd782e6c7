"""Recording trusted grades: nbgrader's gradebook, a CSV table, a terminal summary.

Every string that came from a submission (messages quote the student's exceptions and
prints) is sanitised on the way out: control characters (ANSI escapes included) are removed
for the terminal, and a CSV cell that starts with ``= + - @`` (or a tab / carriage return)
is prefixed with ``'`` so a spreadsheet shows it as text instead of running it.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pgcheck.grading.records import CellGrade

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def plain_text(text: Any, limit: int = 600) -> str:
    """``text`` without ANSI escapes or control/format characters (newlines become spaces)."""
    s = _ANSI.sub("", str(text))
    s = "".join(
        " " if ch in "\n\r\t" else ch
        for ch in s
        if ch in "\n\r\t" or unicodedata.category(ch)[0] != "C"
    )
    return s[:limit]


def csv_cell(value: Any) -> Any:
    """A value safe for a spreadsheet: text formulas are neutralised with a leading quote."""
    if isinstance(value, int | float):
        return value
    s = plain_text(value)
    if s[:1] in ("=", "+", "-", "@", "\t", "\r"):
        s = "'" + s
    return s


CSV_FIELDS = list(CellGrade.__dataclass_fields__)


def write_csv(grades: Sequence[CellGrade], path: str | Path) -> Path:
    """One row per graded cell (student, assignment, notebook, grade_id, score, reason ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for grade in grades:
            writer.writerow({k: csv_cell(v) for k, v in asdict(grade).items()})
    return path


def summary_lines(grades: Sequence[CellGrade]) -> list[str]:
    """Per student and assignment: score / points, then one line per lost cell with its reason."""
    totals: dict[tuple[str, str], list[float]] = {}
    problems: dict[tuple[str, str], list[str]] = {}
    for g in grades:
        key = (g.student, g.assignment)
        totals.setdefault(key, [0.0, 0.0])
        totals[key][0] += g.score
        totals[key][1] += g.points
        if g.status != "passed":
            problems.setdefault(key, []).append(
                f"    {plain_text(g.grade_id, 60)}: {plain_text(g.status, 30)}: "
                f"{plain_text(g.message, 200)}"
            )
    lines = []
    for (student, assignment), (score, points) in sorted(totals.items()):
        lines.append(f"{plain_text(student, 30):<20} {plain_text(assignment, 40):<28} "
                     f"{score:6.1f} / {points:<6.1f}")  # fmt: skip
        lines.extend(problems.get((student, assignment), []))
    return lines


def record_in_gradebook(grades: Sequence[CellGrade], db_url: str) -> int:
    """Write the trusted scores into nbgrader's gradebook (``auto_score``, through its API).

    Submissions are created when missing (no student code ever ran with access to the
    gradebook). ``manual_score`` of every cell graded here is cleared, so the exported grade
    is the trusted one whatever the database said before. Returns the grades written.
    """
    from nbgrader.api import Gradebook, MissingEntry

    written = 0
    with Gradebook(db_url) as gb:
        for grade in grades:
            try:
                gb.find_submission(grade.assignment, grade.student)
            except MissingEntry:
                try:
                    gb.find_assignment(grade.assignment)
                except MissingEntry:
                    raise MissingEntry(
                        f"assignment {grade.assignment!r} is not in the gradebook "
                        "(release it first)"
                    ) from None
                gb.update_or_create_student(grade.student)
                gb.add_submission(grade.assignment, grade.student)
            try:
                row = gb.find_grade(grade.grade_id, grade.notebook, grade.assignment, grade.student)
            except MissingEntry:
                continue
            row.auto_score = float(grade.score)
            row.manual_score = None
            row.extra_credit = None
            row.needs_manual_grade = False
            written += 1
        gb.db.commit()
    return written
