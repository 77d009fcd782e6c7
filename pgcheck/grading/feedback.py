"""An nbconvert preprocessor for ``nbgrader generate_feedback``: hidden tests stay hidden.

The autograded notebook contains the hidden test cells with their source restored by
nbgrader, and their tracebacks. This preprocessor (enabled in ``nbgrader_config.py``) keeps
the cell and its score but replaces the hidden region by a comment and every output of the
cell by at most one line, ``AssertionError: hidden test failed``.
"""

from __future__ import annotations

from typing import Any

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbformat.v4 import new_output
from traitlets import Bool

from pgcheck.grading.notebook import BEGIN_HIDDEN, END_HIDDEN, nbgrader_meta, split_hidden

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
