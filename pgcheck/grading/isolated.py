"""Running one grading job in a separate, isolated ``python -I`` process.

The child (:mod:`pgcheck.grading._child`) gets a fresh interpreter (``-I``: no user site,
no ``PYTHON*`` variables, no current directory on ``sys.path``), a minimal environment, its
own session (so its whole process group can be killed), resource limits, a private working
directory, and -- when the grader runs as root -- the uid of an unprivileged user. The parent
keeps at most a few megabytes of its output, kills it at the time limit, and accepts only one
line ``<nonce><json>`` from it. Anything on stderr, a crash, a flood or a time-out is a
failed job, never an exception in the parent.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

#: bytes of stdout / stderr kept from a child; more is a flood and kills it
STDOUT_CAP = 4_000_000
STDERR_CAP = 4_000

#: resource limits applied by the child to itself before any learner code runs
DEFAULT_LIMITS = {"RLIMIT_FSIZE": 64 * 2**20, "RLIMIT_CORE": 0}


@dataclass
class ChildOutcome:
    """What came back from one child.

    ``status`` is ``"ok"`` (a result line was received), ``"timeout"``, ``"crashed"`` (exited
    without a result), ``"stderr"`` (wrote to its stderr), ``"flood"`` (too much output) or
    ``"bad-output"`` (a result line that is not a JSON object, or more than one).
    """

    status: str
    payload: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    detail: str = ""


def _reader(
    stream: IO[bytes], cap: int, sink: bytearray, over: threading.Event, on_over: Any
) -> None:
    while True:
        try:
            chunk = stream.read1(65536)  # type: ignore[attr-defined]
        except (OSError, ValueError):
            break
        if not chunk:
            break
        if len(sink) + len(chunk) > cap:
            sink.extend(chunk[: max(cap - len(sink), 0)])
            if not over.is_set():
                over.set()
                on_over()
        else:
            sink.extend(chunk)


_USER_CACHE: dict[str, tuple[int, int] | None] = {}


def child_user(python: str | None = None) -> tuple[int, int] | None:
    """(uid, gid) the children run as: ``nobody`` when we are root and it can run Python.

    ``PGCHECK_GRADER_CHILD_USER`` names another user ("" disables the switch). Returns None
    (children keep our uid) when we are not root or the user cannot start the interpreter
    (e.g. it lives under a private home directory).
    """
    python = python or sys.executable
    if python in _USER_CACHE:
        return _USER_CACHE[python]
    user: tuple[int, int] | None = None
    name = os.environ.get("PGCHECK_GRADER_CHILD_USER", "nobody")
    if os.geteuid() == 0 and name:
        try:
            entry = pwd.getpwnam(name)
            probe = subprocess.run(
                [python, "-I", "-c", "import pgcheck.grading._child"],
                cwd="/",
                user=entry.pw_uid,
                group=entry.pw_gid,
                extra_groups=[],
                capture_output=True,
                timeout=60,
                env={"PATH": os.environ.get("PATH", "")},
            )
            if probe.returncode == 0 and not probe.stderr:
                user = (entry.pw_uid, entry.pw_gid)
        except (KeyError, OSError, subprocess.SubprocessError):
            user = None
    _USER_CACHE[python] = user
    return user


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


CELLS_DONE = "CELLS-DONE"


def run_child(
    job: dict[str, Any], *, cells_limit: float, tasks_limit: float, python: str | None = None
) -> ChildOutcome:
    """Run ``job`` in an isolated child and return what it sent back.

    Args:
        job: the child's job (steps, tasks, preload, sys_path, cell_timeout, task_timeout);
            a ``nonce`` and the resource limits are added here.
        cells_limit: wall-clock seconds from the start until the child reports that the
            answer cells have run (interpreter start-up included).
        tasks_limit: wall-clock seconds from then until the child exits.
        python: the interpreter (default: this one).
    """
    start = time.monotonic()
    nonce = secrets.token_hex(16)
    user = child_user(python)
    workdir = tempfile.mkdtemp(prefix="pgcheck-child-")
    try:
        if user is not None:
            os.chown(workdir, *user)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": workdir,
            "TMPDIR": workdir,
            "MPLCONFIGDIR": workdir,
            "MPLBACKEND": "Agg",
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        payload = dict(job, nonce=nonce, limits=DEFAULT_LIMITS)
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user[0], group=user[1], extra_groups=[])
        proc = subprocess.Popen(
            [python or sys.executable, "-I", "-m", "pgcheck.grading._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            close_fds=True,
            **kwargs,
        )
        out, err = bytearray(), bytearray()
        out_over, err_over = threading.Event(), threading.Event()
        readers = [
            threading.Thread(
                target=_reader,
                args=(proc.stdout, STDOUT_CAP, out, out_over, lambda: _kill_group(proc)),
                daemon=True,
            ),
            threading.Thread(
                target=_reader,
                args=(proc.stderr, STDERR_CAP, err, err_over, lambda: _kill_group(proc)),
                daemon=True,
            ),
        ]
        for reader in readers:
            reader.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(payload).encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        marker = (nonce + CELLS_DONE).encode()
        deadline = start + cells_limit
        cells_done = False
        timed_out = False
        while proc.poll() is None:
            now = time.monotonic()
            if not cells_done and marker in out:
                cells_done = True
                deadline = now + tasks_limit
            if now > deadline:
                timed_out = True
                break
            time.sleep(0.05)
        _kill_group(proc)
        proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        seconds = time.monotonic() - start
        if timed_out:
            phase = "the answer cells" if not cells_done else "the tests"
            return ChildOutcome(
                "timeout", seconds=seconds, detail=f"{phase} did not finish in time"
            )
        if out_over.is_set() or err_over.is_set():
            return ChildOutcome("flood", seconds=seconds, detail="wrote too much output")
        if err:
            return ChildOutcome(
                "stderr",
                seconds=seconds,
                detail="wrote to stderr: " + bytes(err[:200]).decode("utf-8", "replace"),
            )
        lines = [
            line
            for line in bytes(out).decode("utf-8", "replace").splitlines()
            if line.startswith(nonce) and not line.startswith(nonce + CELLS_DONE)
        ]
        if not lines:
            return ChildOutcome(
                "crashed",
                seconds=seconds,
                detail=f"exited (code {proc.returncode}) without a result",
            )
        if len(lines) > 1:
            return ChildOutcome("bad-output", seconds=seconds, detail="more than one result")
        try:
            result = json.loads(lines[0][len(nonce) :])
        except ValueError:
            return ChildOutcome("bad-output", seconds=seconds, detail="result is not JSON")
        if not isinstance(result, dict):
            return ChildOutcome("bad-output", seconds=seconds, detail="result is not an object")
        return ChildOutcome("ok", payload=result, seconds=seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
