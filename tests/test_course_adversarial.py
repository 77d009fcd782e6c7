"""Adversarial submissions: none gets marks it did not earn, none disturbs anyone else.

Every submission of the fixture assignment is graded in ONE run of
``python -m pgcheck.grading autograde`` (student code only in the bubblewrap jail; checks,
references and verdicts in the grader). After the run: each attack earned nothing it did
not earn, the canary classmates (correct answers, graded in the same run, before and after
the attackers) kept full marks, no file outside the grader's own outputs changed, and no
process of any jail is left. A few attacks on the real pseudo-loss assignment follow.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from course_tools import (  # noqa: E402
    REPO,
    assignments,
    cell_by_id,
    gradebook_scores,
    pgrade,
    read,
    release_log,
    released_course,
    session_dir,
    submit,
    total,
)

from pgcheck.grading.jail import BASE_UID  # noqa: E402

# one worker grades the whole module (--dist loadgroup): it is among the slowest
pytestmark = [
    # skipped only where bubblewrap is not installed at all; installed but unable to start is a
    # failure (the grader refuses to grade), never a silent skip
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
    pytest.mark.slow,
    pytest.mark.xdist_group("adversarial"),
]

FIXTURE = assignments()[0]
NAME = FIXTURE.name
NOTEBOOK = f"{NAME}.ipynb"
TIMEOUT = 4  # seconds per test in this file (all calls of one test share it)
CELL_TIMEOUT = 2

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


#: placeholders filled in when the course exists: {course} (its root), {pgcheck} (package dir)
WRITE_PGCHECK = (
    WRONG_RTG
    + """
for _p in ["{pgcheck}/checks/returns.py", "{pgcheck}/grading/grader.py"]:
    try:
        open(_p, "a").write("\\nraise SystemExit('sabotaged')\\n")
    except OSError:
        pass
"""
)
OVERWRITE_CLASSMATE = (
    WRONG_RTG
    + """
import glob, shutil
for _p in glob.glob("{course}/course/submitted/canary_*/*/*.ipynb"):
    try:
        open(_p, "w").write("{{}}")
    except OSError:
        pass
"""
)
SET_MANUAL_SCORE = (
    WRONG_RTG
    + """
import sqlite3
try:
    _db = sqlite3.connect("{course}/course/gradebook.db")
    _db.execute("update grade set manual_score = 100")
    _db.commit()
except Exception:
    pass
"""
)
COPY_SOLUTION = """
import json
_nb = json.load(open("{course}/solutions/00_fixture/00_fixture.ipynb"))
for _c in _nb["cells"]:
    if _c.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") == "reward_to_go":
        exec("".join(_c["source"]))
"""
DAEMON = (
    RIGHT_RTG
    + """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3)
        for _p in ["{course}/course/trusted/00_fixture.csv"]:
            try:
                open(_p, "w").write("student,score\\nsetsid_daemon,100\\n")
            except OSError:
                pass
        os._exit(0)
    os._exit(0)
"""
)
STDERR_OF_OTHERS = (
    RIGHT_RTG
    + """
import glob, os
for _p in glob.glob("/proc/*/fd/2"):
    try:
        _fd = os.open(_p, os.O_WRONLY)
        os.write(_fd, b"x")
        os.close(_fd)
    except OSError:
        pass
"""
)
SLEEPERS = (
    RIGHT_RTG
    + """
import os, time
for _ in range(16):
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
"""
)
KILL_GRADER = (
    RIGHT_RTG
    + """
import os, signal
for _pid in (os.getppid(), 1, -1):
    try:
        os.kill(_pid, signal.SIGKILL)
    except OSError:
        pass
"""
)
BIG_ALLOCATION = (
    """
try:
    _big = bytearray(2_500_000_000)
except MemoryError:  # the jail's address-space limit: only then is the function defined
"""
    + "\n".join("    " + line for line in RIGHT_DR.splitlines())
    + "\n"
)
IGNORE_ALARM = (
    RIGHT_RTG
    + """
import signal, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
_t = time.time()
while time.time() - _t < 200:
    pass
"""
)
FORK_BOMB = (
    RIGHT_RTG
    + """
import os
_n = 0
try:
    while _n < 10000:
        if os.fork() == 0:
            import time; time.sleep(30); os._exit(0)
        _n += 1
