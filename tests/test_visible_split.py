"""A visible test cell is split: its pgcheck check calls run in the grader, the rest in the jail.

The jail has no pgcheck, so ``_report = pgcheck.check_<c>(fn, ...)`` and the asserts on
``_report`` are judged by the trusted grader (the hidden-test path, this run's fresh
instances); the cell's plain asserts still run in the jail. The split is read from the
instructor's source notebook, never from the submission.
"""

from __future__ import annotations

import shutil
from typing import Any

import nbformat
import pytest
import torch

from pgcheck.grading.jail import probe_sandbox
from pgcheck.grading.pool import grade_notebook
from pgcheck.grading.spec import VisibleCheck, parse_source, split_visible

# the graded notebooks (four jails) are made once, on one xdist worker (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("visible_split")

torch.set_num_threads(1)

VISIBLE = """\
# a small case by hand, then the exact check
_out = reward_to_go(torch.tensor([1.0, 1.0], dtype=torch.float64), 0.5)
assert torch.allclose(_out, torch.tensor([1.5, 1.0], dtype=torch.float64)), "G = [1.5, 1]"
_report = pgcheck.check_returns(reward_to_go, kind='reward_to_go')
assert _report.passed, _report.message
"""

RIGHT = """\
def reward_to_go(rewards, gamma):
    out = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out
"""
#: right only on the hand-made case of the plain assert: only the grader's check sees it
HARD_CODED = """\
def reward_to_go(rewards, gamma):
    if len(rewards) == 2 and gamma == 0.5:
        return torch.tensor([1.5, 1.0], dtype=torch.float64)
    return torch.zeros_like(rewards)
"""
ZEROS = "def reward_to_go(rewards, gamma):\n    return torch.zeros_like(rewards)\n"


def test_split_keeps_plain_asserts_in_the_jail_and_the_check_for_the_grader() -> None:
    jail, checks, problem = split_visible(VISIBLE)
    assert problem == ""
    assert checks == (VisibleCheck("returns", "reward_to_go", {"kind": "reward_to_go"}),)
    assert "pgcheck" not in jail and "_report" not in jail
    assert "assert torch.allclose(_out" in jail and "_out = reward_to_go(" in jail


def test_two_checks_reusing_one_report_name_are_both_kept() -> None:
    source = (
        "_r = pgcheck.check_pseudo_loss(loss, accept_missing_gamma_t=True)\n"
        "assert _r.passed, _r.message\n"
        "_r = pgcheck.check_value_loss(value_loss)\nassert _r.passed, _r.message\n"
    )
    jail, checks, problem = split_visible(source)
    assert (jail, problem) == ("", "")
    assert [c.check for c in checks] == ["pseudo_loss", "value_loss"]
    assert checks[0].options == {"accept_missing_gamma_t": True}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("_r = pgcheck.check_returns(lambda r, g: r)\nassert _r.passed", "one function name"),
        ("_r = pgcheck.check_returns(f, kind=KIND)\nassert _r.passed", "must be a Python literal"),
        ("_r = pgcheck.check_returns(f, **opts)\nassert _r.passed", "**kwargs"),
        ("_r = pgcheck.check_returns(f, g)\nassert _r.passed", "one function name"),
        ("_r = pgcheck.report.Report(True)\nassert _r.passed", "not a pgcheck check"),
        ("_r = pgcheck.check_returns(f)\nassert not _r.passed", "may use pgcheck only"),
        ("print(pgcheck.REGISTRY)", "may use pgcheck only"),
    ],
)
def test_a_check_call_the_grader_cannot_evaluate_is_a_plain_reason(
    source: str, reason: str
) -> None:
    _, _, problem = split_visible(source)
    assert reason in problem


# --------------------------------------------------------------------------- end to end
def _cell(source: str, **nbgrader: Any) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "locked": False, **nbgrader}
    return cell


def _notebook(answer: str, visible: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _cell("import torch\n\nimport pgcheck", grade=False, solution=False, locked=True,
              grade_id="setup"),
        _cell(answer, grade=False, solution=True, grade_id="reward_to_go"),
        _cell(visible, grade=True, solution=False, locked=True, points=2,
              grade_id="reward_to_go_visible"),
    ]  # fmt: skip
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("bwrap") is None:  # installed but broken is a failure, not a skip
        pytest.skip(f"bubblewrap is not installed: {probe_sandbox()}")
    root = tmp_path_factory.mktemp("visible")
    source = root / "solutions" / "rtg.ipynb"
    source.parent.mkdir()
    nbformat.write(_notebook(RIGHT, VISIBLE), source)
    grades: dict[str, Any] = {"spec": parse_source(source)}
    # the tampered submission empties its copy of the test cell: the spec's cell is graded
    for student, answer, visible in [
        ("right", RIGHT, VISIBLE),
        ("hard_coded", HARD_CODED, VISIBLE),
        ("zeros", ZEROS, VISIBLE),
        ("tampered", HARD_CODED, "pass"),
    ]:
        path = root / student / "rtg.ipynb"
        path.parent.mkdir()
        nbformat.write(_notebook(answer, visible), path)
        (grade,) = grade_notebook(source, path, student=student, timeout=30, cell_timeout=10)
        grades[student] = grade
    return grades


def test_the_spec_has_no_hidden_test_so_the_visible_cell_alone_decides(
    graded: dict[str, Any],
) -> None:
    spec = graded["spec"]
    assert spec.hidden == [] and len(spec.visible) == 1


def test_a_right_answer_passes_the_split_cell(graded: dict[str, Any]) -> None:
    grade = graded["right"]
    assert (grade.status, grade.score, grade.points) == ("passed", 2.0, 2.0), grade.message


def test_a_wrong_answer_that_passes_the_plain_asserts_fails_the_grader_check(
    graded: dict[str, Any],
) -> None:
    for student in ("hard_coded", "tampered"):
        grade = graded[student]
        assert (grade.status, grade.score) == ("failed", 0.0), student
        assert grade.message.startswith("pgcheck.check_returns(reward_to_go) failed"), grade.message
        assert "not defined" not in grade.message


def test_a_wrong_answer_fails_the_plain_asserts_in_the_jail(graded: dict[str, Any]) -> None:
    grade = graded["zeros"]
    assert (grade.status, grade.score) == ("failed", 0.0)
    assert "AssertionError" in grade.message and "G = [1.5, 1]" in grade.message, grade.message
