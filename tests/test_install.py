"""The ways in: run.sh's torch route, Binder's configuration, environment.yml, Colab cells.

* run.sh takes the CPU-only torch wheel from the PyTorch CPU index when the index answers
  (checked against a local stand-in index), and falls back to the package registry within
  seconds when it does not;
* binder/ parses and names every package pyproject.toml names, with CPU torch and the
  course installed, and starts Lab with the course's settings; the README's badge opens
  notebooks/ of the repository pyproject names;
* environment.yml names every package pyproject.toml names (dependencies and all extras);
* the first code cell of every solution and student notebook installs what is missing
  (pgcheck from the repository URL pyproject names) and does nothing where all is there.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]


def _requirements(names: list[str]) -> dict[str, Requirement]:
    """pyproject's requirements (self-references such as pgcheck[course] left out)."""
    reqs = [Requirement(r) for r in names]
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "pgcheck"}


CORE = _requirements(PYPROJECT["project"]["dependencies"])
COURSE = _requirements(PYPROJECT["project"]["optional-dependencies"]["course"])
ALL = {
    **CORE,
    **{
        name: req
        for extra in PYPROJECT["project"]["optional-dependencies"].values()
        for name, req in _requirements(extra).items()
    },
}


def _same_versions(ours: Requirement, theirs: Requirement) -> bool:
    """True when both admit the same versions among a few probes around the bounds."""
    probes = {"0.1", "1.0", "2.0", "99"}
    for spec in (*ours.specifier, *theirs.specifier):
        base = spec.version.split("+")[0]
        parts = [int(p) for p in base.split(".") if p.isdigit()]
        probes.add(base)
        if parts:
            probes.add(".".join(map(str, [*parts[:-1], parts[-1] + 1])))
            if parts[-1] > 0:
                probes.add(".".join(map(str, [*parts[:-1], parts[-1] - 1])))
    return all(
        ours.specifier.contains(p, prereleases=True)
        == theirs.specifier.contains(p, prereleases=True)
        for p in probes
    )


