"""An nbconvert preprocessor for ``nbgrader generate_feedback``: hidden tests stay hidden.

The autograded notebook contains the hidden test cells with their source restored by
nbgrader, and their tracebacks. This preprocessor (enabled in ``nbgrader_config.py``) keeps
the cell and its score but replaces the hidden region by a comment and every output of the
cell by at most one line, ``AssertionError: hidden test failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbformat.v4 import new_output
from traitlets import Bool

from pgcheck.grading.spec import BEGIN_HIDDEN, END_HIDDEN, nbgrader_meta, split_hidden

PLACEHOLDER = "# hidden test (not shown)"


def is_hidden_test_cell(cell: NotebookNode) -> bool:
    """A graded test cell that has a hidden region or calls ``hidden_test``."""
    meta = nbgrader_meta(cell)
    if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
        return False
    source = cell.get("source", "")
    return BEGIN_HIDDEN in source or END_HIDDEN in source or "hidden_test(" in source


class HideHiddenTests(Preprocessor):
    """Replace hidden test sources and outputs before the feedback HTML is written."""

    enabled = Bool(True, help="on by default once listed in GenerateFeedback.preprocessors").tag(
        config=True
    )

    def preprocess_cell(
        self, cell: NotebookNode, resources: dict[str, Any], index: int
    ) -> tuple[NotebookNode, dict[str, Any]]:
        """Hide one cell's hidden region and outputs (other cells are left alone)."""
        if not is_hidden_test_cell(cell):
            return cell, resources
        visible, hidden = split_hidden(cell.source)
        if hidden is None:
            visible = ""
        cell.source = (visible.rstrip("\n") + "\n" + PLACEHOLDER).lstrip("\n")
        failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        cell.outputs = (
            [
                new_output(
                    "error",
                    ename="AssertionError",
                    evalue="hidden test failed",
                    traceback=["AssertionError: hidden test failed"],
                )
            ]
            if failed
            else []
        )
        return cell, resources


def write_feedback_notebooks(
    grades: Any, items: Any, autograded_dir: Path, release_dir: Path
) -> list[Path]:
    """The notebooks ``nbgrader generate_feedback`` reads, written without executing anything.

    Each is the released notebook with the student's answer cells (as text) and, as the only
    output of each graded test cell, its trusted status and reason (sanitised); hidden test
    cells are hidden again by :class:`HideHiddenTests` when the feedback is generated.
    """
    from pgcheck.grading.gradebook import plain_text
    from pgcheck.grading.submission import read_submission, student_cells

    by_cell = {(g.student, g.assignment, g.notebook, g.grade_id): g for g in grades}
    written = []
    for sub, spec in items:
        release = release_dir / sub.assignment / spec.path.name
        if not release.is_file():
            continue
        nb = nbformat.read(release, as_version=4)
        data, _ = read_submission(sub)
        answers, _ = student_cells(data or b"")
        seen: dict[str, int] = {}
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            grade_id = meta.get("grade_id")
            if cell.get("cell_type") == "code":
                cell.outputs = []
                cell.execution_count = None
            if meta.get("solution") and grade_id in answers:
                k = seen.get(grade_id, 0)
                cell.source = answers[grade_id][min(k, len(answers[grade_id]) - 1)]
                seen[grade_id] = k + 1
            grade = by_cell.get((sub.student, sub.assignment, spec.name, grade_id))
            if grade is not None and cell.get("cell_type") == "code":
                text = f"{grade.status}: {plain_text(grade.message)}".strip()
                cell.outputs = (
                    []
                    if grade.status == "passed"
                    else [
                        new_output(
                            "error",
                            ename="AssertionError",
                            evalue=text,
                            traceback=[f"AssertionError: {text}"],
                        )
                    ]
                )
        target = autograded_dir / sub.student / sub.assignment / spec.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written
