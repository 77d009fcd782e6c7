"""Reading the instructor's source notebook: hidden test calls, answer cells, setup code.

Everything here parses trusted text (the instructor's notebook in ``solutions/``) or treats
the student's notebook as data; nothing here executes notebook code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"

#: Top-level calls of ordinary (unmarked) source cells that are replayed before grading.
SAFE_CALLS = frozenset(
    {
        "torch.set_default_dtype",
        "torch.set_num_threads",
        "torch.manual_seed",
        "np.random.seed",
        "numpy.random.seed",
        "random.seed",
        "warnings.filterwarnings",
        "warnings.simplefilter",
    }
)
#: Modules whose functions may appear on the right of a replayed top-level assignment.
SAFE_MODULES = ("torch.", "np.", "numpy.", "math.", "random.")


class GradingSpecError(ValueError):
    """The instructor's source notebook breaks the grading contract."""


@dataclass(frozen=True)
class HiddenTest:
    """One ``pgcheck.grading.hidden_test(check, function, **options)`` call of a hidden cell."""

    grade_id: str
    points: float
    check: str
    function_name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class VisibleCheck:
    """One ``pgcheck.check_<check>(<function>, **literals)`` call of a visible test cell."""

    check: str
    function_name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class VisibleTest:
    """A graded test cell without hidden tests: asserts the learner can read.

    The cell is split (:func:`split_visible`): ``checks`` are its pgcheck check calls (with
    the asserts on their reports), which the grader evaluates like hidden tests; the other
    statements, ``jail_source``, run in the jail. ``problem`` is a plain reason the cell
    cannot pass (a pgcheck use the grader cannot evaluate), ``""`` when there is none.
    """

    grade_id: str
    points: float
    source: str
    functions: frozenset[str]
    jail_source: str = ""
    checks: tuple[VisibleCheck, ...] = ()
    problem: str = ""


@dataclass(frozen=True)
class Step:
    """Code to run in the isolated child, in notebook order.

    ``kind`` is ``"setup"`` (a read-only source cell, run whole), ``"statements"`` (the
    replayable top-level statements of an ordinary source cell, each run on its own) or
    ``"answer"`` (the grade_id of an answer cell, replaced by the student's cell(s)).
    """

    kind: str
    label: str
    sources: tuple[str, ...] = ()


@dataclass
class NotebookSpec:
    """What the trusted grader needs from one source notebook."""

    path: Path
    steps: list[Step] = field(default_factory=list)
    hidden: list[HiddenTest] = field(default_factory=list)
    visible: list[VisibleTest] = field(default_factory=list)
    answer_ids: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The notebook's name without ``.ipynb`` (nbgrader's notebook id)."""
        return self.path.stem


# --------------------------------------------------------------------------- helpers
def nbgrader_meta(cell: Any) -> dict[str, Any]:
    """The cell's ``metadata.nbgrader`` dict (empty when absent)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_answer(cell: Any) -> bool:
    """An autograded or manually graded answer cell with code (``solution: true``)."""
    return cell.get("cell_type") == "code" and bool(nbgrader_meta(cell).get("solution"))


def is_test(cell: Any) -> bool:
    """A graded test cell (``grade: true, solution: false``)."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_read_only(cell: Any) -> bool:
    """A locked code cell that is neither an answer nor a test (nbgrader "read-only")."""
    meta = nbgrader_meta(cell)
    return (
        cell.get("cell_type") == "code"
        and bool(meta.get("locked"))
        and not meta.get("grade")
        and not meta.get("solution")
    )


def to_python(source: str) -> str:
    """IPython syntax (magics, ``!cmd``) to plain Python, with a fresh trusted transformer."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - leave it to the child to report the SyntaxError
        return source


def split_hidden(source: str) -> tuple[str, str | None]:
    """Split a test cell into (its visible part, its hidden region or None)."""
    lines = source.splitlines()
    visible: list[str] = []
    hidden: list[str] = []
    inside = found = False
    for line in lines:
        if BEGIN_HIDDEN in line:
            inside = found = True
            continue
        if END_HIDDEN in line:
            inside = False
            continue
        (hidden if inside else visible).append(line)
    return "\n".join(visible), ("\n".join(hidden) if found else None)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _has_code(source: str) -> bool:
    try:
        return bool(ast.parse(to_python(source)).body)
    except SyntaxError:
        return True


