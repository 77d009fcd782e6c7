"""Adversarial submissions: none gets marks it did not earn, none stops the others.

All submissions of the fixture assignment are graded in ONE run of the trusted grader
(``python -m pgcheck.grading autograde --skip-nbgrader``). The attacks that fooled grading in
the student's kernel are also run through plain ``nbgrader autograde``, to show that the
attack is real (the in-kernel score is higher) and that the trusted grader is not fooled.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from course_tools import (  # noqa: E402
    assignments,
    cell_by_id,
    gradebook_scores,
    nbgrader,
    pgrade,
    read,
    release_log,
    released_course,
    session_dir,
    submit,
    total,
)

# one worker grades the whole module (--dist loadgroup): it is among the slowest
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("adversarial")]

FIXTURE = assignments()[0]
NAME = FIXTURE.name
NOTEBOOK = f"{NAME}.ipynb"
TIMEOUT = 15  # seconds per isolated child in this test

RIGHT_DR = (
    "def discounted_return(rewards, gamma):\n"
    "    return sum(gamma**t * float(r) for t, r in enumerate(rewards))\n"
)
RIGHT_RTG = (
    "def reward_to_go(rewards, gamma):\n"
    "    out = torch.zeros_like(rewards)\n"
    "    running = 0.0\n"
    "    for t in reversed(range(len(rewards))):\n"
    "        running = rewards[t] + gamma * running\n"
    "        out[t] = running\n"
    "    return out\n"
)
WRONG_DR = "def discounted_return(rewards, gamma):\n    return 0.0\n"
WRONG_RTG = "def reward_to_go(rewards, gamma):\n    return torch.zeros_like(rewards)\n"

MONKEYPATCH = (
    WRONG_DR
    + """
import pgcheck
import pgcheck.sandbox
from pgcheck.checks.base import Check
from pgcheck.checks.registry import REGISTRY
from pgcheck.report import Report

def _always(*args, **kwargs):
    return Report(passed=True, verdict="correct", message="fine")

for _name in list(REGISTRY):
    REGISTRY[_name] = Check(_name, lambda fn, **options: {}, _always)
