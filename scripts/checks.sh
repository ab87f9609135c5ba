#!/usr/bin/env bash
# Deployment checks, each in its own environment (created on first run, reused after):
#   1. checkov scans infra/ (Bicep): no failed check, and every skip carries its reason.
#   2. The app settings infra/ writes are the ones shared/settings.py reads, in a form it accepts;
#      infra/ creates the queues the app uses and grants, queue by queue, the role each needs;
#      host.json, infra/ and docs/deploy.md agree on telemetry, concurrency, Easy Auth, the webhook's
#      Key Vault, download links and alerts (tests/infra/operability.py).
#   3. The real Azure Functions Python worker (Python 3.13) indexes function_app.py as the host
#      makes it do, with those settings and others, and reports the expected functions/bindings.
# Exits non-zero if any of them fails; every step runs either way, so one run shows everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECKS_PYTHON="${CHECKS_PYTHON:-python3.11}"
WORKER_PYTHON="${WORKER_PYTHON:-python3.13}"
# pyenv's shims need to be told which 3.13 to run; the newest installed one is used.
if [ -z "${PYENV_VERSION:-}" ] && command -v pyenv >/dev/null 2>&1; then
  worker_pyenv_version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -n 1 || true)"
else
  worker_pyenv_version="${PYENV_VERSION:-}"
fi
REPORTS=.checks
PIP_QUIET=(--quiet --disable-pip-version-check)

# make_venv DIR PYTHON [PYENV_VERSION] -- an environment that git, ruff and pytest leave alone.
make_venv() {
  if [ ! -x "$1/bin/python" ]; then
    echo "==> creating $1 with $(PYENV_VERSION="${3:-${PYENV_VERSION:-}}" "$2" --version)"
    PYENV_VERSION="${3:-${PYENV_VERSION:-}}" "$2" -m venv "$1"
  fi
  [ -f "$1/.gitignore" ] || echo '*' > "$1/.gitignore"
}

# install DIR REQUIREMENTS... -- reinstalls only when a requirements file changed.
install() {
  local dir="$1"; shift
  local stamp="$dir/.requirements.sha256"
  if ! sha256sum --quiet --check "$stamp" >/dev/null 2>&1; then
    echo "==> installing into $dir: $*"
    local args=()
    for file in "$@"; do args+=(-r "$file"); done
    "$dir/bin/python" -m pip install "${PIP_QUIET[@]}" "${args[@]}"
    sha256sum "$@" > "$stamp"
  fi
}

make_venv .venv-checkov "$CHECKS_PYTHON"
install .venv-checkov requirements-checks.txt

make_venv .venv-worker "$WORKER_PYTHON" "$worker_pyenv_version"
# The app's dependencies, as deployed, except azure-functions: 1.x doesn't install on 3.13, and
# requirements-worker.txt pins the 2.x the 3.13 worker uses.
mkdir -p "$REPORTS"
[ -f "$REPORTS/.gitignore" ] || echo '*' > "$REPORTS/.gitignore"
grep -v -E '^azure-functions[[:space:]]*(==|$)' requirements.txt > "$REPORTS/app-requirements-3.13.txt"
install .venv-worker "$REPORTS/app-requirements-3.13.txt" tests/worker/requirements-worker.txt

passed=0
failed=0
# result STATUS NAME [LOG] -- counts a step: its own "N passed, N failed" line if it printed one
# (the log's last such line), else 1 passed or 1 failed by its exit status.
result() {
  local counts=""
  [ -n "${3:-}" ] && counts="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$3" | tail -n 1 || true)"
  if [ -n "$counts" ]; then
    passed=$((passed + $(echo "$counts" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$counts" | cut -d' ' -f3)))
    [ "$1" -eq 0 ] || [ "$(echo "$counts" | cut -d' ' -f3)" -gt 0 ] || failed=$((failed + 1))
  elif [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  [ "$1" -eq 0 ] || echo "!!! $2 failed"
}

echo "==> checkov (infra/, Bicep)"
set +e
.venv-checkov/bin/checkov -d infra --framework bicep --skip-download --compact \
  --output cli --output json --output-file-path "console,$REPORTS/checkov.json"
scan=$?
# A file checkov can't parse is silently left out of the scan; a skip must say why.
.venv-checkov/bin/python - "$REPORTS/checkov.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
report = report[0] if isinstance(report, list) else report
summary, skipped = report["summary"], report["results"]["skipped_checks"]
problems = [f"{summary['parsing_errors']} Bicep file(s) could not be parsed"] if summary["parsing_errors"] else []
for check in skipped:
    reason = check.get("check_result", {}).get("suppress_comment", "")
    print(f"    skipped {check['check_id']} on {check['resource']} ({check['file_path']}): {reason}")
    if len(reason) < 20 or reason == "No comment provided":
        problems.append(f"{check['check_id']} on {check['resource']} is skipped without a reason")
for problem in problems:
    print(f"!!! {problem}")
sys.exit(1 if problems else 0)
PY
audit=$?
set -e
result $((scan || audit)) "checkov"

echo "==> app settings written by infra/ vs shared/settings.py"
set +e
.venv-checkov/bin/python -m tests.infra.settings_check --write-env "$REPORTS/cloud-settings.json" \
  | tee "$REPORTS/settings.log"
result "${PIPESTATUS[0]}" "settings check" "$REPORTS/settings.log"

echo "==> function_app.py indexed by the Python worker"
.venv-worker/bin/python tests/worker/index_check.py --cloud-env "$REPORTS/cloud-settings.json" \
  | tee "$REPORTS/worker.log"
result "${PIPESTATUS[0]}" "worker index check" "$REPORTS/worker.log"
set -e

echo "checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
