"""The jail every execution of student code happens in (bubblewrap on Linux).

``bwrap`` is started by the grader (root in the course container) with new mount, PID,
network, IPC, UTS and cgroup namespaces and ``--die-with-parent``. Its root is empty except:
read-only binds of ``/usr``, ``/lib*``, ``/bin``, the interpreter's prefix and the venv
(torch, numpy), the jailed child script alone (not the pgcheck package), ``/proc`` of the new
PID namespace, a minimal ``/dev``, and a size-capped tmpfs ``/submission`` holding only this
student's notebook copy. No ``solutions/``, no course directory, no gradebook, no network.

The child drops to an unprivileged uid of its own (one per worker slot, so the process limit
counts only that jail) before reading the job. Resource limits (address space, CPU seconds,
processes, file size, open files) are set before ``bwrap`` starts and are inherited; wall
limits are enforced from outside (:class:`Jail` kills the whole jail: when ``bwrap`` -- PID 1
of the namespace -- dies, every process in it dies).

Without bwrap the grader refuses to grade (:func:`require_sandbox`); ``--no-sandbox`` runs
the same child as a plain ``python -I`` process with the same limits, loudly.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHILD_SCRIPT = Path(__file__).with_name("child.py")
JAIL_CHILD = "/opt/pgcheck-jail/child.py"
JAIL_WORK = "/submission"

#: first uid of the jails (one per worker slot): no passwd entry, owns nothing on the host
BASE_UID = 61000

#: line length and total bytes accepted from a child before it is a flood
LINE_CAP = 8_000_000
STDERR_CAP = 4_000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one jail (rlimits) and its tmpfs size."""

    address_space: int = 2 * 2**30
    cpu_seconds: int = 600
    processes: int = 64
    file_size: int = 16 * 2**20
    open_files: int = 256
    tmpfs_bytes: int = 64 * 2**20

    def apply(self) -> None:
        """Set the rlimits on the calling process (run just before exec)."""
        for name, value in (
            ("RLIMIT_AS", self.address_space),
            ("RLIMIT_CPU", self.cpu_seconds),
            ("RLIMIT_NPROC", self.processes),
            ("RLIMIT_FSIZE", self.file_size),
            ("RLIMIT_NOFILE", self.open_files),
            ("RLIMIT_CORE", 0),
        ):
            resource.setrlimit(getattr(resource, name), (value, value))


class SandboxUnavailable(RuntimeError):
    """The jail cannot start here; the message says why and how to fix it."""


@dataclass
class JailConfig:
    """How to start jails: the interpreter, whether to use bwrap, the limits."""

    python: str = field(default_factory=lambda: sys.executable)
    sandbox: bool = True
    limits: Limits = field(default_factory=Limits)


