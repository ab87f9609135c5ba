#!/usr/bin/env bash
# Deployment checks (Python 3.13, found by scripts/python.sh like everything else):
#   1. checkov scans infra/ (Bicep): no failed check, and every skip carries its reason.
#   2. The app settings infra/ writes are the ones shared/settings.py reads, in a form it accepts;
#      infra/ creates the queues the app uses and grants, queue by queue, the role each needs;
#      infra/ runs the app on Python 3.13; host.json, infra/ and docs/deploy.md agree on telemetry,
#      concurrency, Easy Auth, the webhook's Key Vault, download links and alerts
#      (tests/infra/operability.py).
#   3. The real Azure Functions Python worker (azure-functions-runtime, in .venv with the app's own
#      requirements) indexes function_app.py as the host makes it do, with those settings and
#      others, and reports the expected functions/bindings.
# checkov has an environment of its own (.venv-checkov, made with the same interpreter): its pins
# conflict with the app's.
# Exits non-zero if any of them fails; every step runs either way, so one run shows everything.
# A step that cannot run here (no Python 3.13 to make .venv-checkov with) is skipped with one line
# saying so: exit status 3 when the rest passed, except in CI (CI set, as GitHub Actions and Azure
# Pipelines set it), where it fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh  # .venv, which holds the worker library (fast when it is in place)

REPORTS=.checks
PIP_QUIET=(--quiet --disable-pip-version-check)

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

skipped=0
# skip WHAT WHY -- one line for a step that cannot run here.
skip() {
  echo "!!! skipped $1: $2 (README: Prerequisites; or PYTHON=/path/to/python$PROJECT_PYTHON)"
  skipped=$((skipped + 1))
}

mkdir -p "$REPORTS"
[ -f "$REPORTS/.gitignore" ] || echo '*' > "$REPORTS/.gitignore"
rm -f "$REPORTS/cloud-settings.json"  # written by the settings check, read by the worker check
checkov_ready=0
if [ "$(python_minor .venv-checkov/bin/python)" = "$PROJECT_PYTHON" ] \
    || [ "$(run_python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)" = "$PROJECT_PYTHON" ]; then
  make_project_venv .venv-checkov
  [ -f .venv-checkov/.gitignore ] || echo '*' > .venv-checkov/.gitignore  # git, ruff and pytest leave it alone
  install .venv-checkov requirements-checks.txt
  checkov_ready=1
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
  skip "checkov and the settings check" "Python $PROJECT_PYTHON ($PYTHON) is not found to make .venv-checkov with"
fi

if [ -f "$REPORTS/cloud-settings.json" ]; then
echo "==> function_app.py indexed by the Python worker"
.venv/bin/python tests/worker/index_check.py --cloud-env "$REPORTS/cloud-settings.json" \
  | tee "$REPORTS/worker.log"
result "${PIPESTATUS[0]}" "worker index check" "$REPORTS/worker.log"
else
  skip "the worker index check" "it needs the settings check's app settings, and that did not run"
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
