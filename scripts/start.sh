#!/usr/bin/env bash
# Set everything up and run the app locally: Azurite, the fake Azure OpenAI when no real
# endpoint is configured, and `func start` (or instructions for getting Core Tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

[ -f local.settings.json ] || { cp local.settings.json.example local.settings.json; echo "==> wrote local.settings.json"; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open 10000; then
  echo "==> Azurite (or another storage emulator) is already listening on 10000: using it"
else
  echo "==> starting Azurite on 10000-10002 (data in .azurite/)"
  mkdir -p .azurite
  node_modules/.bin/azurite --silent --skipApiVersionCheck --disableTelemetry --location .azurite \
    --debug .azurite/debug.log &
  pids+=($!)
  for _ in $(seq 1 100); do port_open 10001 && break; sleep 0.1; done
fi

# The environment wins over local.settings.json, as for the app (scripts/local_settings.py).
if ! .venv/bin/python -m scripts.local_settings has AZURE_OPENAI_ENDPOINT; then
  export AZURE_OPENAI_ENDPOINT="http://127.0.0.1:8089"
  export AZURE_OPENAI_API_KEY="local-fake-key"
  echo "==> no AZURE_OPENAI_ENDPOINT configured: starting the fake Azure OpenAI at $AZURE_OPENAI_ENDPOINT"
  .venv/bin/python -m tests.fake_openai --port 8089 --api-key "$AZURE_OPENAI_API_KEY" &
  pids+=($!)
fi

if command -v func >/dev/null 2>&1; then
  source .venv/bin/activate
  echo "==> func start"
  func start
else
  cat <<'MSG'

Azure Functions Core Tools (func) is not installed, so the app itself is not running.
Get Core Tools v4 (README: Prerequisites; https://learn.microsoft.com/azure/azure-functions/functions-run-local):
  npm:     npm install -g azure-functions-core-tools@4 --unsafe-perm true
  macOS:   brew tap azure/functions && brew install azure-functions-core-tools@4
  Windows: winget install Microsoft.Azure.FunctionsCoreTools
then run `make start` again.

Azurite and the fake are running; in another terminal `make demo` pushes a prompt through
both functions the way the host calls them. Ctrl-C stops everything.
MSG
  wait
fi
