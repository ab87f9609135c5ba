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
# A step whose interpreter is missing is skipped with one line saying so: exit status 3 when the
# rest passed, except in CI (CI set, as GitHub Actions and Azure Pipelines set it), where it fails.
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

# runnable PYTHON [PYENV_VERSION] -- the interpreter is there and starts.
runnable() { PYENV_VERSION="${2:-${PYENV_VERSION:-}}" "$1" --version >/dev/null 2>&1; }
skipped=0
# skip WHAT PYTHON HOW -- one line for a step that cannot run here.
skip() {
  echo "!!! skipped $1: $2 is not found (README: Prerequisites; or $3)"
  skipped=$((skipped + 1))
}

mkdir -p "$REPORTS"
[ -f "$REPORTS/.gitignore" ] || echo '*' > "$REPORTS/.gitignore"
rm -f "$REPORTS/cloud-settings.json"  # written by the settings check, read by the worker check
checkov_ready=0
if runnable .venv-checkov/bin/python || runnable "$CHECKS_PYTHON"; then
  make_venv .venv-checkov "$CHECKS_PYTHON"
  install .venv-checkov requirements-checks.txt
  checkov_ready=1
fi
worker_ready=0
if runnable .venv-worker/bin/python || runnable "$WORKER_PYTHON" "$worker_pyenv_version"; then
  make_venv .venv-worker "$WORKER_PYTHON" "$worker_pyenv_version"
  # The app's dependencies, as deployed, except azure-functions: 1.x doesn't install on 3.13, and
  # requirements-worker.txt pins the 2.x the 3.13 worker uses.
  grep -v -E '^azure-functions[[:space:]]*(==|$)' requirements.txt > "$REPORTS/app-requirements-3.13.txt"
  install .venv-worker "$REPORTS/app-requirements-3.13.txt" tests/worker/requirements-worker.txt
  worker_ready=1
fi

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

set +e
if [ "$checkov_ready" -eq 1 ]; then
echo "==> checkov (infra/, Bicep)"
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
result $((scan || audit)) "checkov"

echo "==> app settings written by infra/ vs shared/settings.py"
.venv-checkov/bin/python -m tests.infra.settings_check --write-env "$REPORTS/cloud-settings.json" \
  | tee "$REPORTS/settings.log"
result "${PIPESTATUS[0]}" "settings check" "$REPORTS/settings.log"
else
  skip "checkov and the settings check" "$CHECKS_PYTHON" "CHECKS_PYTHON=/path/to/python3.11"
fi

if [ "$worker_ready" -eq 1 ] && [ -f "$REPORTS/cloud-settings.json" ]; then
echo "==> function_app.py indexed by the Python worker"
.venv-worker/bin/python tests/worker/index_check.py --cloud-env "$REPORTS/cloud-settings.json" \
  | tee "$REPORTS/worker.log"
result "${PIPESTATUS[0]}" "worker index check" "$REPORTS/worker.log"
elif [ "$worker_ready" -eq 1 ]; then
  skip "the worker index check" "the settings check's output, as $CHECKS_PYTHON" "CHECKS_PYTHON=/path/to/python3.11"
else
  skip "the worker index check (the real Functions Python worker)" "$WORKER_PYTHON" \
    "WORKER_PYTHON=/path/to/python3.13"
fi
set -e

echo "checks: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
if [ "$skipped" -gt 0 ]; then
  case "${CI:-}" in
    ""|0|false|False) exit 3 ;;
    *) echo "!!! in CI every check must run: a skipped check fails"; exit 1 ;;
  esac
fi
