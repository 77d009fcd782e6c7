"""Reading a submitted notebook: its bytes (links out of the submission refused), its answer
cells by ``grade_id`` and the names its other cells define. Plain text only: nothing of the
submission is executed or imported here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

from pgcheck.grading.records import Submission
from pgcheck.grading.spec import nbgrader_meta, to_python

#: largest notebook file accepted
MAX_NOTEBOOK_BYTES = 8 * 2**20


def read_submission(sub: Submission) -> tuple[bytes | None, str]:
    """The notebook's bytes, or (None, why it is refused): symlinks must stay inside."""
    path = Path(sub.path)
    anchor = Path(sub.anchor) if sub.anchor is not None else path.parent
    if anchor.is_symlink():
        return None, "the submission folder is a symbolic link: submit the notebook itself"
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None, "the notebook was not submitted"
    if not real.is_relative_to(anchor.resolve()):
        return None, "the notebook is a link to a file outside the submission: refused"
    if not real.is_file():
        return None, "the submitted notebook is not a file"
    if real.stat().st_size > MAX_NOTEBOOK_BYTES:
        return None, "the notebook is larger than 8 MB"
    return real.read_bytes(), ""


def student_cells(data: bytes) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(answer sources by grade_id, top-level names defined in unmarked cells -> cell label)."""
    import io

    try:
        nb = nbformat.read(io.StringIO(data.decode("utf-8", "replace")), as_version=4)
    except Exception:  # noqa: BLE001 - a broken submission has no answers
        return {}, {}
    answers: dict[str, list[str]] = {}
    helpers: dict[str, str] = {}
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if meta.get("solution") and isinstance(grade_id, str) and grade_id:
            answers.setdefault(grade_id, []).append(to_python(source))
        elif not meta.get("grade"):
            for name in defined_names(source):
                helpers.setdefault(name, f"cell {index + 1}")
    return answers, helpers


def defined_names(source: str) -> list[str]:
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names