except OSError:
    pass
"""
)
FORGED_REPLY = (
    WRONG_DR
    + """
import json as _json, os as _os
for _fd in range(0, 40):
    for _id in range(1, 20):
        try:
            _line = _json.dumps({{"type": "reply", "id": _id, "value": 1.75}}) + "\\n"
            _os.write(_fd, _line.encode())
        except OSError:
            pass
"""
)
LOOKS_AT_FRAMES = (
    WRONG_DR
    + """
import sys, gc
_found = [o for o in gc.get_objects() if isinstance(o, dict) and "nonce" in o]
"""
)
ANSI_STATUS = (
    "def discounted_return(rewards, gamma):\n"
    "    raise ValueError('\\x1b[2K\\r\\x1b[32mPASSED 8.0 / 8.0\\x1b[0m')\n"
)
FORMULA = (
    "def discounted_return(rewards, gamma):\n"
    '    raise ValueError(\'=HYPERLINK("http://example.com", "x")\')\n'
)
IMPORTS_PGCHECK = "from pgcheck.checks.returns import reference as discounted_return  # noqa\n"
READ_PGCHECK_FILES = """
import glob
_src = [open(p).read() for p in glob.glob("{pgcheck}/checks/*.py")]
def discounted_return(rewards, gamma):
    return 0.0 if not _src else sum(gamma**t * float(r) for t, r in enumerate(rewards))
"""


# student -> (discounted_return cell, reward_to_go cell, trusted score expected out of 6)
CASES: dict[str, tuple[str, str, float]] = {
    "canary_first": (RIGHT_DR, RIGHT_RTG, 6),
    "typical_mistake": (RIGHT_DR, WRONG_RTG, 3),
    "monkeypatch_pgcheck": (MONKEYPATCH, WRONG_RTG, 0),
    "float_subclass": (LIAR, RIGHT_RTG, 3),
    "input_transformer": (TRANSFORMER, WRONG_RTG, 0),
    "redefined_hidden_test": (REDEFINE, WRONG_RTG, 0),
    "tampered_torch": (RIGHT_DR, TAMPER_TORCH, 3),
    "forged_result": (FORGE, WRONG_RTG, 0),
    "forged_reply": (FORGED_REPLY, WRONG_RTG, 0),
    "looks_at_frames": (LOOKS_AT_FRAMES, WRONG_RTG, 0),
    "loop_toplevel": (RIGHT_DR, LOOP_TOPLEVEL, 6),
    "loop_unstoppable": (RIGHT_DR, LOOP_UNSTOPPABLE, 3),
    "ignore_alarm": (RIGHT_DR, IGNORE_ALARM, 3),
    "loop_in_function": (RIGHT_DR, LOOP_IN_FUNCTION, 3),
    "exit_toplevel": (RIGHT_DR, EXIT_TOPLEVEL, 3),
    "exit_in_function": (RIGHT_DR, EXIT_IN_FUNCTION, 3),
    "kill_in_function": (RIGHT_DR, KILL_IN_FUNCTION, 3),
    "stderr_python": (RIGHT_DR, STDERR_PYTHON, 6),
    "stderr_fd": (RIGHT_DR, STDERR_FD, 6),
    "stdout_flood": (RIGHT_DR, FLOOD, 6),
    "write_pgcheck": (RIGHT_DR, WRITE_PGCHECK, 3),
    "overwrite_classmate": (RIGHT_DR, OVERWRITE_CLASSMATE, 3),
    "set_manual_score": (RIGHT_DR, SET_MANUAL_SCORE, 3),
    "copy_solution": (RIGHT_DR, COPY_SOLUTION, 3),
    "setsid_daemon": (WRONG_DR, DAEMON, 3),
    "stderr_of_others": (WRONG_DR, STDERR_OF_OTHERS, 3),
    "sleepers": (WRONG_DR, SLEEPERS, 3),
    "kill_grader": (WRONG_DR, KILL_GRADER, 3),
    "big_allocation": (BIG_ALLOCATION, WRONG_RTG, 3),
    "fork_bomb": (WRONG_DR, FORK_BOMB, 3),
    "ansi_status": (ANSI_STATUS, WRONG_RTG, 0),
    "formula": (FORMULA, WRONG_RTG, 0),
    "imports_pgcheck": (IMPORTS_PGCHECK, RIGHT_RTG, 3),
    "reads_pgcheck_files": (READ_PGCHECK_FILES, WRONG_RTG, 0),
    "canary_last": (RIGHT_DR, RIGHT_RTG, 6),
}
CANARIES = ("canary_first", "canary_last")


def _notebook(released: Any, dr: str, rtg: str) -> Any:
    import nbformat

    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    cell_by_id(nb, "discounted_return").source = dr
    cell_by_id(nb, "reward_to_go").source = rtg
    return nb


def _tree_hashes(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not any(path.is_relative_to(s) for s in skip):
                if "__pycache__" in path.parts:
                    continue
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _processes() -> dict[int, tuple[int, int, str]]:
    """{pid: (parent pid, uid, name)} of every process on this machine."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            found[int(status.parent.name)] = (
                int(text.split("PPid:")[1].split()[0]),
                int(text.split("Uid:")[1].split()[0]),
                text.split("Name:")[1].split()[0],
            )
        except (OSError, IndexError, ValueError):
            continue
    return found


