"""The trusted grader: student code runs only in a jail that can only *call* it.

For one submitted notebook (:func:`grade_one`):

1. the file is read as data (a symlink that leaves the student's folder is refused);
2. a jail (:mod:`pgcheck.grading.jail`) gets the instructor's setup code (parsed from
   ``solutions/``, never from the student's file) and only the student's answer cells, and a
   copy of that one notebook; the parent enforces the per-cell wall limit from outside;
3. for every hidden test, the check's ``measure`` and ``judge`` run **here**, on fresh random
   instances drawn from this run's own seed (pseudo-loss checks: fresh problems; every check
   with ``fresh_instances``: the option ``seed`` from :func:`check_seed`), with the student's
   function replaced by :class:`~pgcheck.grading.protocol.RemoteFunction` /
   :class:`~pgcheck.grading.protocol.RemoteLoss`: the jail only receives plain arrays and
   returns values and gradients. Nothing the student built is imported, unpickled or trusted;
4. a visible test cell is split (parsed from ``solutions/``, never from the submission):
   its ``pgcheck.check_<check>(<function>, **literals)`` calls, with the asserts on their
   reports, are evaluated **here** exactly like hidden tests (same fresh instances); its other
   statements run in the jail. It earns its points only if its jail part passed, every one
   of its check calls passed here, *and* every hidden test of the functions it uses passed.

A jail that dies (time-out, crash, flood, protocol violation) costs only the tests that were
running; the next test gets a fresh jail. Submissions never share a jail. Many notebooks are
graded by :mod:`pgcheck.grading.pool`, on worker processes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgcheck.checks.self_contained import NOT_IN_THE_JAIL
from pgcheck.grading.jail import Jail, JailConfig, JailDied
from pgcheck.grading.protocol import RemoteLoss, Session, remote_functions, start_session
from pgcheck.grading.records import CellGrade, Options, Submission
from pgcheck.grading.spec import (
    HiddenTest,
    NotebookSpec,
    VisibleCheck,
)
from pgcheck.grading.submission import defined_names, read_submission, student_cells

#: seconds for the jail's interpreter to start (imports) before the first cell
STARTUP_ALLOWANCE = 60.0


# --------------------------------------------------------------------------- instances
_FRESH: dict[int, list[Any]] = {}


def fresh_problems(seed: int) -> list[Any]:
    """The pseudo-loss instances of this run: the default suite's kinds, new random seeds.

    Drawn from the run's own seed (never sent to the jail), so a submission cannot know them.
    """
    if seed in _FRESH:
        return _FRESH[seed]
    import numpy as np

    from pgcheck.problems.gaussian import gaussian_bandit
    from pgcheck.problems.tabular import categorical_bandit, random_mdp

    rng = np.random.default_rng(seed)
    s = [int(x) for x in rng.integers(1_000, 2**31 - 1, size=5)]
    tag = f"{seed % 10**8:08d}"
    _FRESH[seed] = [
        random_mdp(
            s[0], n_states=3, n_actions=2, horizon=3, gamma=0.9, policy="linear",
            name=f"mdp-linear~{tag}",
        ),
        random_mdp(
            s[1], n_states=3, n_actions=3, horizon=3, gamma=0.8, policy="mlp",
            name=f"mdp-mlp~{tag}",
        ),
        random_mdp(
            s[2], n_states=3, n_actions=2, horizon=4, gamma=1.0, policy="tabular", fanout=1,
            name=f"mdp-tabular-undiscounted~{tag}",
        ),
        categorical_bandit(s[3], n_actions=4, name=f"bandit~{tag}"),
        gaussian_bandit(s[4], name=f"gaussian~{tag}"),
    ]  # fmt: skip
    return _FRESH[seed]


def check_seed(run_seed: int, check: str) -> int:
    """The ``seed`` option of a check with ``fresh_instances`` in this run.

    s = ⌊SeedSequence([run seed, crc32(check name)]).generate_state(1, uint64)[0] / 2⌋: the
    same for every submission of one run (same instances, fair), new in every run, and never
    sent to the jail (the jail only sees the inputs the check builds from it).
    """
    import zlib

    import numpy as np

    entropy = [int(run_seed), zlib.crc32(check.encode("utf-8"))]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


# --------------------------------------------------------------------------- the file
def imports_pgcheck(source: str) -> bool:
    """Whether an answer imports pgcheck (the answer key's package) in any form."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "pgcheck" in source
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "pgcheck" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pgcheck":
            return True
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "pgcheck" in node.value
        ):
            return True  # __import__("pgcheck"), importlib.import_module("pgcheck...")
    return False


