#!/usr/bin/env bash
# Set everything up and run the app locally: Azurite, the fake Azure OpenAI when no real endpoint is
# configured, and `func start`; without Azure Functions Core Tools (or with DEV_HOST=1), the
# project's development host instead (scripts/dev_host.py: a stand-in that serves the same API on
# the same port, not the Functions host). Ctrl-C stops everything and exits 0.
#
# Knobs (environment): APP_PORT (7071), FAKE_OPENAI_PORT (8089), FAKE_SCENARIO (the fake's run for
# every prompt: sales-chart, in-progress:N, no-files, failing-file, expired), DEV_HOST=1, and
# LOCAL_SETTINGS (the settings file the scripts read; `func start` always reads local.settings.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

APP_PORT="${APP_PORT:-7071}"
FAKE_OPENAI_PORT="${FAKE_OPENAI_PORT:-8089}"
FAKE_SCENARIO="${FAKE_SCENARIO:-sales-chart}"
settings="${LOCAL_SETTINGS:-local.settings.json}"

[ -f "$settings" ] || { cp local.settings.json.example "$settings"; echo "==> wrote $settings"; }
# A broken settings file stops everything here, in one line naming the file and the line.
.venv/bin/python -m scripts.local_settings check || exit 1

pids=()
cleanup() {
  [ "${#pids[@]}" -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "${pids[@]}" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM  # Ctrl-C: the EXIT trap stops what this script started, quietly

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fail() { echo "make start: $*" >&2; exit 1; }

# The environment wins over local.settings.json, as for the app (scripts/local_settings.py).
if ! .venv/bin/python -m scripts.local_settings uses-development-storage; then
  echo "==> AzureWebJobsStorage is not UseDevelopmentStorage=true: using that storage, not starting Azurite"
elif port_open 10000; then
  echo "==> Azurite (or another storage emulator) is already listening on 10000: using it"
else
  echo "==> starting Azurite on 10000-10002 (data in .azurite/)"
  mkdir -p .azurite
  node_modules/.bin/azurite --silent --skipApiVersionCheck --disableTelemetry --location .azurite \
    --debug .azurite/debug.log >.azurite/azurite.log 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do port_open 10001 && break; sleep 0.1; done
  port_open 10001 || fail "Azurite did not start within 10 s (see .azurite/azurite.log)"
fi

if ! .venv/bin/python -m scripts.local_settings has AZURE_OPENAI_ENDPOINT; then
  if port_open "$FAKE_OPENAI_PORT"; then
    fail "port $FAKE_OPENAI_PORT, where the fake Azure OpenAI listens, is already in use (an earlier make start?):" \
      "stop what listens there, or set FAKE_OPENAI_PORT=<another port>"
  fi
  export AZURE_OPENAI_ENDPOINT="http://127.0.0.1:$FAKE_OPENAI_PORT"
  export AZURE_OPENAI_API_KEY="local-fake-key"
  echo "==> no AZURE_OPENAI_ENDPOINT configured: starting the fake Azure OpenAI at $AZURE_OPENAI_ENDPOINT"
  .venv/bin/python -m tests.fake_openai --port "$FAKE_OPENAI_PORT" --api-key "$AZURE_OPENAI_API_KEY" \
    --scenario "$FAKE_SCENARIO" &
  fake=$!
  pids+=("$fake")
  for _ in $(seq 1 100); do
    kill -0 "$fake" 2>/dev/null || fail "the fake Azure OpenAI did not start (its reason is above)"
    port_open "$FAKE_OPENAI_PORT" && break
    sleep 0.1
  done
  port_open "$FAKE_OPENAI_PORT" || fail "the fake Azure OpenAI did not listen on $FAKE_OPENAI_PORT within 10 s"
fi

if [ "${DEV_HOST:-0}" != 1 ] && command -v func >/dev/null 2>&1; then
  source .venv/bin/activate
  app=(func start --port "$APP_PORT")
else
  [ "${DEV_HOST:-0}" = 1 ] || echo "==> Azure Functions Core Tools (func) is not installed: serving the app with" \
    "the development host instead (docs/development.md: Local development)"
  app=(.venv/bin/python -m scripts.dev_host --port "$APP_PORT")
fi
echo "==> ${app[*]}"
status=0
if [ -t 0 ]; then
  # The app gets the terminal to itself: Ctrl-C reaches it alone, it ends quietly, then this script
  # stops the rest and ends 0 (and so does make, which never sees the Ctrl-C).
  set -m
  "${app[@]}" || status=$?
  set +m
  [ "$status" -ne 130 ] || status=0  # func start, told to stop
else
  "${app[@]}" &
  app_pid=$!
  pids+=("$app_pid")
  wait "$app_pid" || status=$?  # a signal to this script runs the trap above
fi
exit "$status"