def _ro_paths(python: str) -> list[str]:
    """Host paths bound read-only into the jail: system libraries, interpreter, venv."""
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache"]
    exe = Path(python)
    real = exe.resolve()
    prefixes = {sys.base_prefix, sys.prefix, str(real.parent.parent), str(exe.parent.parent)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        prefixes.add(str(Path(sysconfig.get_paths()[key]).resolve()))
    paths.extend(sorted(prefixes))
    return [p for p in paths if os.path.exists(p)]


def _hidden_paths() -> list[str]:
    """Paths inside the bound trees that must not be visible (an installed pgcheck)."""
    hidden = []
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        for name in ("pgcheck", "solutions"):
            if (site / name).is_dir():
                hidden.append(str(site / name))
    return sorted(set(hidden))


def bwrap_argv(config: JailConfig, notebook_fd: int | None, notebook_name: str) -> list[str]:
    """The ``bwrap`` command line of one jail (see the module docstring)."""
    argv = [
        "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "jail",
    ]
    # /tmp first: a private tmpfs, under which the read-only trees below may live (a clone or a
    # venv under /tmp is bound on top of it, not hidden by it)
    argv += ["--tmpfs", "/tmp"]
    made: set[str] = set()
    for path in _ro_paths(config.python):
        for parent in reversed(Path(path).parents[:-1]):  # readable for the jail's uid
            if str(parent) not in made:
                made.add(str(parent))
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", path, path]
    for path in _hidden_paths():
        argv += ["--tmpfs", path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "0755", "--dir", str(Path(JAIL_CHILD).parent)]
    argv += ["--ro-bind", str(CHILD_SCRIPT), JAIL_CHILD]
    argv += ["--size", str(config.limits.tmpfs_bytes), "--perms", "0777", "--tmpfs", JAIL_WORK]
    if notebook_fd is not None:
        argv += ["--perms", "0444", "--file", str(notebook_fd), f"{JAIL_WORK}/{notebook_name}"]
    argv += ["--chdir", JAIL_WORK, "--clearenv"]
    for key, value in _child_env(JAIL_WORK).items():
        argv += ["--setenv", key, value]
    return argv


def _child_env(home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": "/tmp",
        "MPLBACKEND": "Agg",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def probe_sandbox() -> str | None:
    """None if jails can be started here (Linux, ``bwrap`` installed, run as root), else why
    not. Whether a jail then really starts an interpreter with torch is checked by every jail
    itself: one that ends before its first cell, when no submitted code has run yet, stops
    the grading run with :class:`SandboxUnavailable` (see ``protocol.start_session``)."""
    if not sys.platform.startswith("linux"):
        return "the sandbox needs Linux (bubblewrap); grade on Linux or in a container"
    if shutil.which("bwrap") is None:
        return (
            "bubblewrap (`bwrap`) is not installed: `apt-get install -y bubblewrap` "
            "(Debian/Ubuntu) or `dnf install bubblewrap`"
        )
    if os.geteuid() != 0:
        return (
            "the grader must run as root (e.g. in the course container) so that each jail "
            "can run the student's code as its own unprivileged uid"
        )
    return None


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailable` (why and how to fix it) if jails cannot start."""
    problem = probe_sandbox()
    if problem is not None:
        raise SandboxUnavailable(
            f"refusing to grade: {problem}. Student code must run in the sandbox; "
            "`--no-sandbox` grades without it (unsafe: only for your own test notebooks)."
        )


class JailDied(Exception):  # noqa: N818
    """The jail ended, timed out, flooded, or broke the protocol; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Jail:
    """One running jail with a line protocol to the child inside it."""

    def __init__(
        self,
        config: JailConfig,
        *,
        slot: int = 0,
        notebook: bytes | None = None,
        notebook_name: str = "submission.ipynb",
    ) -> None:
        self.config = config
        # the jail's own uid; without the sandbox the interpreter may live under /root,
        # which other uids cannot reach, so the unsafe mode keeps ours
        uid = BASE_UID + slot if os.geteuid() == 0 and config.sandbox else 0
        fds: tuple[int, ...] = ()
        fd = None
        if config.sandbox and notebook is not None:
            fd = os.memfd_create("notebook")
            os.write(fd, notebook)
            os.lseek(fd, 0, os.SEEK_SET)
            fds = (fd,)
        if config.sandbox:
            argv = bwrap_argv(config, fd, notebook_name)
            argv += ["--", config.python, "-I", JAIL_CHILD, str(uid)]
            cwd, env = "/", {}
        else:
            self._scratch = Path(tempfile.mkdtemp(prefix="pgcheck-nosandbox-"))
            argv = [config.python, "-I", str(CHILD_SCRIPT), str(uid)]
            cwd, env = str(self._scratch), _child_env(str(self._scratch))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            pass_fds=fds,
            preexec_fn=config.limits.apply,
            start_new_session=True,
            close_fds=True,
        )
        if fd is not None:
            os.close(fd)
        self._buffer = b""
        self._stderr = b""
        self.dead: str | None = None

    # ------------------------------------------------------------------ lines
    def send(self, obj: dict[str, Any]) -> None:
        """Send one request line; a closed pipe kills the jail."""
        if self.dead:
            raise JailDied(self.dead)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(obj, allow_nan=True) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill("the sandboxed process ended")
            raise JailDied(self.dead or "ended") from None

    def receive(self, deadline: float, what: str) -> dict[str, Any]:
        """The next reply object, or :class:`JailDied` at ``deadline`` (monotonic seconds)."""
        if self.dead:
            raise JailDied(self.dead)
        out = self.proc.stdout
        err = self.proc.stderr
        assert out is not None and err is not None
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill(f"timed out {what}")
                raise JailDied(self.dead or "timeout")
            ready, _, _ = select.select([out, err], [], [], left)
            if err in ready:
                chunk = os.read(err.fileno(), 65536)
                self._stderr += chunk[: max(STDERR_CAP - len(self._stderr), 0)]
            if out in ready:
                chunk = os.read(out.fileno(), 1 << 20)
                if not chunk:
                    code = self.proc.poll()
                    self.kill(f"the sandboxed process ended {what} (exit code {code})")
                    raise JailDied(self.dead or "ended")
                self._buffer += chunk
                if len(self._buffer) > LINE_CAP:
                    self.kill(f"wrote too much output {what}")
                    raise JailDied(self.dead or "flood")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            self.kill(f"sent something that is not a reply {what}")
            raise JailDied(self.dead or "bad output") from None
        if not isinstance(obj, dict):
            self.kill(f"sent something that is not a reply {what}")
            raise JailDied(self.dead or "bad output")
        return obj

    @property
    def stderr_tail(self) -> str:
        """The last lines the jail wrote to stderr (capped), on one line."""
        text = self._stderr.decode("utf-8", "replace").strip()
        return " ".join(text.splitlines()[-3:])[-300:]

    def kill(self, reason: str = "stopped") -> None:
        """End the jail and everything in it (idempotent)."""
        if self.dead is None:
            self.dead = reason
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if not self.config.sandbox and hasattr(self, "_scratch"):
            shutil.rmtree(self._scratch, ignore_errors=True)

    def close(self) -> None:
        """Ask the child to quit, then make sure the whole jail is gone."""
        if self.dead is None:
            try:
                self.send({"op": "quit"})
            except JailDied:
                pass
        self.kill("closed")