pgcheck.sandbox.call_learner = lambda *args, **kwargs: None
"""
)

LIAR = """
class Liar(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __le__(self, other): return True
    def __gt__(self, other): return True
    def __ge__(self, other): return True
    def __sub__(self, other): return Liar(0.0)
    def __rsub__(self, other): return Liar(0.0)
    def __abs__(self): return Liar(0.0)
    __hash__ = float.__hash__

def discounted_return(rewards, gamma):
    return Liar(0.0)
"""

TRANSFORMER = (
    WRONG_DR
    + """
def _rewrite(lines):
    text = "".join(lines)
    if "assert" in text or "hidden_test" in text:
        return ["pass\\n"]
    return lines

get_ipython().input_transformers_post.append(_rewrite)
"""
)

REDEFINE = (
    WRONG_DR
    + """
import pgcheck.grading

def hidden_test(*args, **kwargs):
    return None

pgcheck.grading.hidden_test = hidden_test
"""
)

TAMPER_TORCH = (
    WRONG_RTG
    + """
torch.allclose = lambda *args, **kwargs: True
"""
)

FORGE = (
    WRONG_DR
    + """
import json as _json
import os as _os
_fake = {"status": "ok", "measurement": {
    "values": [[5.23], [0.0], [2.0], [2.0], [0.6117999999999998]],
    "errors": [None, None, None, None, None]}}
for _fd in [1, *range(3, 40)]:
    try:
        _os.write(_fd, (_json.dumps(_fake) + "\\n").encode())
    except OSError:
        pass
"""
)

LOOP_TOPLEVEL = RIGHT_RTG + "\nwhile True:\n    pass\n"
LOOP_UNSTOPPABLE = (
    RIGHT_RTG
    + """
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
"""
)
LOOP_IN_FUNCTION = "def reward_to_go(rewards, gamma):\n    while True:\n        pass\n"
EXIT_TOPLEVEL = RIGHT_RTG + "\nimport os\nos._exit(0)\n"
EXIT_IN_FUNCTION = "import os\n\ndef reward_to_go(rewards, gamma):\n    os._exit(3)\n"
KILL_IN_FUNCTION = (
    "import os, signal\n\ndef reward_to_go(rewards, gamma):\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
)
STDERR_PYTHON = (
    RIGHT_RTG
    + """
import sys, warnings
print("debugging output", file=sys.stderr)
warnings.warn("a warning from the answer cell")
"""
)
STDERR_FD = RIGHT_RTG + "\nimport os\nos.write(2, b'written straight to stderr\\n')\n"
FLOOD = RIGHT_RTG + "\nfor _ in range(100000):\n    print('x' * 100)\n"


# student -> (discounted_return cell, reward_to_go cell, trusted score expected out of 6)
CASES: dict[str, tuple[str, str, float]] = {
    "honest": (RIGHT_DR, RIGHT_RTG, 6),
    "monkeypatch_pgcheck": (MONKEYPATCH, WRONG_RTG, 0),
    "float_subclass": (LIAR, RIGHT_RTG, 3),
    "input_transformer": (TRANSFORMER, WRONG_RTG, 0),
    "redefined_hidden_test": (REDEFINE, WRONG_RTG, 0),
    "tampered_torch": (RIGHT_DR, TAMPER_TORCH, 0),
    "forged_result": (FORGE, WRONG_RTG, 0),
    "loop_toplevel": (RIGHT_DR, LOOP_TOPLEVEL, 6),
    "loop_unstoppable": (RIGHT_DR, LOOP_UNSTOPPABLE, 0),
    "loop_in_function": (RIGHT_DR, LOOP_IN_FUNCTION, 3),
    "exit_toplevel": (RIGHT_DR, EXIT_TOPLEVEL, 0),
    "exit_in_function": (RIGHT_DR, EXIT_IN_FUNCTION, 3),
    "kill_in_function": (RIGHT_DR, KILL_IN_FUNCTION, 3),
    "stderr_python": (RIGHT_DR, STDERR_PYTHON, 6),
    "stderr_fd": (RIGHT_DR, STDERR_FD, 0),
    "stdout_flood": (RIGHT_DR, FLOOD, 6),
}
#: attacks that fool grading in the student's kernel: student -> in-kernel score expected
IN_KERNEL = {
    "monkeypatch_pgcheck": 4,
    "float_subclass": 4,
    "input_transformer": 6,
    "redefined_hidden_test": 4,
    "tampered_torch": 4,
}


def _notebook(released: Any, dr: str, rtg: str) -> Any:
    nb = json.loads(json.dumps(released))
    import nbformat

    nb = nbformat.from_dict(nb)
    cell_by_id(nb, "discounted_return").source = dr
    cell_by_id(nb, "reward_to_go").source = rtg
    return nb


def _duplicated(released: Any, first: str, second: str) -> Any:
    import copy

    nb = _notebook(released, RIGHT_DR, first)
    index = nb.cells.index(cell_by_id(nb, "reward_to_go"))
    twin = copy.deepcopy(nb.cells[index])
    twin.source = second
    twin.pop("id", None)
    nb.cells.insert(index + 1, twin)
    return nb


def _run_all(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    course = released_course(root / "course_root", FIXTURE, tmp_path_factory)
    assert release_log(course)[0] == 0, release_log(course)
    released = read(course / "notebooks" / NAME / NOTEBOOK)
    for student, (dr, rtg, _) in CASES.items():
        submit(course, student, NAME, {NOTEBOOK: _notebook(released, dr, rtg)})
    submit(
        course, "duplicated_fixed", NAME, {NOTEBOOK: _duplicated(released, WRONG_RTG, RIGHT_RTG)}
    )
    submit(
        course, "duplicated_broken", NAME, {NOTEBOOK: _duplicated(released, RIGHT_RTG, WRONG_RTG)}
    )
    broken = submit(course, "not_a_notebook", NAME, {})
    (broken / NOTEBOOK).write_text("{ this is not json")
    # in-kernel grading of the attacks that fool it (plain nbgrader autograde)
    in_kernel: dict[str, float] = {}
    for student in IN_KERNEL:
        nbgrader(["autograde", NAME, f"--student={student}"], course)
    scores = gradebook_scores(course, NAME)
    in_kernel = {s: total(scores[s])[0] for s in IN_KERNEL if s in scores}
    preload = [a for p in FIXTURE.preload for a in ("--preload", str(p))]
    result = pgrade(
        [
            "autograde",
            NAME,
            "--skip-nbgrader",
            "--timeout",
            str(TIMEOUT),
            "--cell-timeout",
            "4",
            *preload,
        ],
        course,
    )
    with (course / "course" / "trusted" / f"{NAME}.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {
        "in_kernel": in_kernel,
        "trusted": gradebook_scores(course, NAME),
        "rows": rows,
        "stdout": result.stdout[-6000:],
        "stderr": result.stderr[-6000:],
        "returncode": result.returncode,
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every adversarial submission graded once per session (shared between xdist workers)."""
    shared = session_dir(tmp_path_factory) / "course_adversarial"
    shared.mkdir(exist_ok=True)
    done = shared / "results.json"
    with FileLock(str(done) + ".lock"):
        if done.is_file():
            return json.loads(done.read_text())
        data = _run_all(shared, tmp_path_factory)
        done.write_text(json.dumps(data))
        return data


def _trusted_total(graded: dict[str, Any], student: str) -> float:
    return total(graded["trusted"][student])[0]


def _rows(graded: dict[str, Any], student: str) -> dict[str, dict[str, str]]:
    return {r["grade_id"]: r for r in graded["rows"] if r["student"] == student}


def test_the_grading_run_finishes_and_grades_everyone(graded: dict[str, Any]) -> None:
    assert graded["returncode"] == 0, graded["stderr"]
    expected = set(CASES) | {"duplicated_fixed", "duplicated_broken", "not_a_notebook"}
    assert set(graded["trusted"]) == expected
    assert {r["student"] for r in graded["rows"]} == expected
    assert _trusted_total(graded, "honest") == 6


@pytest.mark.parametrize("student", sorted(CASES))
def test_trusted_score(graded: dict[str, Any], student: str) -> None:
    """Each submission gets exactly what its answers earn (see CASES)."""
    expected = CASES[student][2]
    assert _trusted_total(graded, student) == expected, _rows(graded, student)


@pytest.mark.parametrize("student", sorted(IN_KERNEL))
def test_the_attack_fools_in_kernel_grading_but_not_the_trusted_grader(
    graded: dict[str, Any], student: str
) -> None:
    assert graded["in_kernel"][student] == IN_KERNEL[student]
    assert _trusted_total(graded, student) < graded["in_kernel"][student]


def test_why_each_attack_failed(graded: dict[str, Any]) -> None:
    """The recorded status names the reason (a check of the mechanism, not only the score)."""
    status = {s: {g: r["status"] for g, r in _rows(graded, s).items()} for s in CASES}
    assert status["monkeypatch_pgcheck"]["discounted_return_hidden"] == "tampered"
    assert status["float_subclass"]["discounted_return_hidden"] == "failed"
    assert status["float_subclass"]["discounted_return_visible"] == "failed"
    assert status["tampered_torch"]["reward_to_go_visible"] == "tampered"
    assert status["forged_result"]["discounted_return_hidden"] == "failed"
    assert status["loop_unstoppable"]["reward_to_go_hidden"] == "timeout"
    assert status["loop_in_function"]["reward_to_go_hidden"] == "failed"
    assert status["exit_toplevel"]["discounted_return_hidden"] == "crashed"
    assert status["exit_in_function"]["reward_to_go_hidden"] == "crashed"
    assert status["exit_in_function"]["discounted_return_hidden"] == "passed"
    assert status["kill_in_function"]["reward_to_go_hidden"] == "crashed"
    assert status["stderr_fd"]["discounted_return_hidden"] == "stderr"


def test_the_forged_result_would_have_passed_if_accepted() -> None:
    """So the forged_result case tests the channel, not a wrong forgery."""
    from pgcheck.grading.trusted import _judge, _preloaded

    _preloaded(FIXTURE.preload)
    fake = json.loads(FORGE.split("_fake = ")[1].split("\nfor _fd")[0].replace("None", "null"))
    assert _judge("fixture_discounted_return", fake, {})[0] is True


def test_duplicated_answer_cells_are_graded_not_aborted(graded: dict[str, Any]) -> None:
    """Both copies run in the student's order, as in the notebook: the last one counts."""
    assert _trusted_total(graded, "duplicated_fixed") == 6
    assert _trusted_total(graded, "duplicated_broken") == 3


def test_an_unreadable_submission_scores_zero(graded: dict[str, Any]) -> None:
    assert _trusted_total(graded, "not_a_notebook") == 0
