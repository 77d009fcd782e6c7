"""The package's layout holds: no import cycles, every module documented, the registry explicit,
and the light entry points (the grading commands, the course library) import nothing heavy."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pgcheck
from pgcheck.checks.registry import BUILT_IN, REGISTRY

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from course_tools import fresh_interpreter  # noqa: E402

ROOT = Path(pgcheck.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The pgcheck modules ``path`` imports at module level (deferred imports excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found.update(n for n in names if n in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts}
    modules = set(paths)
    graph = {m: _imports(p, modules) - {m} for m, p in paths.items()}
    # the root package re-exports everything; edges into it are the implicit parent import
    for deps in graph.values():
        deps.discard("pgcheck")
    return graph


def test_no_import_cycles() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_module_says_what_it_holds() -> None:
    missing = [
        m
        for m, p in sorted((_module_name(p), p) for p in ROOT.rglob("*.py"))
        if "__pycache__" not in p.parts and not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing, f"modules without a docstring: {missing}"


def test_registry_is_the_built_in_list() -> None:
    assert [c.name for c in BUILT_IN] == [n for n in REGISTRY if n in {c.name for c in BUILT_IN}]
    for check in BUILT_IN:
        module = importlib.import_module(check.measure.__module__)
        assert module.CHECK is check
        front = getattr(pgcheck, f"check_{check.name}")
        assert front.__module__ == module.__name__ and front.__doc__


def test_public_api_is_explicit() -> None:
    for name in pgcheck.__all__:
        assert hasattr(pgcheck, name), name


def test_the_commands_that_compute_no_gradient_do_not_import_torch() -> None:
    """``import pgcheck`` is lazy (a check imports its module on first use), and the grading
    layer that only reads notebooks, writes grades or hands work to the worker processes
    never imports torch: ``release``, ``nbgrader generate_feedback`` (which loads the
    feedback preprocessor) and the trusted grader's main process start without it."""
    light = [
        "pgcheck",
        "pgcheck.grading.cli",
        "pgcheck.grading.feedback",
        "pgcheck.grading.gradebook",
        "pgcheck.grading.pool",
        "pgcheck.grading.submission",
    ]
    code = (
        f"import importlib, sys\nfor m in {light!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    printed = fresh_interpreter(code)
    assert printed.strip() == "[]", printed[:500]
    # ... and the lazy names are the real ones
    assert pgcheck.check_pseudo_loss.__module__ == "pgcheck.checks.pseudo_loss"
    assert pgcheck.REGISTRY is REGISTRY is pgcheck.checks.registry.REGISTRY
    # every public name has a home to be imported from, and nothing else has one
    assert set(pgcheck.__all__) == set(pgcheck._HOME) | set(pgcheck._SUBPACKAGES)


def test_importing_the_course_library_leaves_scipy_for_the_first_band() -> None:
    """Every notebook from 05 on (and each of its kernels and jails in grading) imports
    pgcourse; scipy (about 0.2 CPU-s to import) is loaded only when a band is computed."""
    code = (
        "import sys\nimport pgcourse\nbefore = 'scipy' in sys.modules\n"
        "pgcourse.t_quantile(0.975, 4)\nprint(before, 'scipy' in sys.modules)"
    )
    assert fresh_interpreter(code).split() == ["False", "True"]
