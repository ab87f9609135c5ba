#!/usr/bin/env bash
# The test command: lint, type-check, the deployment checks (checkov on infra/, the real Functions
# worker indexing the app), then the suite (which starts its own Azurite and fake).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
echo "==> ruff";   .venv/bin/ruff check .
echo "==> mypy";   .venv/bin/mypy shared function_app.py tests scripts bench
echo "==> deployment checks"; bash scripts/checks.sh
# Each worker starts its own Azurite and fake; PYTEST_WORKERS=0 runs in one process.
echo "==> pytest"; .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-3}" "$@"