def defines(source: str, name: str) -> bool:
    """Whether an answer cell defines ``name`` at top level."""
    return name in defined_names(source)


def jail_cells(
    spec: NotebookSpec, answers: dict[str, list[str]], grader_only: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The code the jail runs, in notebook order: instructor setup and the student's answers.

    The instructor's imports of pgcheck, of the course library pgcourse (which imports
    pgcheck) and of the preload modules (``grader_only``) are left out: none is in the jail,
    and answers must not need them. Without them the rest of a setup cell still runs, so
    what it defines after such an import (a seed, a dtype) is there for the answers.
    """
    drop = {*NOT_IN_THE_JAIL, *grader_only}
    cells: list[dict[str, str]] = []
    for step in spec.steps:
        if step.kind == "answer":
            for i, src in enumerate(answers.get(step.label, [])):
                label = f"answer cell {step.label}" + (f" (copy {i + 1})" if i else "")
                cells.append({"label": label, "source": src})
            continue
        kept = [k for k in (_without_imports(s, drop) for s in step.sources) if k.strip()]
        if kept:
            cells.append({"label": f"setup {step.label}", "source": "\n".join(kept)})
    return cells


def _imports_only(node: ast.stmt, modules: set[str]) -> bool:
    """Whether ``node`` is an import of ``modules`` alone (``import m`` or ``from m import``)."""
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] in modules for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] in modules
    return False


def _without_imports(source: str, modules: set[str]) -> str:
    """``source`` without its top-level imports of ``modules`` (unchanged if it has none)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    if not any(_imports_only(n, modules) for n in tree.body):
        return source
    tree.body = [n for n in tree.body if not _imports_only(n, modules)]
    return ast.unparse(tree)


def left_out_names(spec: NotebookSpec, grader_only: Sequence[str] = ()) -> dict[str, str]:
    """{name: module} of what the instructor's setup imports from the packages the jail lacks
    (the names :func:`jail_cells` leaves undefined there), e.g. ``log_probs_of: pgcourse``."""
    modules = {*NOT_IN_THE_JAIL, *grader_only}
    names: dict[str, str] = {}
    for step in spec.steps:
        for source in step.sources:
            try:
                body = ast.parse(source).body
            except SyntaxError:
                continue
            for node in body:
                if not _imports_only(node, modules):
                    continue
                if isinstance(node, ast.ImportFrom):
                    for a in node.names:
                        names.setdefault(a.asname or a.name, node.module or "")
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        names.setdefault(a.asname or a.name.split(".")[0], a.name)
    return names