def parse_hidden_call(text: str, *, where: str = "hidden test") -> tuple[str, str, dict[str, Any]]:
    """Parse ``pgcheck.grading.hidden_test("check", "function", **literals)`` (literals only).

    Raises:
        GradingSpecError: when the text is anything else.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise GradingSpecError(f"{where}: not valid Python ({exc.msg})") from None
    body = tree.body
    if (
        len(body) != 1
        or not isinstance(body[0], ast.Expr)
        or not isinstance(body[0].value, ast.Call)
    ):
        raise GradingSpecError(
            f"{where}: must contain exactly one call pgcheck.grading.hidden_test(...)"
        )
    call = body[0].value
    name = _dotted(call.func)
    if name not in ("pgcheck.grading.hidden_test", "grading.hidden_test", "hidden_test"):
        raise GradingSpecError(
            f"{where}: calls {name or 'something'}, not pgcheck.grading.hidden_test"
        )
    if len(call.args) != 2 or any(isinstance(a, ast.Starred) for a in call.args):
        raise GradingSpecError(f"{where}: needs two positional arguments (check, function name)")
    try:
        check, function_name = (ast.literal_eval(a) for a in call.args)
        options: dict[str, Any] = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise GradingSpecError(f"{where}: **kwargs are not allowed, write the options")
            options[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise GradingSpecError(f"{where}: arguments must be Python literals") from None
    if not isinstance(check, str) or not isinstance(function_name, str):
        raise GradingSpecError(f"{where}: check and function name must be strings")
    if not function_name.isidentifier():
        raise GradingSpecError(f"{where}: {function_name!r} is not a function name")
    if ast.literal_eval(repr(options)) != options:
        raise GradingSpecError(f"{where}: options must round-trip as literals")
    return check, function_name, options


CHECK_PREFIX = "pgcheck.check_"
_SPLIT_RULE = (
    "a visible test cell may use pgcheck only as `name = pgcheck.check_<check>(function, "
    "option=literal, ...)`, `pgcheck.check_<check>(...)` or `assert name.passed, name.message`"
)


def _visible_check(call: ast.Call) -> VisibleCheck | str:
    """The check call ``pgcheck.check_<check>(<function name>, **literals)``, or why not."""
    name = _dotted(call.func)
    check = name[len(CHECK_PREFIX) :] if name.startswith(CHECK_PREFIX) else ""
    if not check.isidentifier():
        return f"calls {name or 'something'}, which is not a pgcheck check"
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Name):
        return f"{name}(...) must get one function name as its only positional argument"
    options: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            return f"{name}(...) may not use **kwargs: write the options"
        try:
            options[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            return f"{name}(...): the option {kw.arg}= must be a Python literal"
    try:
        if ast.literal_eval(repr(options)) != options:
            raise ValueError
    except (ValueError, SyntaxError):
        return f"{name}(...): the options must round-trip as literals"
    return VisibleCheck(check, call.args[0].id, options)


def _pgcheck_call(node: ast.AST | None) -> ast.Call | None:
    """``node`` when it is a call of something under ``pgcheck.``, else None."""
    if isinstance(node, ast.Call) and _dotted(node.func).startswith("pgcheck."):
        return node
    return None


def split_visible(source: str) -> tuple[str, tuple[VisibleCheck, ...], str]:
    """Split a visible test cell into (jail source, grader checks, problem).

    Statement by statement, in order: ``r = pgcheck.check_<c>(f, **literals)`` and a bare
    ``pgcheck.check_<c>(...)`` become grader checks (``r`` is then a report name);
    ``assert r.passed[, message]`` on a report name (its message using only report names)
    and ``assert pgcheck.check_<c>(...).passed`` are covered by those checks; every other
    statement stays in the jail source, unless it uses ``pgcheck`` or a report name, which
    is a problem (the cell then fails with that plain reason).
    """
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError:
        return to_python(source), (), ""  # the jail reports the SyntaxError
    checks: list[VisibleCheck] = []
    reports: set[str] = set()
    kept: list[ast.stmt] = []
    problems: list[str] = []

    def add(call: ast.Call, line: int) -> None:
        found = _visible_check(call)
        if isinstance(found, str):
            problems.append(f"line {line}: {found}")
        else:
            checks.append(found)

    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and (call := _pgcheck_call(node.value)) is not None
        ):
            add(call, node.lineno)
            reports.add(node.targets[0].id)
            continue
        if isinstance(node, ast.Expr) and (call := _pgcheck_call(node.value)) is not None:
            add(call, node.lineno)
            continue
        if (
            isinstance(node, ast.Assert)
            and isinstance(node.test, ast.Attribute)
            and node.test.attr == "passed"
        ):
            target = node.test.value
            message_names = {
                n.id for n in ast.walk(node.msg) if isinstance(n, ast.Name)
            } if node.msg is not None else set()  # fmt: skip
            if message_names <= reports:
                if isinstance(target, ast.Name) and target.id in reports:
                    continue
                if (call := _pgcheck_call(target)) is not None and not message_names:
                    add(call, node.lineno)
                    continue
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if "pgcheck" in used or used & reports:
            problems.append(f"line {node.lineno}: {_SPLIT_RULE}")
            continue
        kept.append(node)
    jail = ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""
    return jail, tuple(checks), "; ".join(problems)


def replayable_statements(source: str) -> tuple[str, ...]:
    """The top-level statements of an ordinary source cell that set up names, cheaply.

    Kept: imports, function and class definitions, assignments whose right side calls only
    torch / numpy / math / random functions, and a few global settings (``SAFE_CALLS``).
    Dropped: everything else (feedback calls, plots, training loops, prints).
    """
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError:
        return ()
    kept: list[str] = []
    for node in tree.body:
        keep = False
        if isinstance(
            node,
            ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef,
        ):
            keep = True
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            calls = [_dotted(c.func) for c in ast.walk(node.value) if isinstance(c, ast.Call)]
            keep = all(isinstance(t, ast.Name | ast.Tuple) for t in targets) and all(
                c.startswith(SAFE_MODULES) for c in calls
            )
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            keep = _dotted(node.value.func) in SAFE_CALLS
        if keep:
            kept.append(ast.unparse(node))
    return tuple(kept)


_GRADE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def parse_source(path: str | Path) -> NotebookSpec:
    """Read an instructor source notebook into a :class:`NotebookSpec`.

    Raises:
        GradingSpecError: a hidden test cell is not exactly one hidden_test call with
            literal arguments, or grade ids are missing or repeated.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    spec = NotebookSpec(path=path)
    seen: set[str] = set()
    hidden_functions: set[str] = set()
    visible_cells: list[tuple[str, float, str]] = []
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        grade_id = str(meta.get("grade_id", ""))
        if cell.cell_type != "code":
            continue
        where = f"{path.name} cell {index} ({grade_id or 'no grade_id'})"
        if is_answer(cell) or is_test(cell):
            if not _GRADE_ID.match(grade_id):
                raise GradingSpecError(f"{where}: missing or invalid grade_id")
            if grade_id in seen:
                raise GradingSpecError(f"{where}: grade_id {grade_id!r} is used twice")
            seen.add(grade_id)
        if is_answer(cell):
            spec.steps.append(Step("answer", grade_id))
            spec.answer_ids.append(grade_id)
        elif is_test(cell):
            points = float(meta.get("points", 0) or 0)
            visible, hidden = split_hidden(cell.source)
            if hidden is not None:
                if _has_code(visible):
                    raise GradingSpecError(
                        f"{where}: a hidden test cell must contain only the hidden_test call"
                    )
                check, function_name, options = parse_hidden_call(hidden, where=where)
                spec.hidden.append(HiddenTest(grade_id, points, check, function_name, options))
                hidden_functions.add(function_name)
            else:
                visible_cells.append((grade_id, points, cell.source))
        elif is_read_only(cell):
            spec.steps.append(Step("setup", f"setup cell {index}", (to_python(cell.source),)))
        else:
            statements = replayable_statements(cell.source)
            if statements:
                spec.steps.append(Step("statements", f"cell {index}", statements))
    for grade_id, points, source in visible_cells:
        try:
            names = {
                n.id for n in ast.walk(ast.parse(to_python(source))) if isinstance(n, ast.Name)
            }
        except SyntaxError:
            names = set()
        jail, checks, problem = split_visible(source)
        spec.visible.append(
            VisibleTest(
                grade_id, points, to_python(source), frozenset(names & hidden_functions),
                jail, checks, problem,
            )
        )  # fmt: skip
    return spec


def student_answers(path: str | Path) -> dict[str, list[str]]:
    """The student's answer cells by grade_id, in the student's order (duplicates kept).

    The student's notebook is data here: an unreadable file gives no answers.
    """
    try:
        nb = nbformat.read(Path(path), as_version=4)
    except Exception:  # noqa: BLE001 - a broken submission has no answers
        return {}
    answers: dict[str, list[str]] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        if isinstance(grade_id, str) and grade_id:
            source = cell.get("source", "")
            if isinstance(source, list):
                source = "".join(source)
            answers.setdefault(grade_id, []).append(to_python(str(source)))
    return answers


def assignment_notebooks(source_dir: str | Path) -> list[Path]:
    """The notebooks of one assignment folder in ``solutions/`` (checkpoints excluded)."""
    return sorted(p for p in Path(source_dir).glob("*.ipynb") if not p.name.startswith("."))
