#!/usr/bin/env bash
# azd postdeploy hook (azure.yaml): registers the deployed app's webhook on the Azure OpenAI resource
# and stores its secret in Key Vault (scripts/register_webhook.py, with the azd environment's values).
# Does nothing, and says so, unless the azd environment has ARTIFACTS_REGISTER_WEBHOOK=true (an infra
# output, true when ARTIFACTS_WEBHOOK_ENABLED is), so `azd up` stays the same for deployments that
# do not use webhooks. Extra arguments go to the script (e.g. --rotate to replace the signing secret;
# the one replaced stays accepted until the next rotation).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${ARTIFACTS_REGISTER_WEBHOOK:-}" in
  true | True | TRUE | 1) ;;
  *)
    echo "Webhook registration skipped: ARTIFACTS_REGISTER_WEBHOOK is not true" \
      "(infra sets it when webhooks are on: azd env set ARTIFACTS_WEBHOOK_ENABLED true && azd up)."
    exit 0
    ;;
esac

# The script needs the app's runtime packages (httpx, azure-identity) and imports the app's settings,
# so it runs on the project's interpreter (Python 3.13, scripts/python.sh): the dev environment when
# there is one, else a small one of its own (.venv-hook, never deployed: .funcignore drops .venv*).
source scripts/python.sh
python=.venv/bin/python
if [ "$(python_minor "$python")" != "$PROJECT_PYTHON" ]; then
  python=.venv-hook/bin/python
  make_project_venv .venv-hook
  if [ ! -f .venv-hook/.installed ] || [ requirements.txt -nt .venv-hook/.installed ]; then
    echo "==> preparing .venv-hook for the webhook registration"
    "$python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    touch .venv-hook/.installed
  fi
fi
exec "$python" -m scripts.register_webhook "$@"