# --------------------------------------------------------------------------- one notebook
class _Grading:
    """The state of grading one notebook: its jail (restarted after a death) and reasons."""

    def __init__(self, sub: Submission, spec: NotebookSpec, options: Options, slot: int) -> None:
        self.sub, self.spec, self.options, self.slot = sub, spec, options, slot
        self.data, self.refused = read_submission(sub)
        self.answers, self.helpers = student_cells(self.data or b"")
        preloads = [Path(p).stem for p in options.preload]
        self.cells = jail_cells(spec, self.answers, preloads)
        self.left_out = left_out_names(spec, preloads)  # imported by the setup, not in the jail
        self.functions = sorted(
            {t.function_name for t in spec.hidden}
            | {c.function_name for v in spec.visible for c in v.checks}
        )  # the functions the grader calls: those of hidden tests and visible check calls
        self.session: Session | None = None
        self.cell_errors: list[dict[str, str]] = []
        self.dropped: list[str] = []  # cells that killed their jail: left out of the next one
        self.start_failure = ""
        #: (check, function, options) -> result of a check already judged in this grading
        self.judged: dict[str, tuple[bool, str, str]] = {}
        self.config = JailConfig(
            python=options.python or JailConfig().python,
            sandbox=options.sandbox,
            limits=options.limits,
        )

    def session_or_none(self) -> Session | None:
        if self.session is not None and self.session.jail.dead is None:
            return self.session
        if self.session is not None:
            self.session.close()
            self.session = None
        for _ in range(4):  # a cell that ends its jail is left out, the rest run again
            jail = Jail(
                self.config, slot=self.slot, notebook=self.data, notebook_name=self.spec.path.name
            )
            self.session, errors, why, index = start_session(
                jail,
                self.cells,
                self.functions,
                cell_timeout=self.options.cell_timeout,
                startup=STARTUP_ALLOWANCE,
                call_timeout=self.options.timeout,
            )
            if self.session is not None:
                self.cell_errors = errors + [
                    {"label": d.split(":", 1)[0], "error": d} for d in self.dropped
                ]
                return self.session
            jail.kill(why)
            self.start_failure = why
            if index is None or not self.cells[index]["label"].startswith("answer cell"):
                return None
            label = self.cells[index]["label"]
            self.dropped.append(f"{label}: {why}, so it was left out")
            self.cells = self.cells[:index] + self.cells[index + 1 :]
        return None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    # ------------------------------------------------------------------ reasons
    def missing_reason(self, name: str) -> str:
        own = [e for e in self.cell_errors if e["label"].startswith("answer cell")]
        for err in own:
            for module in NOT_IN_THE_JAIL:
                if f"'{module}" in err["error"] and "ModuleNotFoundError" in err["error"]:
                    return (
                        f"imports {module} in {err['label']}: answers may not use pgcheck "
                        "or pgcourse"
                    )
        if name in self.helpers:
            return (
                f"`{name}` is defined in an unmarked {self.helpers[name]}, which is not "
                "graded: move it into the answer cell"
            )
        text = f"no function `{name}` was defined by the answer cells"
        dropped = [d for d in self.dropped]
        if dropped:
            text += "; " + "; ".join(dropped)
        elif own:
            text += f"; {own[0]['label']} raised {own[0]['error']}"
        return text

    def explain(self, message: str) -> str:
        """Add a hint to a NameError of a name the jail does not have: a helper defined in an
        unmarked cell, or a name the notebook imports from pgcheck or pgcourse."""
        undefined = re.search(r"name '(\w+)' is not defined", message)
        name = undefined.group(1) if undefined else ""
        if name in self.helpers:
            return (
                f"used an unmarked cell's helper `{name}` ({self.helpers[name]}): move it into "
                f"the answer cell. ({message})"
            )
        if name in self.left_out:
            return (
                f"used `{name}` from {self.left_out[name]}, which answers cannot use (the "
                "grader loads neither pgcheck nor pgcourse): write what it does in the answer "
                f"cell. ({message})"
            )
        return message


def _judge_hidden(g: _Grading, test: Any, fresh: list[Any]) -> tuple[bool, str, str]:
    """(passed, status, reason) of one hidden test, computed in this process (memoised).

    The same (check, function, options) judged twice in one grading (a hidden test and the
    visible check call that mirrors it) gives the first result: same run seed, same inputs.
    """
    key = repr((test.check, test.function_name, sorted(test.options.items())))
    if key not in g.judged:
        g.judged[key] = _judge_hidden_once(g, test, fresh)
    return g.judged[key]


def _judge_visible_check(g: _Grading, grade_id: str, call: VisibleCheck, fresh: list[Any]) -> str:
    """Why a visible cell's ``pgcheck.check_<check>(<function>, ...)`` failed, "" if it passed.

    Judged by the hidden-test path (:func:`_judge_hidden`), in this process.
    """
    test = HiddenTest(grade_id, 0.0, call.check, call.function_name, dict(call.options))
    passed, status, message = _judge_hidden(g, test, fresh)
    if passed:
        return ""
    return f"pgcheck.check_{call.check}({call.function_name}) {status}: {message}"


def _judge_hidden_once(g: _Grading, test: Any, fresh: list[Any]) -> tuple[bool, str, str]:
    """(passed, status, reason) of one hidden test, computed in this process."""
    from pgcheck.checks.registry import REGISTRY
    from pgcheck.exact.expectation import CALLER
    from pgcheck.sandbox import guarded_state, quiet, single_thread

    sources = [s for srcs in g.answers.values() for s in srcs if defines(s, test.function_name)]
    if any(imports_pgcheck(s) for s in sources) or (
        not sources and any(imports_pgcheck(s) for srcs in g.answers.values() for s in srcs)
    ):
        return (
            False,
            "imports-pgcheck",
            (
                "imports pgcheck: an answer may not use pgcheck (its reference code is the answer "
                "key; it is not available while grading)"
            ),
        )
    check = REGISTRY.get(test.check)
    if check is None:
        return False, "unknown-check", f"no check named {test.check!r} in the grader"
    session = g.session_or_none()
    if session is None:
        return False, "not-run", g.start_failure or "the sandbox did not start"
    fn = remote_functions(session, [test.function_name])[test.function_name]
    if fn is None:
        return False, "missing", g.missing_reason(test.function_name)
    options = dict(test.options)
    token = None
    if getattr(check, "fresh_instances", False):
        options["seed"] = check_seed(g.options.seed, test.check)  # replaces any literal seed
    if test.check == "pseudo_loss":
        if options.get("problem") in (None, "default"):
            from pgcheck.exact.vocabulary import VocabularyError, provides, requested_names

            try:
                names = requested_names(fn)
                options["problem"] = [p for p in fresh if provides(p, names)] or None
            except VocabularyError:
                pass  # measure reports it
        token = CALLER.set(RemoteLoss(session, test.function_name))
    try:
        with quiet(), guarded_state(), single_thread(), session.budget(g.options.timeout):
            measurement = check.measure(fn, **options)
            report = check.judge(measurement, **options)
    except Exception as exc:  # noqa: BLE001 - a failure in the exchange is a failed test
        return False, "error", f"could not be graded: {type(exc).__name__}: {exc}"[:500]
    finally:
        if token is not None:
            CALLER.reset(token)
    passed = type(report.passed) is bool and report.passed is True
    message = str(getattr(report, "message", ""))
    if session.jail.dead and not passed:
        message = f"{session.jail.dead}; {message}"
    return passed, ("passed" if passed else "failed"), g.explain(message)


