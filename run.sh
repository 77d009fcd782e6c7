#!/usr/bin/env bash
# One entry point for the course.
#   bash run.sh lab    set everything up (once) and open the course in JupyterLab
#   bash run.sh test   set everything up (once) and run the whole test suite
# The environment lives in .venv/ at the repository root; setting up is skipped when it is
# already up to date, so both commands can be run again at any time.
set -euo pipefail
cd "$(dirname "$0")"

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

setup() {
  local stamp=.venv/.installed
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $(find_python)"
    "$(find_python)" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing the course and pgcheck into .venv (first run takes a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch is pinned to the CPU build 2.13.0; install it first so nothing pulls a CUDA build
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    touch "$stamp"
  fi
}

# tools installed in the environment (jupyter, nbgrader and the alembic it calls) come first
export PATH="$PWD/.venv/bin:$PATH"

case "${1:-lab}" in
  lab)
    setup
    extra=()
    if [ "$(id -u)" = 0 ]; then extra+=(--allow-root); fi  # e.g. inside a container
    exec .venv/bin/jupyter lab --notebook-dir=notebooks "${extra[@]}" "${@:2}"
    ;;
  test)
    setup
    exec .venv/bin/python -m pytest "${@:2}"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash run.sh [lab|test|setup] [extra arguments]" >&2
    exit 2
    ;;
esac
