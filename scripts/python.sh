# Sourced by setup.sh and checks.sh: the one interpreter the project runs on, found the same way
# everywhere. The app runs on Python 3.13 in Azure (infra/modules/functionapp.bicep), and the
# virtual environments, the tests, the real Functions worker and the checks all use 3.13 too.
#   PYTHON=/path/to/python3.13   use that interpreter
#   otherwise                    python3.13 on PATH; with pyenv, the newest 3.13 it has installed
PROJECT_PYTHON=3.13
PYTHON="${PYTHON:-python$PROJECT_PYTHON}"
# pyenv's shims run the version pyenv selects, which may not be a 3.13: name one.
project_pyenv_version="${PYENV_VERSION:-}"
if [ -z "$project_pyenv_version" ] && command -v pyenv >/dev/null 2>&1; then
  project_pyenv_version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -n 1 || true)"
fi

# run_python ARGS... -- the project's interpreter.
run_python() {
  if [ -n "$project_pyenv_version" ]; then PYENV_VERSION="$project_pyenv_version" "$PYTHON" "$@"; else "$PYTHON" "$@"; fi
}

# python_minor EXECUTABLE -- prints "3.13" for a 3.13 interpreter, nothing if it does not run.
python_minor() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# require_python -- stops with one line when the project's interpreter is missing or not 3.13.
require_python() {
  local found
  found="$(run_python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  if [ -z "$found" ]; then
    echo "Python $PROJECT_PYTHON not found ($PYTHON): install it (README: Prerequisites) or set PYTHON=/path/to/python$PROJECT_PYTHON" >&2
    exit 1
  fi
  if [ "$found" != "$PROJECT_PYTHON" ]; then
    echo "$PYTHON is Python $found; the project runs on Python $PROJECT_PYTHON (README: Prerequisites): set PYTHON=/path/to/python$PROJECT_PYTHON" >&2
    exit 1
  fi
}

# make_project_venv DIR -- DIR as a virtual environment of the project's interpreter; one made with
# another version (an older checkout's 3.11) is removed and made again.
make_project_venv() {
  if [ -e "$1" ] && [ "$(python_minor "$1/bin/python")" != "$PROJECT_PYTHON" ]; then
    echo "==> $1 was made with Python $(python_minor "$1/bin/python" | sed 's/^$/(not runnable)/'): making it again with $PROJECT_PYTHON"
    rm -rf "$1"
  fi
  if [ ! -x "$1/bin/python" ]; then
    require_python
    echo "==> creating $1 with $(run_python --version 2>&1)"
    run_python -m venv "$1"
  fi
}
