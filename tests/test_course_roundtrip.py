"""The course pipeline, for every assignment in solutions/ (and the fixture assignment).

release (nbgrader generate_assignment) == committed student notebooks; the solution validates
with full marks and runs top to bottom with no error and no stderr (every claim's assert
holds); the untouched student notebook fails only in answer-dependent cells and
scores zero; the untouched and sign-flipped copies skip the cells tagged ``experiment``
(training runs and seed sweeps, which no other cell reads: checked here, so skipping them
changes no grade); nbgrader autograde and the trusted grader give the solution full marks and a
sign error partial marks, and agree cell by cell; feedback HTML hides the hidden tests;
``nbgrader export`` reports the trusted grades.

The pipeline of an assignment runs once per test session (shared between xdist workers
through a file lock) in a temporary course directory. Its steps call the commands' code in
the test's process (nbgrader's API; ``pgcheck.grading``'s ``main``), which spares an
interpreter's start-up per step; one test runs ``nbgrader generate_feedback`` and
``nbgrader export`` as commands and finds the same files, and the adversarial run and the
Gradescope test run the grader as a command.
"""

from __future__ import annotations

import ast
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from course_tools import (  # noqa: E402
    REPO,
    Assignment,
    alembic_head,
    answer_cells,
    assignments,
    gradebook_scores,
    interpreter_on_path,
    is_experiment,
    make_course,
    meta,
    nbgrader_here,
    pgrade,
    pgrade_here,
    read,
    readers_of_experiments,
    release_log,
    released_course,
    run,
    session_dir,
    skipping_experiments,
    stamp_gradebooks_in_process,
    submit,
    total,
    with_sign_error,
)

from pgcheck.grading.spec import assignment_notebooks, parse_source  # noqa: E402

ASSIGNMENTS = assignments()
#: nbgrader autograde's executed notebooks, copied before the trusted grader runs
EXECUTED = "nbgrader_executed"
# each assignment's tests run on one xdist worker (--dist loadgroup), so no worker waits on
# another's pipeline lock; the pipelines are the suite's slowest tests
PARAMS = [
    pytest.param(a, id=a.name, marks=[pytest.mark.slow, pytest.mark.xdist_group(f"pipe-{a.name}")])
    for a in ASSIGNMENTS
]


def _mistake_g0(nb: Any) -> Any:
    """Fixture only: the reward-to-go uses G_0 at every t (a typical mistake)."""
    for cell in answer_cells(nb):
        if meta(cell).get("grade_id") == "reward_to_go":
            cell.source = (
                "def reward_to_go(rewards, gamma):\n"
                "    total = sum(gamma**t * r for t, r in enumerate(rewards))\n"
                "    return torch.full_like(rewards, float(total))\n"
            )
    return nb


def _pipeline(assignment: Assignment, root: Path, tmp_path_factory: Any) -> dict[str, Any]:
    """Release (once per session), submit, nbgrader autograde, trusted autograde, feedback,
    export."""
    course = released_course(root / "course_root", assignment, tmp_path_factory)
    name = assignment.name
    log: dict[str, Any] = {"course": str(course)}
    log["release"] = release_log(course)
    sources = assignment_notebooks(course / "solutions" / name)
    students: dict[str, dict[str, Any]] = {"solution": {}, "untouched": {}, "sign_error": {}}
    sign_error_functions: dict[str, str] = {}
    for source in sources:
        released = read(course / "notebooks" / name / source.name)
        solution = read(source)
        students["solution"][source.name] = solution  # every cell runs: every claim is checked
        # the other copies skip the experiment cells, which no graded cell reads (checked below)
        students["untouched"][source.name] = skipping_experiments(released)
        flipped, sign_error_functions[source.name] = with_sign_error(solution)
        students["sign_error"][source.name] = skipping_experiments(flipped)
    if name == "00_fixture":
        students["typical_mistake"] = {s.name: _mistake_g0(read(s)) for s in sources}
    for student, notebooks in students.items():
        submit(course, student, name, notebooks)
    # every step runs the commands' code in this process (without an interpreter's start-up
    # each); the adversarial run and the Gradescope test run the grader as a command
    result = nbgrader_here("autograde", course, name, "*")
    log["nbgrader_autograde"] = result.returncode, result.stderr[-4000:]
    nbgrader_scores = gradebook_scores(course, name)
    # the trusted grader writes its own (unexecuted) notebooks into autograded/ for the
    # feedback: keep nbgrader's executions, which the notebook tests below read
    shutil.copytree(course / "course" / "autograded", course / EXECUTED)
    preload = [arg for p in assignment.preload for arg in ("--preload", str(p))]
    # one process grades the three submissions (the worker pool is exercised by the
    # adversarial run, which grades every attack with --jobs 2)
    result = pgrade_here(["autograde", name, "--jobs", "1", *preload], course)
    log["trusted_autograde"] = result.returncode, result.stdout[-4000:], result.stderr[-4000:]
    trusted_scores = gradebook_scores(course, name)
    result = nbgrader_here("generate_feedback", course, name)
    log["feedback"] = result.returncode, result.stderr[-2000:]
    result = nbgrader_here("export", course)
    log["export"] = result.returncode, result.stderr[-2000:]
    return {
        "log": log,
        "nbgrader": nbgrader_scores,
        "trusted": trusted_scores,
        "sign_error_functions": sign_error_functions,
    }


