#!/usr/bin/env bash
# One entry point for the course.
#   bash run.sh lab    set everything up (once) and open the course in JupyterLab
#   bash run.sh test   set everything up (once) and run the whole test suite (all cores)
#   bash run.sh setup  only set up (create .venv/ and install the course)
# The environment lives in .venv/ at the repository root; setting up is skipped when it is
# already up to date, so every command can be run again at any time.
#
# PyTorch: on Linux without an NVIDIA driver the CPU-only wheel (about 190 MB) comes from the
# PyTorch project's CPU wheel index when that index answers within a few seconds; otherwise
# (macOS, a machine with CUDA, or the index unreachable) `torch==2.13.0` comes from the
# package registry, which on Linux x86_64 is the CUDA build plus its nvidia-* packages
# (several GB). Set PGC_TORCH_INDEX to another index URL, or to "none" to skip the CPU index.
set -euo pipefail
cd "$(dirname "$0")"

TORCH_PIN="torch==2.13.0"
TORCH_CPU_INDEX="${PGC_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

find_python() {
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "run.sh: Python 3.11 is required (python3.11 not found)" >&2
  return 1
}

has_cuda() {
  command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia/version ]
}

# true when the CPU wheel index answers within 5 s (one attempt, no retries)
cpu_index_reachable() {
  [ "$TORCH_CPU_INDEX" != none ] || return 1
  local python=.venv/bin/python
  [ -x "$python" ] || python="$(find_python)"
  "$python" - "$TORCH_CPU_INDEX" <<'EOF' 2>/dev/null
import sys
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5).close()
except Exception:
    sys.exit(1)
EOF
}

# which route install_torch takes here: "cpu-index URL" or "registry" (installs nothing)
torch_route() {
  if [ "$(uname -s)" = Linux ] && ! has_cuda && cpu_index_reachable; then
    echo "cpu-index $TORCH_CPU_INDEX"
  else
    echo "registry"
  fi
}

install_torch() {
  if .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '2.13.0' else 1)" 2>/dev/null; then
    return 0  # already there
  fi
  if [ "$(uname -s)" = Linux ] && ! has_cuda; then
    if cpu_index_reachable; then
      echo "==> torch: CPU-only wheel from $TORCH_CPU_INDEX"
      if .venv/bin/python -m pip install --quiet --timeout 30 --retries 1 \
           --index-url "$TORCH_CPU_INDEX" "$TORCH_PIN"; then
        return 0
      fi
      echo "==> torch: the CPU wheel index failed; falling back to the package registry"
    else
      echo "==> torch: the CPU wheel index is not reachable; using the package registry"
    fi
  fi
  echo "==> torch: $TORCH_PIN from the package registry (on Linux x86_64: the CUDA build, several GB)"
  .venv/bin/python -m pip install --quiet "$TORCH_PIN"
}

setup() {
  local stamp=.venv/.installed
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $(find_python)"
    "$(find_python)" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing the course and pgcheck into .venv (first run takes a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    install_torch  # first, so that nothing else pulls another build of torch
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    touch "$stamp"
  fi
}

# the browser test drives Debian's Chromium; install it when we can (root with apt-get)
ensure_chromium() {
  local found=""
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then found=$candidate; break; fi
  done
  if [ -z "$found" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's chromium for the browser test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      echo "==> chromium could not be installed: the browser test will be skipped"
    fi
  fi
}

# pytest-xdist workers for the whole suite: the cores plus one
test_workers() {
  echo $(( $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) + 1 ))
}

# tools installed in the environment (jupyter, nbgrader and the alembic it calls) come first
export PATH="$PWD/.venv/bin:$PATH"
# the course's Jupyter settings (jupyter-config/): no nbgrader Assignments tab for learners
export JUPYTER_CONFIG_PATH="$PWD/jupyter-config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"

case "${1:-lab}" in
  lab)
    setup
    extra=(--notebook-dir=notebooks)
    for arg in "${@:2}"; do  # another folder given: use it instead (the browser test does)
      case "$arg" in --notebook-dir=*|--ServerApp.root_dir=*) extra=() ;; esac
    done
    if [ "$(id -u)" = 0 ]; then extra+=(--allow-root); fi  # e.g. inside a container
    exec .venv/bin/jupyter lab "${extra[@]}" "${@:2}"
    ;;
  test)
    setup
    ensure_chromium
    if [ $# -le 1 ]; then
      # no arguments: the whole suite, each assignment's pipeline on one worker, with one
      # worker more than cores (it fills the waits of kernel start-ups and time limits)
      exec .venv/bin/python -m pytest -q -n "$(test_workers)" --dist loadgroup
    fi
    exec .venv/bin/python -m pytest "${@:2}"  # arguments given: exactly what was asked
    ;;
  setup)
    setup
    ;;
  torch-route)  # for tests/test_install.py: the torch route setup would take, nothing installed
    torch_route
    ;;
  workers)  # for .ci/run: the number of pytest workers `bash run.sh test` starts here
    test_workers
    ;;
  *)
    echo "usage: bash run.sh [lab|test|setup] [extra arguments]" >&2
    exit 2
    ;;
esac
