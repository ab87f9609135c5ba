#!/usr/bin/env bash
# Idempotent set-up: a Python virtual environment with the pinned dependencies, and Azurite from npm.
# Sourced by the other scripts; fast when everything is already in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Python 3.13 for everything (scripts/python.sh finds it; PYTHON=/path/to/python3.13 overrides).
source scripts/python.sh
make_project_venv .venv
stamp=.venv/.requirements-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
  echo "==> installing Python dependencies"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  touch "$stamp"
fi
if [ ! -x node_modules/.bin/azurite ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is required for Azurite: install Node.js 22 LTS (README: Prerequisites)" >&2; exit 1; }
  echo "==> installing Azurite"
  npm install --no-audit --no-fund --loglevel=error
fi