def _jail_processes() -> list[str]:
    """Processes on this machine that run as a jail's uid and are left over: none may outlive
    grading.

    A grader that another test of this session runs at the same time (the pipelines grade
    in the pytest workers) has live jails below the session's processes; a process left by
    a finished grader has lost that parent and hangs below init, so it is counted.
    """
    session = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
    processes = _processes()

    def below_session(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            seen.add(pid)
            if pid == session:
                return True
            pid = processes.get(pid, (0, 0, ""))[0]
        return False

    return [
        name
        for pid, (_, uid, name) in processes.items()
        if BASE_UID <= uid < BASE_UID + 1000 and not below_session(pid)
    ]


def _run_all(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    course = released_course(root / "course_root", FIXTURE, tmp_path_factory)
    assert release_log(course)[0] == 0, release_log(course)
    released = read(course / "notebooks" / NAME / NOTEBOOK)
    fill = {"course": str(course), "pgcheck": str(REPO / "pgcheck")}

    def filled(code: str) -> str:
        templated = "{course}" in code or "{pgcheck}" in code or "{{" in code
        return code.format(**fill) if templated else code

    for student, (dr, rtg, _) in CASES.items():
        nb = _notebook(released, filled(dr), filled(rtg))
        submit(course, student, NAME, {NOTEBOOK: nb})
    # a symlink to the instructor's notebook is refused, not graded as the student's
    linked = course / "course" / "submitted" / "symlink_to_solution" / NAME
    linked.mkdir(parents=True)
    (linked / NOTEBOOK).symlink_to(course / "solutions" / NAME / NOTEBOOK)
    # an extra pgcheck/ folder next to the notebook cannot shadow anything
    wrong = _notebook(released, WRONG_DR, WRONG_RTG)
    shadow = submit(course, "shadow_package", NAME, {NOTEBOOK: wrong})
    (shadow / "pgcheck").mkdir()
    (shadow / "pgcheck" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    broken = submit(course, "not_a_notebook", NAME, {})
    (broken / NOTEBOOK).write_text("{ this is not json")
    outputs = (
        course / "course" / "gradebook.db",
        course / "course" / "trusted",
        course / "course" / "autograded",
        course / "course" / "gradebook.db-journal",
    )
    before = _tree_hashes(course, REPO / "pgcheck", skip=outputs)
    preload = [a for p in FIXTURE.preload for a in ("--preload", str(p))]
    started = time.monotonic()
    result = pgrade(
        [
            "autograde",
            NAME,
            "--jobs",
            "2",
            "--timeout",
            str(TIMEOUT),
            "--cell-timeout",
            str(CELL_TIMEOUT),
            *preload,
        ],
        course,
    )
    seconds = time.monotonic() - started
    csv_path = course / "course" / "trusted" / f"{NAME}.csv"
    csv_before = hashlib.sha256(csv_path.read_bytes()).hexdigest() if csv_path.is_file() else ""
    time.sleep(4)  # longer than the setsid daemon waits before it would rewrite the CSV
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    db = sqlite3.connect(course / "course" / "gradebook.db")
    manual = db.execute("select count(*) from grade where manual_score is not null").fetchone()[0]
    db.close()
    return {
        "trusted": gradebook_scores(course, NAME),
        "rows": rows,
        "csv_changed_later": hashlib.sha256(csv_path.read_bytes()).hexdigest() != csv_before,
        "changed": sorted(
            k
            for k, v in _tree_hashes(course, REPO / "pgcheck", skip=outputs).items()
            if before.get(k) != v
        )
        + sorted(set(before) - set(_tree_hashes(course, REPO / "pgcheck", skip=outputs))),
        "left": _jail_processes(),
        "manual_scores": manual,
        "stdout": result.stdout[-20000:],
        "stderr": result.stderr[-6000:],
        "returncode": result.returncode,
        "seconds": seconds,
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


def _score(graded: dict[str, Any], student: str) -> float:
    return total(graded["trusted"][student])[0]


def _rows(graded: dict[str, Any], student: str) -> dict[str, dict[str, str]]:
    return {r["grade_id"]: r for r in graded["rows"] if r["student"] == student}


EXTRA = {"symlink_to_solution", "shadow_package", "not_a_notebook"}


def test_the_run_finishes_and_grades_everyone(graded: dict[str, Any]) -> None:
    assert graded["returncode"] == 0, graded["stderr"]
    assert set(graded["trusted"]) == set(CASES) | EXTRA
    assert {r["student"] for r in graded["rows"]} == set(CASES) | EXTRA


@pytest.mark.parametrize("student", sorted(CASES))
def test_each_submission_earns_exactly_what_its_answers_earn(
    graded: dict[str, Any], student: str
) -> None:
    assert _score(graded, student) == CASES[student][2], _rows(graded, student)


@pytest.mark.parametrize("student", CANARIES)
def test_canary_classmates_keep_full_marks(graded: dict[str, Any], student: str) -> None:
    assert _score(graded, student) == 6, _rows(graded, student)


def test_no_file_outside_the_graders_outputs_changed(graded: dict[str, Any]) -> None:
    """Not pgcheck's source, not a classmate's submission, not solutions/."""
    assert graded["changed"] == []


def test_no_process_of_any_jail_is_left(graded: dict[str, Any]) -> None:
    assert graded["left"] == []
    assert _jail_processes() == []


def test_the_leftover_check_counts_an_orphan_but_not_a_live_graders_jail() -> None:
    """What ``_jail_processes`` tells apart: a process of a jail's uid whose grader is gone
    (reparented away from this session) from one below a running test of this session."""
    import signal
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("running a process as a jail's uid needs root")
    uid = BASE_UID + 999  # a slot no grader uses
    live = subprocess.Popen(["sleep", "30"], user=uid, group=uid)
    subprocess.run(["sh", "-c", "sleep 31 >/dev/null 2>&1 &"], user=uid, group=uid, check=True)
    try:
        deadline = time.monotonic() + 10
        while "sleep" not in _jail_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _jail_processes().count("sleep") == 1  # the orphan only, not the live child
    finally:
        live.kill()
        live.wait()
        for pid, (_, owner, _) in _processes().items():
            if owner == uid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "sleep" in _jail_processes() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_nothing_rewrites_the_trusted_table_after_the_run(graded: dict[str, Any]) -> None:
    assert graded["csv_changed_later"] is False


def test_manual_scores_cannot_be_set_by_a_submission(graded: dict[str, Any]) -> None:
    assert graded["manual_scores"] == 0
    assert _score(graded, "set_manual_score") == 3


def test_refused_and_broken_submissions_score_zero(graded: dict[str, Any]) -> None:
    rows = _rows(graded, "symlink_to_solution")
    assert _score(graded, "symlink_to_solution") == 0
    assert {r["status"] for r in rows.values()} == {"refused"}
    assert "outside the submission" in next(iter(rows.values()))["message"]
    assert _score(graded, "not_a_notebook") == 0
    assert _score(graded, "shadow_package") == 0


def test_the_reasons_say_what_happened(graded: dict[str, Any]) -> None:
    """Plain reasons for the instructor (a check of the mechanism, not only the score)."""
    row = _rows(graded, "imports_pgcheck")["discounted_return_hidden"]
    assert row["status"] == "imports-pgcheck" and "pgcheck" in row["message"]
    assert _rows(graded, "monkeypatch_pgcheck")["discounted_return_hidden"]["status"] == (
        "imports-pgcheck"
    )
    loop = _rows(graded, "ignore_alarm")["reward_to_go_hidden"]["message"]
    assert f"timed out after {CELL_TIMEOUT} s in answer cell reward_to_go" in loop
    assert "left out" in loop
    looping = _rows(graded, "loop_in_function")["reward_to_go_hidden"]
    assert "did not finish within" in looping["message"]
    # the check calls the function on five cases: they share the test's limit (each getting
    # it afresh took five times as long)
    assert float(looping["seconds"]) < 2 * TIMEOUT, looping
    # the visible test's call loops too: the same plain words, no class name of the grader's
    visible = _rows(graded, "loop_in_function")["reward_to_go_visible"]["message"]
    assert "did not finish within the time limit" in visible and "_" not in visible.split(":")[0]
    exited = _rows(graded, "exit_toplevel")["reward_to_go_hidden"]["message"]
    assert "ended" in exited and "answer cell reward_to_go" in exited and "left out" in exited
    copy = _rows(graded, "copy_solution")["reward_to_go_hidden"]["message"]
    assert "FileNotFoundError" in copy
    assert _rows(graded, "float_subclass")["discounted_return_hidden"]["status"] == "failed"


def test_student_strings_are_sanitised(graded: dict[str, Any]) -> None:
    assert "\x1b" not in graded["stdout"]
    for row in graded["rows"]:
        for value in row.values():
            assert "\x1b" not in value
            assert value[:1] not in ("=", "+", "-", "@"), row
    message = _rows(graded, "ansi_status")["discounted_return_hidden"]["message"]
    assert "PASSED 8.0 / 8.0" in message and "\x1b" not in message


def test_csv_and_terminal_sanitisers() -> None:
    from pgcheck.grading.gradebook import csv_cell, plain_text

    assert csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    for start in "=+-@":
        assert csv_cell(start + "1").startswith("'")
    assert csv_cell(3.0) == 3.0
    assert plain_text("\x1b[2K\r\x1b[32m8.0 / 8.0\x1b[0m\x07") == " 8.0 / 8.0"


def test_without_bwrap_the_grader_refuses_and_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgcheck.grading import jail
    from pgcheck.grading.pool import grade_notebook

    monkeypatch.setattr(jail.shutil, "which", lambda name: None)
    with pytest.raises(jail.SandboxUnavailable, match="apt-get install -y bubblewrap"):
        grade_notebook(FIXTURE.source_dir / NOTEBOOK, FIXTURE.released_dir / NOTEBOOK)


def test_a_jail_that_cannot_start_stops_the_run_instead_of_grading_zero(tmp_path: Path) -> None:
    """A jail that ends before its first cell (here: an address-space limit too small for
    torch) has run no submitted code: the run refuses and says so; nobody gets a zero."""
    from pgcheck.grading.grader import grade_one
    from pgcheck.grading.jail import Limits, SandboxUnavailable
    from pgcheck.grading.records import Options, Submission
    from pgcheck.grading.spec import parse_source

    path = FIXTURE.source_dir / NOTEBOOK  # a correct submission: the solution itself
    sub = Submission("canary", NAME, path, path.parent)
    options = Options(timeout=TIMEOUT, limits=Limits(address_space=64 * 2**20))
    with pytest.raises(SandboxUnavailable, match="before running any cell"):
        grade_one(sub, parse_source(path), options)


# ------------------------------------------------------------------ the real pseudo-loss
ESTIMATOR_IMPORT = "from pgcheck.diagnosis.estimators import full_return as pseudo_loss_tutorial\n"


@pytest.fixture(scope="module")
def pseudo_loss_graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """03_pseudo_loss: the answer key imported; and a lie that only knows public instances."""
    import nbformat

    from pgcheck.grading.pool import grade_notebook

    source = REPO / "solutions" / "03_pseudo_loss" / "03_pseudo_loss.ipynb"
    nb = read(source)
    cell_by_id(nb, "pseudo_loss_tutorial").source = ESTIMATOR_IMPORT
    path = tmp_path_factory.mktemp("pl") / "03_pseudo_loss.ipynb"
    nbformat.write(nb, path)
    grades = grade_notebook(source, path, jobs=1, timeout=30)
    return {g.grade_id: g for g in grades}


def test_importing_the_answer_key_scores_zero_with_a_reason(
    pseudo_loss_graded: dict[str, Any],
) -> None:
    hidden = pseudo_loss_graded["pseudo_loss_tutorial_hidden"]
    assert hidden.score == 0 and hidden.status == "imports-pgcheck"
    assert "answer key" in hidden.message
    assert pseudo_loss_graded["pseudo_loss_tutorial_visible"].score == 0
    # the other exercise of the same notebook is graded as usual
    assert pseudo_loss_graded["pseudo_loss_lecture_hidden"].score == 3


# ------------------------------------------------------------------ a lookup table of the key
def _lookup_answers() -> tuple[str, str]:
    """Answers that know only pgcheck's public, fixed inputs (seed=None): for each of them the
    reference output, precomputed from pgcheck's public source; garbage for any other input."""
    import numpy as np

    from pgcheck.checks import returns, trajectory_log_prob

    table = {
        repr(([round(r, 9) for r in rewards], round(gamma, 9))): float(
            returns.reference(np.array(rewards), gamma, "return")
        )
        for rewards, gamma in returns.return_cases()
    }
    dr = (
        f"_RETURNS = {table!r}\n\n"
        "def discounted_return(rewards, gamma):\n"
        "    key = repr(([round(float(r), 9) for r in rewards], round(float(gamma), 9)))\n"
        "    return _RETURNS.get(key, 0.0)\n"
    )
    table = {}
    for inst in trajectory_log_prob.trajectory_instances():
        a = inst["args"]
        key = (
            a["states"].tolist(),
            a["actions"].tolist(),
            [round(float(x), 9) for x in a["log_p0"]],
        )
        table[repr(key)] = float(trajectory_log_prob.reference(*a.values()))
    traj = (
        f"_LOG_P = {table!r}\n\n"
        "def log_prob_trajectory(states, actions, log_p0, log_pi, log_P):\n"
        "    key = ([int(s) for s in states], [int(a) for a in actions],\n"
        "           [round(float(x), 9) for x in log_p0])\n"
        "    return _LOG_P.get(repr(key), -1.0)\n"
    )
    return dr, traj


@pytest.fixture(scope="module")
def lookup_graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """02_trajectory_probability with lookup-table answers for two exercises, the solution's
    log π, and the pseudo-loss exercise left unanswered (cheap)."""
    import nbformat

    from pgcheck.grading.pool import grade_notebook

    source = REPO / "solutions" / "02_trajectory_probability" / "02_trajectory_probability.ipynb"
    nb = read(source)
    dr, traj = _lookup_answers()
    cell_by_id(nb, "discounted_return").source = dr
    cell_by_id(nb, "log_prob_trajectory").source = traj
    cell_by_id(
        nb, "mc_gradient_loss"
    ).source = (
        "def mc_gradient_loss(logits, actions, mask, returns):\n    raise NotImplementedError()\n"
    )
    path = tmp_path_factory.mktemp("lookup") / "02_trajectory_probability.ipynb"
    nbformat.write(nb, path)
    grades = grade_notebook(source, path, jobs=1, timeout=30)
    return {g.grade_id: g for g in grades}


def test_a_lookup_table_of_the_public_inputs_passes_feedback_but_scores_zero(
    lookup_graded: dict[str, Any],
) -> None:
    """The notebook's instant feedback uses the fixed inputs, so the table passes it; the
    grader draws fresh inputs from its own seed, so the table earns nothing."""
    import torch

    import pgcheck

    dr, traj = _lookup_answers()
    namespace: dict[str, Any] = {"torch": torch}
    exec(dr + "\n" + traj, namespace)  # noqa: S102 - the test's own answer code
    assert pgcheck.check_returns(namespace["discounted_return"], kind="return").passed
    assert pgcheck.check_trajectory_log_prob(namespace["log_prob_trajectory"]).passed
    assert not pgcheck.check_returns(namespace["discounted_return"], kind="return", seed=1).passed
    for grade_id in ("discounted_return_hidden", "log_prob_trajectory_hidden"):
        row = lookup_graded[grade_id]
        assert row.score == 0 and row.status == "failed", (grade_id, row.message)
        assert lookup_graded[grade_id.replace("_hidden", "_visible")].score == 0
    # the same run grades an honest answer as usual (the run itself works)
    assert lookup_graded["log_pi_hidden"].score == lookup_graded["log_pi_hidden"].points > 0
