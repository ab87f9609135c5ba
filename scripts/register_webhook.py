"""Register the app's webhook on the Azure OpenAI resource and store its signing secret where the app reads it.

In Azure (the azd hook runs this with the azd environment's values)::

    python -m scripts.register_webhook [--rotate]

registers ``{FUNCTION_APP_URL}/api/webhooks/azure-openai?code={key}``, where the key is the
webhook function's own function key ``azure-openai-webhook`` (read through ARM, created with a
random value the first time): it opens that one function and no other, unlike the host's keys,
which are never read. The secret goes to the Key Vault secret the app setting
AZURE_OPENAI_WEBHOOK_SECRET references; then the app resolves the reference again.

Locally, through a tunnel to ``func start``::

    python -m scripts.register_webhook --url https://<tunnel host> --local-settings local.settings.json

writes the secret to ``Values.AZURE_OPENAI_WEBHOOK_SECRET`` of that file (restart ``func start``).

Safe to run again: an endpoint of the same name, URL and event types whose secret the sink
already holds is left as it is. Otherwise (or with ``--rotate``, to replace the secret on
purpose) a new endpoint is created, its secret stored, and the endpoints of that name registered
before are deleted. The secret being replaced is kept as the previous one (Key Vault secret
``azure-openai-webhook-secret-previous``, or ``Values.AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS``),
which the app also accepts, so deliveries signed with it still verify until the next rotation.
Azure OpenAI is called with AZURE_OPENAI_API_KEY in the ``api-key`` header when it is set, else
with an Entra ID token; ARM and Key Vault always with Entra ID (DefaultAzureCredential: in an azd
hook, azd's login). The secrets and the keys are never printed: the output is a JSON summary with
``code`` redacted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from shared.settings import (  # one reading of each setting: the app's
    ENDPOINT,
    TOKEN_SCOPE,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_PREVIOUS,
)

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

ROUTE = "/api/webhooks/azure-openai"  # the app's webhook function
EVENT_TYPES = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
APP_SETTING = WEBHOOK_SECRET.name
PREVIOUS_APP_SETTING = WEBHOOK_SECRET_PREVIOUS.name
VAULT_ENTRY = "azure-openai-webhook-secret"  # the name infra's Key Vault reference points at
PREVIOUS_VAULT_ENTRY = f"{VAULT_ENTRY}-previous"  # the secret being rotated out, also referenced by infra
WEBHOOK_FUNCTION = "azure_openai_webhook"  # function_app.py's function_name for ROUTE
WEBHOOK_KEY_NAME = "azure-openai-webhook"  # the function key, of that function only, the URL carries
WHSEC = "whsec_"
ENDPOINTS_PATH = "/openai/v1/dashboard/webhook_endpoints"  # Azure documents no api-version for it
COGNITIVE_SCOPE = TOKEN_SCOPE.default  # AZURE_OPENAI_TOKEN_SCOPE unless the environment names another
VAULT_SCOPE = "https://vault.azure.net/.default"
MANAGEMENT_URL = "https://management.azure.com"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
WEB_API_VERSION = "2024-04-01"  # Microsoft.Web/sites, as infra deploys it
REFERENCES_API_VERSION = "2022-03-01"  # the version Azure documents for .../configreferences/appsettings/refresh
KEY_VAULT_API_VERSION = "7.4"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_MAX_ERROR_TEXT = 300
_ARM_ENVELOPE = frozenset({"id", "name", "type", "kind", "location", "properties"})

Headers = Callable[[], dict[str, str]]


class RegistrationError(Exception):
    """Ends the script with its message, which never carries a secret."""


class Api:
    """One HTTP client; every failure becomes a RegistrationError with the service's own words,
    scrubbed of every credential this run knows."""

    def __init__(self, client: httpx.Client, secrets: Sequence[str] = ()) -> None:
        self.client = client
        self.secrets = [s for s in secrets if s]

    def call(
        self,
        what: str,
        method: str,
        url: str,
        headers: Headers,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        try:
            answer = self.client.request(method, url, headers=headers(), json=body, params=params)
        except httpx.HTTPError as error:
            raise RegistrationError(self.scrub(f"{what}: {type(error).__name__}: {error}")) from None
        if answer.status_code not in ok:
            raise RegistrationError(self.scrub(f"{what}: HTTP {answer.status_code}: {_error_text(answer)}"))
        return answer

    def scrub(self, text: str) -> str:
        """Every secret out of ``text``, as it is and URL-encoded (a key in a URL's query)."""
        for secret in filter(None, self.secrets):  # an unset key ("") is not a secret to blank out
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "***")
        return text