@pytest.fixture(scope="module", params=PARAMS)
def pipeline(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The pipeline's results for one assignment, computed once per session."""
    assignment: Assignment = request.param
    shared = session_dir(tmp_path_factory) / "course_pipeline"
    shared.mkdir(exist_ok=True)
    done = shared / f"{assignment.name}.json"
    with FileLock(str(done) + ".lock"):
        if done.is_file():
            data = json.loads(done.read_text())
        else:
            data = _pipeline(assignment, shared / assignment.name, tmp_path_factory)
            done.write_text(json.dumps(data))
    data["assignment"] = assignment
    data["course"] = Path(data["log"]["course"])
    return data


def _normalised(nb: Any) -> Any:
    """The notebook without outputs, and without the releasing Python's patch version."""
    data = json.loads(json.dumps(nb))
    for cell in data["cells"]:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)
    data.get("metadata", {}).get("language_info", {}).pop("version", None)
    return data


def visible_entries(folder: Path) -> list[str]:
    """The names a release check compares: hidden entries (``.ipynb_checkpoints``, which
    JupyterLab writes on open, ``.DS_Store``, ...) and ``__pycache__`` are not part of it."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "__pycache__")))


def out_of_date(name: str, detail: str, fresh: Path) -> str:
    """The failure message of the sync test. It never recommends regenerating notebooks/,
    which would overwrite a learner's answers."""
    return (
        f"notebooks/{name} differs from a fresh release of solutions/{name} ({detail}; fresh "
        f"copy: {fresh}). If you are working through the course and changed this notebook, "
        "this is expected and your work is safe: nothing needs to be run. Course maintainers: "
        "see 'Release' in docs/instructor.md."
    )


def test_release_matches_committed_student_notebooks(pipeline: dict[str, Any]) -> None:
    """The committed notebooks/ folder is exactly what generate_assignment produces."""
    assignment, course = pipeline["assignment"], pipeline["course"]
    assert pipeline["log"]["release"][0] == 0, pipeline["log"]["release"]
    fresh_dir = course / "notebooks" / assignment.name
    fresh = visible_entries(fresh_dir)
    committed = visible_entries(assignment.released_dir)
    assert committed == fresh, out_of_date(
        assignment.name, f"files {committed} vs {fresh}", fresh_dir
    )
    for filename in fresh:
        if filename.endswith(".ipynb"):
            assert _normalised(read(assignment.released_dir / filename)) == _normalised(
                read(fresh_dir / filename)
            ), out_of_date(assignment.name, f"{filename} differs", fresh_dir)
        else:
            assert (assignment.released_dir / filename).read_bytes() == (
                fresh_dir / filename
            ).read_bytes(), out_of_date(assignment.name, f"{filename} differs", fresh_dir)