def grade_one(
    sub: Submission, spec: NotebookSpec, options: Options, slot: int = 0
) -> list[CellGrade]:
    """The trusted cell grades of one submitted notebook (never raises for a bad submission)."""
    import time

    _load_preloads(options.preload)
    g = _Grading(sub, spec, options, slot)
    fresh = fresh_problems(options.seed)
    grades: list[CellGrade] = []
    passed_functions: dict[str, bool] = {}

    def cell(test: Any, kind: str, passed: bool, status: str, message: str, t0: float) -> None:
        grades.append(
            CellGrade(
                sub.student, sub.assignment, spec.name, test.grade_id, kind, test.points,
                test.points if passed else 0.0, status, message[:600],
                round(time.monotonic() - t0, 3),
            )
        )  # fmt: skip

    try:
        for test in spec.hidden:
            t0 = time.monotonic()
            if g.data is None:
                passed, status, message = False, "refused", g.refused
            else:
                passed, status, message = _judge_hidden(g, test, fresh)
            passed_functions[test.function_name] = (
                passed_functions.get(test.function_name, True) and passed
            )
            cell(test, "hidden", passed, status, message, t0)
        for vtest in spec.visible:
            t0 = time.monotonic()
            if g.data is None:
                cell(vtest, "visible", False, "refused", g.refused, t0)
                continue
            failing = sorted(f for f in vtest.functions if not passed_functions.get(f))
            if vtest.problem:
                cell(vtest, "visible", False, "failed", f"cannot be graded: {vtest.problem}", t0)
                continue
            status, why = "failed", ""
            if vtest.jail_source.strip():
                status, why = _run_visible_jail_part(g, vtest, options)
            for call in vtest.checks:
                if why:
                    break
                why = _judge_visible_check(g, vtest.grade_id, call, fresh)
            if why:
                cell(vtest, "visible", False, status, why, t0)
            elif failing:
                cell(vtest, "visible", False, "failed",
                     "the hidden tests of " + ", ".join(failing) + " failed", t0)  # fmt: skip
            else:
                cell(vtest, "visible", True, "passed", "", t0)
    finally:
        g.close()
    return grades


def _run_visible_jail_part(g: _Grading, vtest: Any, options: Options) -> tuple[str, str]:
    """Run the jail part of a visible cell: (status, why), why "" when it passed."""
    session = g.session_or_none()
    if session is None:
        return "not-run", g.start_failure or "the sandbox did not start"
    try:
        reply = session.request(
            {"op": "visible", "source": vtest.jail_source, "label": f"test {vtest.grade_id}"},
            options.timeout,
        )
    except JailDied as died:
        return "failed", f"test cell {vtest.grade_id} {died.reason}"
    error = reply.get("error")
    if isinstance(error, dict):
        error = str(error.get("message", "an error"))
    if error is not None:
        return "failed", g.explain(f"raised {error}")
    if reply.get("stderr") is not False:
        return "failed", "wrote to stderr"
    return "failed", ""


_LOADED: set[str] = set()


def _load_preloads(paths: Sequence[str]) -> None:
    """Import the instructor's trusted preload files here (they register extra checks)."""
    import importlib.util
    import sys

    for path in paths:
        if path in _LOADED:
            continue
        name = Path(path).stem
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _LOADED.add(path)