# ------------------------------------------------------------------ run.sh: torch route
class _Index(http.server.BaseHTTPRequestHandler):
    """A stand-in for the CPU wheel index: answers /torch/ like a simple index page."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<html><body><a href='torch-2.13.0+cpu.whl'>torch</a></body></html>"
        self.send_response(200 if self.path.rstrip("/").endswith("/torch") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def local_index() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    finally:
        server.shutdown()
        server.server_close()


def _route(index: str) -> tuple[str, float]:
    env = dict(os.environ, PGC_TORCH_INDEX=index)
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(REPO / "run.sh"), "torch-route"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip(), time.monotonic() - start


def _has_cuda() -> bool:
    return (
        bool(subprocess.run(["bash", "-c", "command -v nvidia-smi"], capture_output=True).stdout)
        or Path("/proc/driver/nvidia/version").exists()
    )


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the CPU index route is for Linux")
def test_run_sh_takes_the_cpu_index_when_it_answers(local_index: str) -> None:
    route, _ = _route(local_index)
    if _has_cuda():
        assert route == "registry"
    else:
        assert route == f"cpu-index {local_index}"


def test_run_sh_falls_back_to_the_registry_quickly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/whl/cpu"
    route, seconds = _route(closed)
    assert route == "registry" and seconds < 20
    assert _route("none")[0] == "registry"


def test_run_sh_pins_the_same_torch_as_pyproject() -> None:
    text = (REPO / "run.sh").read_text()
    pin = re.search(r'TORCH_PIN="([^"]+)"', text)
    assert pin and Requirement(pin.group(1)).specifier == CORE["torch"].specifier
    assert subprocess.run(["bash", "-n", str(REPO / "run.sh")]).returncode == 0


# ------------------------------------------------------------------ Binder
def _binder_requirements() -> tuple[list[str], dict[str, Requirement]]:
    options, reqs = [], {}
    for line in (REPO / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        req = Requirement(line)
        reqs[canonicalize_name(req.name)] = req
    return options, reqs


def test_binder_names_every_package_of_pyproject_with_cpu_torch() -> None:
    options, reqs = _binder_requirements()
    for name, req in {**CORE, **COURSE}.items():
        assert name in reqs, f"binder/requirements.txt lacks {name}"
        if name != "torch":
            assert _same_versions(reqs[name], req), (name, str(reqs[name]), str(req))
    torch = reqs["torch"]
    assert any(s.version.endswith("+cpu") for s in torch.specifier), torch
    assert all(CORE["torch"].specifier.contains(s.version) for s in torch.specifier)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options
    runtime = (REPO / "binder" / "runtime.txt").read_text().strip()
    assert runtime == "python-3.11"


@pytest.mark.parametrize("script", ["postBuild", "start"])
def test_binder_scripts_parse_and_are_executable(script: str) -> None:
    path = REPO / "binder" / script
    assert os.access(path, os.X_OK), f"binder/{script} is not executable"
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text()
    if script == "postBuild":  # the course itself is installed, keeping the CPU torch
        assert re.search(r"pip install .*--no-deps -e \.", text)
    else:  # Lab gets the course's settings, then Binder's command runs
        assert "jupyter-config" in text and 'exec "$@"' in text


def test_binder_start_sets_the_course_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / "binder" / "start"), "bash", "-c", "echo $JUPYTER_CONFIG_PATH"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "JUPYTER_CONFIG_PATH"},
    )
    first = result.stdout.strip().split(os.pathsep)[0]
    assert Path(first) == REPO / "jupyter-config"
    page = json.loads((REPO / "jupyter-config" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyter/nbgrader:assignment-list"] is True


def test_readme_has_a_binder_badge_opening_notebooks() -> None:
    owner_repo = REPOSITORY.removeprefix("https://github.com/").strip("/")
    readme = (REPO / "README.md").read_text()
    badge = re.search(r"\(https://mybinder\.org/v2/gh/([^)\s]+)\)", readme)
    assert badge, "no Binder badge in README.md"
    target = badge.group(1)
    assert target.startswith(f"{owner_repo}/HEAD?"), target
    assert "urlpath=lab/tree/notebooks" in target


# ------------------------------------------------------------------ environment.yml
def test_environment_yml_names_every_package_of_pyproject() -> None:
    data = yaml.safe_load((REPO / "environment.yml").read_text())
    found: dict[str, str] = {}
    pip_lines: list[str] = []
    for dep in data["dependencies"]:
        if isinstance(dep, dict):
            pip_lines += dep["pip"]
        else:
            found[canonicalize_name(re.split(r"[<>=!~ ]", dep, maxsplit=1)[0])] = dep
    for line in pip_lines:
        if not line.startswith("-"):
            req = Requirement(line)
            found[canonicalize_name(req.name)] = line
    assert "python=3.11" in data["dependencies"]
    assert "-e ." in pip_lines
    for name, req in ALL.items():
        assert name in found, f"environment.yml lacks {name}"
        spec = found[name]
        ours = Requirement(spec.replace("=", "==", 1) if re.search(r"[^<>=!]=[^=]", spec) else spec)
        assert _same_versions(ours, req), (name, spec, str(req))


# ------------------------------------------------------------------ Colab cells
def _notebooks() -> list[Path]:
    return sorted((REPO / "solutions").glob("*/*.ipynb")) + sorted(
        (REPO / "notebooks").glob("*/*.ipynb")
    )


def _install_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert first.get("id") == "colab-install", f"{path}: the first code cell is not the install"
    return "".join(first["source"])


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_first_cell_installs_what_is_missing_and_nothing_else(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _install_cell(path)
    assert f'REPOSITORY = "{REPOSITORY}"' in source
    calls: list[list[str]] = []

    def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    exec(compile(source, str(path), "exec"), {})  # everything is installed here: no-op
    assert calls == []

    real_find_spec = importlib.util.find_spec
    gone = {"pgcheck", "gymnasium"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in gone else real_find_spec(name, *a),
    )
    exec(compile(source, str(path), "exec"), {})
    assert len(calls) == 2, calls
    assert calls[0][-1] == "gymnasium>=1.0,<2" and "torch" not in calls[0]
    assert calls[1][-1] == f"git+{REPOSITORY}" and "--no-deps" in calls[1]