def test_release_check_ignores_hidden_entries_and_never_suggests_a_release(
    tmp_path: Path,
) -> None:
    """What Lab or Finder leave beside a notebook does not count; the message is safe."""
    (tmp_path / "01_x.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "01_x-checkpoint.ipynb").write_text("{}")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "__pycache__").mkdir()
    assert visible_entries(tmp_path) == ["01_x.ipynb"]
    message = out_of_date("01_x", "01_x.ipynb differs", tmp_path)
    assert "grading release" not in message and "generate_assignment" not in message


def test_a_failed_generate_assignment_is_a_failed_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The release runs nbgrader's generate_assignment in its own process: a failure there
    is still exit status 1 with nbgrader's reason on stderr (here: no such notebooks)."""
    from pgcheck.grading.cli import _generate_assignment

    course = make_course(tmp_path / "course", ASSIGNMENTS[0])
    assert _generate_assignment("no_such_assignment", course) == 1
    assert "No notebooks were matched" in capsys.readouterr().err


def test_solution_validates_with_full_marks(pipeline: dict[str, Any]) -> None:
    """nbgrader's Validator (from Python: `nbgrader validate` always exits 0) finds no failure.

    It reads the solution as nbgrader autograde executed it in the pipeline (the notebooks'
    one shared execution), so its preprocessors check cell metadata and do not run it again.
    """
    from nbgrader.preprocessors import CheckCellMetadata
    from nbgrader.validator import Validator

    def validator() -> Validator:
        checker = Validator()
        checker.preprocessors = [CheckCellMetadata]  # not configurable: set on the instance
        return checker

    course, assignment = pipeline["course"], pipeline["assignment"]
    for source in assignment_notebooks(course / "solutions" / assignment.name):
        executed = course / EXECUTED / "solution" / assignment.name / source.name
        assert executed.is_file(), pipeline["log"]["nbgrader_autograde"]
        results = validator().validate(str(executed))
        assert results == {}, f"{source.name}: {json.dumps(results)[:3000]}"
        # the same check on the sign-flipped submission finds its failing test cells
        flipped = executed.parents[2] / "sign_error" / assignment.name / source.name
        assert validator().validate(str(flipped)).get("failed"), flipped


def test_solution_runs_top_to_bottom_without_an_error_or_stderr(pipeline: dict[str, Any]) -> None:
    """Every cell of the solution, as nbgrader autograde executed it: the asserts that back
    the notebook's claims (measured ratios, learning curves, numerical checks) all held, and
    nothing was written to stderr (no warning a learner would see)."""
    course, assignment = pipeline["course"], pipeline["assignment"]
    for source in assignment_notebooks(course / "solutions" / assignment.name):
        executed = course / EXECUTED / "solution" / assignment.name / source.name
        assert executed.is_file(), pipeline["log"]["nbgrader_autograde"]
        nb = read(executed)
        code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        assert code and all(c.get("execution_count") for c in code), f"{source.name}: not run"
        bad = [
            (index, output.get("ename") or output.get("text", "")[-300:])
            for index, cell in enumerate(nb.cells)
            for output in cell.get("outputs", [])
            if output.get("output_type") == "error"
            or (output.get("output_type") == "stream" and output.get("name") == "stderr")
        ]
        assert not bad, f"{source.name}: cells with an error or stderr output: {bad}"


def _answer_dependent(source_nb: Any, nb: Any) -> set[int]:
    """Indices of cells allowed to fail in the untouched notebook: answers, tests, and any
    cell that uses a name defined by an answer cell or by such a cell (transitively)."""
    tainted: set[str] = set()
    for cell in answer_cells(source_nb):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        tainted |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        tainted |= {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
    allowed: set[int] = set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        m = meta(cell)
        try:
            tree = ast.parse(cell.source)
            names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        except SyntaxError:
            tree, names = None, set()
        if m.get("solution") or m.get("grade") or names & tainted:
            allowed.add(index)
            if tree is not None:
                tainted |= {
                    t.id
                    for n in ast.walk(tree)
                    if isinstance(n, ast.Assign)
                    for t in n.targets
                    if isinstance(t, ast.Name)
                }
                tainted |= {
                    n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)
                }
    return allowed


def test_untouched_notebook_fails_only_in_answer_dependent_cells(pipeline: dict[str, Any]) -> None:
    """Executed by nbgrader autograde: errors only where an unanswered exercise is used."""
    course, assignment = pipeline["course"], pipeline["assignment"]
    for source in assignment_notebooks(course / "solutions" / assignment.name):
        path = course / EXECUTED / "untouched" / assignment.name / source.name
        assert path.is_file(), pipeline["log"]["nbgrader_autograde"]
        nb = read(path)
        # every cell ran except the experiments, which this copy skips
        code = [
            (i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
        ]
        ran = [i for i, c in code if c.get("execution_count")]
        assert ran == [i for i, c in code if not is_experiment(c)], (
            f"{source.name}: cells run {ran}"
        )
        allowed = _answer_dependent(read(source), nb)
        failing = [
            i
            for i, c in enumerate(nb.cells)
            if c.cell_type == "code"
            and any(o.get("output_type") == "error" for o in c.get("outputs", []))
        ]
        assert failing, "the untouched notebook raised nowhere: are the answers stubbed?"
        unexpected = [(i, nb.cells[i].source[:200]) for i in failing if i not in allowed]
        assert not unexpected, f"cells that fail without using an answer: {unexpected}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_no_cell_reads_what_an_experiment_computed(assignment: Assignment) -> None:
    """Skipping the experiment cells (as the untouched and sign-flipped copies do) leaves
    every other cell as it is: no later cell reads a name an experiment bound, and no
    experiment is an answer or a test."""
    for source in assignment_notebooks(assignment.source_dir):
        nb = read(source)
        assert readers_of_experiments(nb) == [], source.name
        graded = [i for i, c in enumerate(nb.cells) if is_experiment(c) and meta(c)]
        assert not graded, f"{source.name}: experiment cells with nbgrader metadata {graded}"


def test_the_experiment_check_finds_a_reader() -> None:
    """The check above can fail: a cell that reads an experiment's result, a loop variable or
    a function's free name is found (also after a magic, and after a rebinding that may not
    run); a name surely rebound before the read, and a comprehension's own variable, are not."""
    nb = nbformat.v4.new_notebook()
    experiment = nbformat.v4.new_code_cell(
        "curve = train()\nfor step in range(3):\n    last = step"
    )
    experiment.metadata["tags"] = ["experiment"]
    nb.cells = [
        experiment,
        nbformat.v4.new_code_cell("def f():\n    return curve[-1]"),  # reads curve when defined
        nbformat.v4.new_code_cell("print(last)"),
        nbformat.v4.new_code_cell("step = 0\nprint(step)"),  # rebinds first: no read
        nbformat.v4.new_code_cell("x = [last for last in range(2)]\nif x:\n    curve = 0"),
        nbformat.v4.new_code_cell("%matplotlib inline\nprint(curve)"),  # maybe not rebound
    ]
    assert readers_of_experiments(nb) == [(1, {"curve"}), (2, {"last"}), (5, {"curve"})]
    skipped = skipping_experiments(nb)
    assert skipped.cells[0].metadata["tags"] == ["experiment", "skip-execution"]
    assert (
        "tags" not in nb.cells[1].metadata and "skip-execution" not in nb.cells[0].metadata["tags"]
    )


def test_untouched_notebook_scores_zero(pipeline: dict[str, Any]) -> None:
    for scores in (pipeline["nbgrader"], pipeline["trusted"]):
        cells = scores["untouched"]
        assert cells and all(c["score"] == 0 for c in cells.values()), cells


def test_autograde_gives_the_solution_full_marks(pipeline: dict[str, Any]) -> None:
    for label in ("nbgrader", "trusted"):
        cells = pipeline[label]["solution"]
        score, maximum = total(cells)
        assert maximum > 0
        assert score == maximum, (
            label,
            {k: v for k, v in cells.items() if v["score"] != v["max"]},
            pipeline["log"]["trusted_autograde"],
        )


def test_autograde_gives_a_typical_mistake_partial_marks(pipeline: dict[str, Any]) -> None:
    """The last exercise's sign flipped (and, in the fixture, G_0 used at every t).

    Partial marks need a second exercise; a notebook with a single graded function can
    only lose marks (the assignment is listed in the report to the lead).
    """
    course, assignment = pipeline["course"], pipeline["assignment"]
    functions = {
        t.function_name
        for source in assignment_notebooks(course / "solutions" / assignment.name)
        for t in parse_source(source).hidden
    }
    students = ["sign_error"] + (
        ["typical_mistake"] if "typical_mistake" in pipeline["trusted"] else []
    )
    for student in students:
        for label in ("nbgrader", "trusted"):
            score, maximum = total(pipeline[label][student])
            if len(functions) > 1:
                assert 0 < score < maximum, (student, label, pipeline[label][student])
            else:  # one exercise: its hidden and visible tests both catch the mistake
                assert score < maximum, (student, label, pipeline[label][student])


def test_sign_error_fails_exactly_the_hidden_tests_of_that_function(
    pipeline: dict[str, Any],
) -> None:
    course, assignment = pipeline["course"], pipeline["assignment"]
    for source in assignment_notebooks(course / "solutions" / assignment.name):
        spec = parse_source(source)
        function = pipeline["sign_error_functions"][source.name]
        for test in spec.hidden:
            score = pipeline["trusted"]["sign_error"][f"{spec.name}/{test.grade_id}"]["score"]
            if test.function_name == function:
                assert score == 0, test
        assert any(t.function_name == function for t in spec.hidden), (
            f"no hidden test covers the last exercise {function}"
        )


def test_trusted_grader_agrees_with_nbgrader_on_honest_submissions(
    pipeline: dict[str, Any],
) -> None:
    for student, cells in pipeline["nbgrader"].items():
        assert pipeline["trusted"][student] == cells, student


def test_feedback_html_hides_the_hidden_tests(pipeline: dict[str, Any]) -> None:
    course, assignment = pipeline["course"], pipeline["assignment"]
    assert pipeline["log"]["feedback"][0] == 0, pipeline["log"]["feedback"]
    hidden_lines = []
    for source in assignment_notebooks(course / "solutions" / assignment.name):
        for cell in read(source).cells:
            if "BEGIN HIDDEN TESTS" in cell.source:
                hidden_lines += [
                    line.strip()
                    for line in cell.source.splitlines()
                    if line.strip() and "HIDDEN TESTS" not in line
                ]
    assert hidden_lines
    for student in pipeline["trusted"]:
        for source in assignment_notebooks(course / "solutions" / assignment.name):
            html_path = (
                course
                / "course"
                / "feedback"
                / student
                / assignment.name
                / source.with_suffix(".html").name
            )
            assert html_path.is_file(), (student, pipeline["log"]["feedback"])
            text = html_path.read_text()
            assert "hidden_test" not in text and "HIDDEN TESTS" not in text, html_path
            # the scores shown are the trusted ones
            assert "Score:" in text or "score" in text.lower()


def test_nbgrader_export_reports_the_trusted_grades(pipeline: dict[str, Any]) -> None:
    course = pipeline["course"]
    assert pipeline["log"]["export"][0] == 0, pipeline["log"]["export"]
    with (course / "grades.csv").open() as handle:
        rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    for student, cells in pipeline["trusted"].items():
        score, maximum = total(cells)
        assert float(rows[student]["score"]) == pytest.approx(score), student
        assert float(rows[student]["max_score"]) == pytest.approx(maximum)


@pytest.mark.parametrize("pipeline", PARAMS[:1], indirect=True)  # once: the fixture's
def test_the_commands_give_what_the_in_process_steps_gave(
    pipeline: dict[str, Any], tmp_path: Path
) -> None:
    """The pipeline runs nbgrader's steps and the trusted grader in-process (the same code
    without an interpreter's start-up each); here, once, the commands an instructor types
    (``nbgrader generate_feedback`` and ``nbgrader export`` in the course folder, with
    nbgrader's own configuration loading and ``alembic`` lookup) rewrite the same files."""
    name = pipeline["assignment"].name
    course = tmp_path / "course_copy"
    shutil.copytree(pipeline["course"], course)
    feedback = course / "course" / "feedback"
    before = {p.relative_to(feedback): p.read_text() for p in sorted(feedback.rglob("*.html"))}
    shutil.rmtree(feedback)
    (course / "grades.csv").unlink()
    for args in (["generate_feedback", name], ["export"]):
        result = run([sys.executable, "-m", "nbgrader", *args], course)
        assert result.returncode == 0, (args, result.stderr[-3000:])
    after = {p.relative_to(feedback): p.read_text() for p in sorted(feedback.rglob("*.html"))}
    assert before and after.keys() == before.keys()
    assert after == before
    exported = (course / "grades.csv").read_text()
    assert exported == (pipeline["course"] / "grades.csv").read_text()


def test_in_process_gradebooks_get_the_revision_the_alembic_command_gives() -> None:
    """The in-process steps stamp a new gradebook with ``course_tools.alembic_head``;
    nbgrader itself runs ``alembic heads``: the two give the same schema revision."""
    command = stamp_gradebooks_in_process()
    assert stamp_gradebooks_in_process() is command  # installed once, whoever calls first
    with interpreter_on_path():
        assert command() == alembic_head()
    assert len(alembic_head()) == 12 and int(alembic_head(), 16) >= 0


def test_hidden_test_cells_follow_the_contract(pipeline: dict[str, Any]) -> None:
    """Every hidden test names a registered check; every visible test is paired with one."""
    import pgcheck
    from pgcheck.grading.grader import _load_preloads

    assignment, course = pipeline["assignment"], pipeline["course"]
    _load_preloads([str(p) for p in assignment.preload])
    for source in assignment_notebooks(course / "solutions" / assignment.name):
        spec = parse_source(source)
        assert spec.hidden, f"{source.name} has no hidden test"
        for test in spec.hidden:
            assert test.check in pgcheck.checks.registry.REGISTRY, test
        for visible in spec.visible:
            assert visible.functions, (
                f"{visible.grade_id} uses no function that a hidden test checks"
            )


# --------------------------------------------------------------------------- Gradescope
def test_gradescope_bundle_grades_a_submission_end_to_end(tmp_path: Path) -> None:
    """Build the bundle, unpack it as Gradescope does, run run_autograder on one submission."""
    import os
    import subprocess
    import sys
    import zipfile

    from pgcheck.grading.jail import probe_sandbox

    if shutil.which("bwrap") is None:  # installed but broken is a failure, not a skip
        pytest.skip(f"bubblewrap is not installed: {probe_sandbox()}")
    name = "03_pseudo_loss"
    bundle = tmp_path / "autograder.zip"
    result = pgrade(["gradescope-bundle", name, str(bundle), "--root", str(REPO)], REPO)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        zf.extractall(root / "source")
    assert {"setup.sh", "run_autograder"} <= names
    assert f"course/solutions/{name}/{name}.ipynb" in names
    assert "course/pgcheck/grading/child.py" in names
    (root / "submission").mkdir()
    solution = read(REPO / "solutions" / name / f"{name}.ipynb")
    mistake, _ = with_sign_error(solution)
    scores = {}
    for label, nb in (("solution", solution), ("sign_error", mistake)):
        nbformat.write(nb, root / "submission" / f"{name}.ipynb")
        env = dict(os.environ, PGCHECK_AUTOGRADER_ROOT=str(root), PGCHECK_PYTHON=sys.executable)
        run = subprocess.run(
            ["bash", str(root / "source" / "run_autograder")],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        results = json.loads((root / "results" / "results.json").read_text())
        assert set(results) >= {"score", "execution_time", "output", "tests"}
        for test in results["tests"]:
            assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
            assert 0 <= test["score"] <= test["max_score"]
        assert results["score"] == sum(t["score"] for t in results["tests"])
        scores[label] = (results["score"], sum(t["max_score"] for t in results["tests"]))
    assert scores["solution"] == (8.0, 8.0)
    assert 0 < scores["sign_error"][0] < 8.0