def _error_text(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = str(error["message"])
    else:
        text = answer.text or answer.reason_phrase
    return text[:_MAX_ERROR_TEXT]


def bearer(credential: TokenCredential, scope: str) -> Headers:
    """An Authorization header for ``scope``; the token is reused until a minute before it expires
    (azd's credential runs a process per token)."""
    cached: list[AccessToken] = []

    def headers() -> dict[str, str]:
        if not cached or cached[0].expires_on - 60 < time.time():
            cached[:] = [credential.get_token(scope)]
        return {"Authorization": f"Bearer {cached[0].token}"}

    return headers


def json_object(answer: httpx.Response, what: str) -> dict[str, Any]:
    try:
        parsed = answer.json()
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise RegistrationError(f"{what}: the answer is not a JSON object")
    return parsed


# -- Azure OpenAI: the webhook endpoints ----------------------------------------------------------


class WebhookEndpoints:
    def __init__(self, api: Api, endpoint: str, headers: Headers) -> None:
        self._api = api
        self._url = endpoint + ENDPOINTS_PATH
        self._headers = headers

    def list(self) -> list[dict[str, Any]]:
        """Every registered endpoint, following the pages (OpenAI's list shape; Azure documents none)."""
        found: list[dict[str, Any]] = []
        params = {"limit": "100"}
        for _ in range(1000):
            page = self._api.call("listing webhook endpoints", "GET", self._url, self._headers, params=params).json()
            if isinstance(page, list):  # a bare list is all there is
                return [e for e in page if isinstance(e, dict)]
            if not isinstance(page, dict):
                raise RegistrationError("listing webhook endpoints: the answer is not a list")
            data = [e for e in page.get("data", []) if isinstance(e, dict)]
            found += data
            if not page.get("has_more") or not data:
                return found
            params = {"limit": "100", "after": str(data[-1].get("id"))}
        raise RegistrationError("listing webhook endpoints: the pages never ended")

    def create(self, name: str, url: str) -> tuple[dict[str, Any], str]:
        """The new endpoint and its signing secret (shown only in this answer)."""
        body = {"name": name, "url": url, "event_types": list(EVENT_TYPES)}
        answer = self._api.call("registering the webhook", "POST", self._url, self._headers, body=body)
        created = json_object(answer, "registering the webhook")
        secret = created.pop("signing_secret", None)
        if not isinstance(created.get("id"), str):
            raise RegistrationError("registering the webhook: the answer has no endpoint id")
        if not isinstance(secret, str) or not secret.startswith(WHSEC):
            self.delete(created["id"])  # an endpoint whose secret nobody has is of no use
            raise RegistrationError("registering the webhook: the answer has no signing secret (whsec_...)")
        self._api.secrets.append(secret)
        return created, secret

    def delete(self, endpoint_id: str) -> None:
        url = f"{self._url}/{endpoint_id}"
        self._api.call(f"deleting webhook endpoint {endpoint_id}", "DELETE", url, self._headers, ok=(200, 204, 404))


# -- where the secret goes -------------------------------------------------------------------------


class SecretSink(Protocol):
    where: str
    previous_where: str

    def stored(self) -> str | None:
        """The secret stored now, or None."""

    def store(self, secret: str, previous: str | None) -> None:
        """Store ``secret``, and ``previous`` (the secret it replaces) as the previous one when given."""


class LocalSettings:
    """``Values.AZURE_OPENAI_WEBHOOK_SECRET`` of a local.settings.json; everything else is kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"{path}: Values.{APP_SETTING}"
        self.previous_where = f"{path}: Values.{PREVIOUS_APP_SETTING}"

    def stored(self) -> str | None:
        secret = self._values(self._read()).get(APP_SETTING)
        return secret if isinstance(secret, str) and secret.startswith(WHSEC) else None

    def store(self, secret: str, previous: str | None) -> None:
        settings = self._read()
        values = self._values(settings)
        if previous is not None:
            values[PREVIOUS_APP_SETTING] = previous
        values[APP_SETTING] = secret
        text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o600
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, self.path)  # never a half-written file

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"IsEncrypted": False, "Values": {}}
        try:
            settings = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as error:
            raise RegistrationError(f"{self.path} cannot be read as JSON: {error}") from None
        if not isinstance(settings, dict):
            raise RegistrationError(f"{self.path} is not a JSON object")
        if settings.get("IsEncrypted") is True:
            raise RegistrationError(f"{self.path} is encrypted: decrypt it first (func settings decrypt)")
        return settings

    def _values(self, settings: dict[str, Any]) -> dict[str, Any]:
        values = settings.setdefault("Values", {})
        if not isinstance(values, dict):
            raise RegistrationError(f"{self.path}: Values is not a JSON object")
        return values


class KeyVault:
    """The Key Vault secret the app setting's Key Vault reference names."""

    def __init__(self, api: Api, vault_url: str, headers: Headers) -> None:
        self._api = api
        self._secrets = f"{vault_url.rstrip('/')}/secrets"
        self._url = f"{self._secrets}/{VAULT_ENTRY}"
        self._headers = headers
        self.where = f"Key Vault {vault_url.rstrip('/')}: secret {VAULT_ENTRY}"
        self.previous_where = f"Key Vault {vault_url.rstrip('/')}: secret {PREVIOUS_VAULT_ENTRY}"

    def stored(self) -> str | None:
        params = {"api-version": KEY_VAULT_API_VERSION}
        answer = self._api.call(
            "reading the Key Vault secret", "GET", self._url, self._headers, params=params, ok=(200, 404)
        )
        if answer.status_code == 404:
            return None
        value = json_object(answer, "reading the Key Vault secret").get("value")
        if isinstance(value, str):
            self._api.secrets.append(value)
        return value if isinstance(value, str) and value.startswith(WHSEC) else None

    def store(self, secret: str, previous: str | None) -> None:
        """The previous secret first: should the second write fail, the app still holds a secret that
        verifies the deliveries of the endpoint still registered."""
        params = {"api-version": KEY_VAULT_API_VERSION}
        if previous is not None:
            body = {"value": previous, "contentType": "Standard Webhooks signing secret, being rotated out"}
            url = f"{self._secrets}/{PREVIOUS_VAULT_ENTRY}"
            what = "keeping the previous secret in Key Vault"
            self._api.call(what, "PUT", url, self._headers, body=body, params=params)
        body = {"value": secret, "contentType": "Standard Webhooks signing secret"}
        self._api.call("writing the Key Vault secret", "PUT", self._url, self._headers, body=body, params=params)


# -- the Function App, through ARM ---------------------------------------------------------------------


class FunctionApp:
    def __init__(
        self, api: Api, management_url: str, *, subscription: str, group: str, name: str, headers: Headers
    ) -> None:
        self._api = api
        self._site = (
            f"{management_url.rstrip('/')}/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.Web/sites/{name}"
        )
        self._headers = headers

    def webhook_key(self) -> str:
        """The webhook function's own key ``WEBHOOK_KEY_NAME``, created with a random value when it does
        not exist yet (Web Apps - List Function Keys, Create Or Update Function Secret). It opens the
        webhook function only; the host's keys, which open every function, are never read."""
        function = f"{self._site}/functions/{WEBHOOK_FUNCTION}"
        params = {"api-version": WEB_API_VERSION}
        what = "reading the webhook function's keys"
        answer = self._api.call(what, "POST", f"{function}/listkeys", self._headers, params=params, ok=(200, 404))
        if answer.status_code == 404:
            raise RegistrationError(
                f"{what}: the app has no function {WEBHOOK_FUNCTION} (is the code deployed? {_error_text(answer)})"
            )
        keys = _string_dictionary(json_object(answer, what))
        self._api.secrets.extend(keys.values())
        key = keys.get(WEBHOOK_KEY_NAME)
        if key:
            return key
        key = secrets.token_urlsafe(48)  # 64 URL-safe characters, as the host's own keys are long
        self._api.secrets.append(key)
        what = "creating the webhook function's key"
        body = {"properties": {"name": WEBHOOK_KEY_NAME, "value": key}}
        answer = self._api.call(
            what, "PUT", f"{function}/keys/{WEBHOOK_KEY_NAME}", self._headers, body=body, params=params, ok=(200, 201)
        )
        created = json_object(answer, what)
        value = _string_dictionary(created).get("value")
        if value and value != key:  # the host kept a value of its own: that is the key
            self._api.secrets.append(value)
            return value
        return key

    def reload_settings(self) -> None:
        """Resolve the Key Vault references again (the documented refresh), then restart, so the
        running host reads the new secret now rather than at the next daily refetch."""
        self._api.call(
            "refreshing the app's Key Vault references",
            "POST",
            f"{self._site}/config/configreferences/appsettings/refresh",
            self._headers,
            params={"api-version": REFERENCES_API_VERSION},
            ok=(200, 202, 204),
        )
        self._api.call(
            "restarting the Function App",
            "POST",
            f"{self._site}/restart",
            self._headers,
            params={"api-version": WEB_API_VERSION},
            ok=(200, 202, 204),
        )


def _string_dictionary(answer: dict[str, Any]) -> dict[str, str]:
    """An ARM answer's string entries, whether under ``properties`` (its documented shape) or at the
    top level (what the service sends for function keys)."""
    inner = answer.get("properties")
    entries = inner if isinstance(inner, dict) else {k: v for k, v in answer.items() if k not in _ARM_ENVELOPE}
    return {str(k): v for k, v in entries.items() if isinstance(v, str) and v}


# -- the registration --------------------------------------------------------------------------------


def webhook_url(app_url: str, function_key: str | None) -> str:
    """The app's base URL (or its webhook URL) with the route and, when given, the key as ``code``."""
    parts = urlsplit(app_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise RegistrationError(f"the app URL must be an http(s) URL without a fragment, not {redact(app_url)!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(ROUTE):
        path += ROUTE
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if function_key is None or k != "code"]
    if function_key is not None:
        query.append(("code", function_key))
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def redact(url: str) -> str:
    """``url`` with the value of its ``code`` (the function key) replaced by ``***``."""
    parts = urlsplit(url)
    query = [(k, "***" if k == "code" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def _matches_hint(secret: str, hint: object) -> bool:
    """Whether ``secret`` fits the endpoint's masked hint (``whsec_...8s8=``); True when there is none."""
    if not isinstance(hint, str) or "..." not in hint:
        return True
    head, _, tail = hint.partition("...")
    return secret.startswith(head) and secret.endswith(tail)


def register(
    endpoints: WebhookEndpoints, sink: SecretSink, name: str, url: str, *, rotate: bool = False
) -> dict[str, Any]:
    """Make one endpoint named ``name`` deliver to ``url``, its secret in ``sink``; the summary.
    ``rotate`` replaces the endpoint, and so its secret, even when nothing else changed."""
    mine = [e for e in endpoints.list() if e.get("name") == name]
    stored = sink.stored()
    if len(mine) == 1 and stored is not None and not rotate:
        current = mine[0]
        if (
            current.get("url") == url
            and sorted(current.get("event_types") or []) == sorted(EVENT_TYPES)
            and _matches_hint(stored, current.get("signing_secret_hint"))
        ):
            return _summary(current, name, url, changed=False, removed=[], sink=sink, kept_previous=False)
    # The new endpoint first, then its secret (the one it replaces kept as the previous secret, which
    # the app accepts too), then the old endpoints: a failure on the way leaves the old registration
    # working, and the next run cleans up. Until the app reloads, the new endpoint's deliveries are
    # refused and Azure delivers them again; the old ones' still verify, before and after.
    created, secret = endpoints.create(name, url)
    sink.store(secret, previous=stored)
    removed = [str(e.get("id")) for e in mine]
    for endpoint_id in removed:
        endpoints.delete(endpoint_id)
    return _summary(created, name, url, changed=True, removed=removed, sink=sink, kept_previous=stored is not None)


def _summary(
    endpoint: Mapping[str, Any],
    name: str,
    url: str,
    *,
    changed: bool,
    removed: list[str],
    sink: SecretSink,
    kept_previous: bool,
) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint.get("id"),
        "name": name,
        "url": redact(url),
        "event_types": list(EVENT_TYPES),
        "changed": changed,
        "removed": removed,
        "secret_stored_in": sink.where,
        "previous_secret_kept_in": sink.previous_where if kept_previous else None,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.register_webhook",
        description="Register the app's webhook on the Azure OpenAI resource; store the secret where the app reads it.",
    )
    parser.add_argument(
        "--url",
        help="the app's base URL (e.g. a tunnel to func start); default: FUNCTION_APP_URL with the webhook "
        "function's own key",
    )
    parser.add_argument("--local-settings", type=Path, help="store the secret in this local.settings.json")
    parser.add_argument("--name", help="the webhook endpoint's name (default: from AZURE_FUNCTION_APP_NAME)")
    parser.add_argument(
        "--rotate",
        action="store_true",
        help="replace the endpoint and its signing secret even if nothing changed; the secret it replaces "
        "stays accepted (as the previous one) until the next rotation",
    )
    return parser


def _required(environ: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    missing = [n for n in names if not environ.get(n, "").strip()]
    if missing:
        raise RegistrationError(f"missing setting(s): {', '.join(missing)} (from the azd environment, or export them)")
    return {n: environ[n].strip() for n in names}


def run(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    api: Api,
    credential: Callable[[], TokenCredential],
    management_url: str,
) -> dict[str, Any]:
    local = args.local_settings is not None
    # The Function App is needed for the webhook function's key (no --url) and to reload a Key Vault reference.
    needs_app = args.url is None or not local
    names = ["AZURE_OPENAI_ENDPOINT"]
    names += [] if local else ["AZURE_KEY_VAULT_ENDPOINT"]
    names += ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME"] if needs_app else []
    names += ["FUNCTION_APP_URL"] if args.url is None else []
    env = _required(environ, names)
    problems: list[str] = []
    endpoint = ENDPOINT.read(env, problems)
    scope = TOKEN_SCOPE.read(environ, problems)  # the app's own reading of the setting
    if problems:
        raise RegistrationError("; ".join(problems))
    api_key = environ.get("AZURE_OPENAI_API_KEY", "").strip()
    api.secrets.append(api_key)
    # An API key only ever in the api-key header; without one, Entra ID.
    openai_headers: Headers = (lambda: {"api-key": api_key}) if api_key else bearer(credential(), scope)

    app = None
    if needs_app:
        app = FunctionApp(
            api,
            management_url,
            subscription=env["AZURE_SUBSCRIPTION_ID"],
            group=env["AZURE_RESOURCE_GROUP"],
            name=env["AZURE_FUNCTION_APP_NAME"],
            headers=bearer(credential(), MANAGEMENT_SCOPE),
        )
    sink: SecretSink
    if local:
        sink = LocalSettings(args.local_settings)
    else:
        sink = KeyVault(api, env["AZURE_KEY_VAULT_ENDPOINT"], bearer(credential(), VAULT_SCOPE))
    if args.url is None and app is not None:
        url = webhook_url(env["FUNCTION_APP_URL"], app.webhook_key())
    else:
        url = webhook_url(args.url, None)
    app_name = environ.get("AZURE_FUNCTION_APP_NAME", "").strip()
    name = args.name or (f"artifact-persister-{app_name}" if app_name else "artifact-persister-local")

    summary = register(WebhookEndpoints(api, endpoint, openai_headers), sink, name, url, rotate=args.rotate)
    summary["app_reloaded"] = False
    if summary["changed"] and local:
        summary["note"] = "restart func start: it reads local.settings.json when it starts"
    elif summary["changed"] and app is not None:
        app.reload_settings()
        summary["app_reloaded"] = True
    return summary


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    credential: TokenCredential | None = None,
    management_url: str = MANAGEMENT_URL,
) -> int:
    """The CLI; ``environ``, ``credential`` and ``management_url`` are for tests."""
    args = _parser().parse_args(argv)
    source = os.environ if environ is None else environ
    made: list[TokenCredential] = [] if credential is None else [credential]

    def the_credential() -> TokenCredential:
        if not made:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - slow, and only needed without a key

            made.append(DefaultAzureCredential())
        return made[0]

    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        api = Api(client)
        try:
            summary = run(args, source, api, the_credential, management_url)
        except RegistrationError as error:
            print(f"register_webhook: {api.scrub(str(error))}", file=sys.stderr)
            return 1
        except Exception as error:  # a credential that cannot sign in, say: its type, never its details
            print(
                f"register_webhook: {type(error).__name__}: {api.scrub(str(error))[:_MAX_ERROR_TEXT]}", file=sys.stderr
            )
            return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
