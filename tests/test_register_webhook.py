"""scripts/register_webhook.py against the fake's registration routes over real HTTP: it registers once,
stores a secret that verifies what the fake then delivers, changes nothing when run again, replaces a
stale registration, keeps the secret it replaces as the previous one (and rotates on demand), and never
prints a secret or a key. Azure mode runs against a loopback stand-in for ARM and Key Vault (only the
calls the script may make): the registered URL carries the webhook function's own key, never a host key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import openai
import pytest
from azure.core.credentials import AccessToken

from scripts import register_webhook
from tests.fake_openai import RESPONSE_EVENT_TYPES, FakeAzureOpenAI, FakeContainer, FakeFile, Scenario, WebhookReceiver

API_KEY = "register-test-key-0123456789"
HOST_KEYS = {"master": "master-key-never-used", "default": "host-default-key-never-used"}
FUNCTION_DEFAULT_KEY = "webhook-function-default-key-never-used"
ROOT = Path(__file__).resolve().parents[1]
SITE = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Web/sites/func-1"
WEBHOOK_FUNCTION = f"{SITE}/functions/azure_openai_webhook"
KEY_NAME = "azure-openai-webhook"
CURRENT = "azure-openai-webhook-secret"
PREVIOUS = "azure-openai-webhook-secret-previous"


class ScopedCredential:
    """A TokenCredential whose token names its scope, so each service can check it got the right one."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(token_for(scopes[0]), int(time.time()) + 3600)


def token_for(scope: str) -> str:
    return "token-" + urlsplit(scope).hostname.replace(".", "-")  # type: ignore[union-attr]


@dataclass
class AzureStandIn:
    """ARM (the host's keys, the webhook function's keys, refresh, restart) and Key Vault (secrets by
    name) on loopback, recording every call. The function keys come back as the service sends them:
    a flat name -> value object."""

    webhook_keys: dict[str, str] = field(default_factory=lambda: {"default": FUNCTION_DEFAULT_KEY})
    vault: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)  # method, path, query, auth
    vault_writes: list[str] = field(default_factory=list)  # secret names, in the order written
    url: str = ""

    def serve(self) -> ThreadingHTTPServer:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PUT(self) -> None:
                self._answer("PUT")

            def _answer(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                auth = self.headers.get("authorization", "")
                stand_in.calls.append((method, parts.path, query, auth))
                status, answer = stand_in.route(method, parts.path, query, auth, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return server

    def route(self, method: str, path: str, query: dict[str, str], auth: str, body: bytes) -> tuple[int, Any]:
        if path.startswith("/secrets/"):
            if auth != f"Bearer {token_for(register_webhook.VAULT_SCOPE)}" or query.get("api-version") != "7.4":
                return 401, {"error": {"code": "Unauthorized", "message": "no"}}
            return self.key_vault(method, path.removeprefix("/secrets/"), body)
        if auth != f"Bearer {token_for(register_webhook.MANAGEMENT_SCOPE)}":
            return 401, {"error": {"code": "AuthenticationFailed", "message": "no"}}
        return self.arm(method, path, query, body)

    def key_vault(self, method: str, name: str, body: bytes) -> tuple[int, Any]:
        if method == "PUT":
            self.vault[name] = json.loads(body)["value"]
            self.vault_writes.append(name)
            return 200, {"value": self.vault[name], "id": f"{self.url}/secrets/{name}/v2"}
        if name not in self.vault:
            return 404, {
                "error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found"}
            }
        return 200, {"value": self.vault[name]}

    def arm(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        expected_version = "2022-03-01" if path.endswith("/refresh") else "2024-04-01"
        if query.get("api-version") != expected_version:
            return 400, {"error": {"code": "InvalidApiVersion", "message": query.get("api-version")}}
        if method == "PUT" and path.startswith(f"{WEBHOOK_FUNCTION}/keys/"):
            name = path.removeprefix(f"{WEBHOOK_FUNCTION}/keys/")
            properties = json.loads(body)["properties"]
            if properties.get("name") != name or len(properties.get("value", "")) < 32:
                return 400, {"error": {"code": "BadRequest", "message": "a key of at least 32 characters"}}
            created = name not in self.webhook_keys
            self.webhook_keys[name] = properties["value"]
            return (201 if created else 200), {"name": name, "value": properties["value"]}
        answers = {
            f"{SITE}/host/default/listkeys": {
                "masterKey": HOST_KEYS["master"],
                "functionKeys": {"default": HOST_KEYS["default"]},
                "systemKeys": {},
            },
            f"{WEBHOOK_FUNCTION}/listkeys": dict(self.webhook_keys),
            f"{SITE}/config/configreferences/appsettings/refresh": {"value": []},
            f"{SITE}/restart": {},
        }
        if method != "POST" or path not in answers:
            return 404, {"error": {"code": "NotFound", "message": f"Error retrieving function: {path}"}}
        return 200, answers[path]

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.calls]


@pytest.fixture
def server() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI(api_key=API_KEY, bearer_tokens=[token_for(register_webhook.COGNITIVE_SCOPE)]) as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    got = WebhookReceiver()
    yield got
    got.close()


@pytest.fixture
def azure() -> Iterator[AzureStandIn]:
    stand_in = AzureStandIn()
    http_server = stand_in.serve()
    yield stand_in
    http_server.shutdown()
    http_server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python"}, "Host": {"CORS": "*"}}),
        encoding="utf-8",
    )
    return path


def local_env(server: FakeAzureOpenAI, **extra: str) -> dict[str, str]:
    return {"AZURE_OPENAI_ENDPOINT": server.endpoint, "AZURE_OPENAI_API_KEY": API_KEY, **extra}


def azure_env(server: FakeAzureOpenAI, azure: AzureStandIn, receiver: WebhookReceiver) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": server.endpoint + "/openai/v1/",
        "AZURE_OPENAI_API_KEY": API_KEY,
        "AZURE_SUBSCRIPTION_ID": "sub-1",
        "AZURE_RESOURCE_GROUP": "rg-1",
        "AZURE_FUNCTION_APP_NAME": "func-1",
        "FUNCTION_APP_URL": receiver.base_url,
        "AZURE_KEY_VAULT_ENDPOINT": azure.url + "/",
    }


def run(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    *,
    expect: int = 0,
    credential: ScopedCredential | None = None,
    management_url: str = register_webhook.MANAGEMENT_URL,
) -> tuple[dict[str, Any], str]:
    """Run the CLI in-process; answers its JSON summary (on success) and everything it printed."""
    code = register_webhook.main(
        argv, environ=environ, credential=credential or ScopedCredential(), management_url=management_url
    )
    out, err = capsys.readouterr()
    assert code == expect, err
    return (json.loads(out) if code == 0 else {}), out + err


def stored_secret(path: Path) -> str:
    secret: str = json.loads(path.read_text(encoding="utf-8"))["Values"]["AZURE_OPENAI_WEBHOOK_SECRET"]
    return secret


def end_a_run(server: FakeAzureOpenAI) -> str:
    server.register("webhook please", Scenario([FakeContainer([FakeFile(b"x", "/mnt/data/x.txt")])]))
    body = {
        "model": "gpt-test",
        "input": "webhook please",
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
        "include": ["code_interpreter_call.outputs"],
        "background": True,
    }
    response_id: str = server.create(body)["id"]
    return response_id


def test_first_run_registers_and_stores_a_secret_that_verifies_deliveries(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, printed = run(capsys, ["--url", receiver.base_url, "--local-settings", str(settings)], local_env(server))

    [endpoint] = server.webhook_endpoints()
    assert summary["endpoint_id"] == endpoint["id"] and summary["changed"] is True
    assert endpoint["name"] == summary["name"] == "artifact-persister-local"
    assert endpoint["url"] == receiver.base_url + "/api/webhooks/azure-openai"
    assert sorted(endpoint["event_types"]) == sorted(RESPONSE_EVENT_TYPES)
    saved = json.loads(settings.read_text(encoding="utf-8"))
    assert saved["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python" and saved["Host"] == {"CORS": "*"}
    secret = stored_secret(settings)
    assert summary["secret_stored_in"] == f"{settings}: Values.AZURE_OPENAI_WEBHOOK_SECRET"
    assert secret not in printed and API_KEY not in printed

    response_id = end_a_run(server)
    [got] = receiver.wait(1)
    event = openai.OpenAI(api_key="x", webhook_secret=secret).webhooks.unwrap(got.body, got.headers)
    assert event.type == "response.completed" and event.data.id == response_id


def test_second_run_changes_nothing(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", receiver.base_url, "--local-settings", str(settings)]
    first, _ = run(capsys, argv, local_env(server))
    before = settings.read_bytes()

    second, _ = run(capsys, argv, local_env(server))

    assert second["endpoint_id"] == first["endpoint_id"] and second["changed"] is False and second["removed"] == []
    assert settings.read_bytes() == before
    assert [e["id"] for e in server.webhook_endpoints()] == [first["endpoint_id"]]


def test_a_changed_url_replaces_the_registration(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = run(capsys, ["--url", "http://127.0.0.1:1/old", "--local-settings", str(settings)], local_env(server))
    old_secret = stored_secret(settings)

    second, _ = run(capsys, ["--url", receiver.base_url, "--local-settings", str(settings)], local_env(server))

    [endpoint] = server.webhook_endpoints()
    assert endpoint["id"] == second["endpoint_id"] != first["endpoint_id"]
    assert second["changed"] is True and second["removed"] == [first["endpoint_id"]]
    assert endpoint["url"] == receiver.base_url + "/api/webhooks/azure-openai"
    assert stored_secret(settings) != old_secret
    assert (
        json.loads(settings.read_text(encoding="utf-8"))["Values"]["AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS"] == old_secret
    )
    end_a_run(server)
    [got] = receiver.wait(1)
    openai.OpenAI(api_key="x").webhooks.verify_signature(got.body, got.headers, secret=stored_secret(settings))


@pytest.mark.parametrize("spoil", ["missing", "other"])
def test_a_missing_or_foreign_secret_replaces_the_registration(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    settings: Path,
    capsys: pytest.CaptureFixture[str],
    spoil: str,
) -> None:
    argv = ["--url", receiver.base_url, "--local-settings", str(settings)]
    first, _ = run(capsys, argv, local_env(server))
    saved = json.loads(settings.read_text(encoding="utf-8"))
    if spoil == "missing":
        del saved["Values"]["AZURE_OPENAI_WEBHOOK_SECRET"]
    else:  # a secret that is not this endpoint's (its hint does not match)
        saved["Values"]["AZURE_OPENAI_WEBHOOK_SECRET"] = "whsec_" + "A" * 44
    settings.write_text(json.dumps(saved), encoding="utf-8")

    second, _ = run(capsys, argv, local_env(server))

    assert second["changed"] is True and second["removed"] == [first["endpoint_id"]]
    assert [e["id"] for e in server.webhook_endpoints()] == [second["endpoint_id"]]
    endpoint = server.webhook_endpoints()[0]
    assert stored_secret(settings).endswith(endpoint["signing_secret_hint"].removeprefix("whsec_..."))


def test_other_endpoints_are_left_alone(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other_id, _ = server.register_webhook("https://example.com/other", name="someone-else")

    run(capsys, ["--url", receiver.base_url, "--local-settings", str(settings), "--name", "mine"], local_env(server))
    run(
        capsys,
        ["--url", receiver.base_url + "/x", "--local-settings", str(settings), "--name", "mine"],
        local_env(server),
    )

    names = sorted(e["name"] for e in server.webhook_endpoints())
    assert names == ["mine", "someone-else"] and other_id in [e["id"] for e in server.webhook_endpoints()]


def test_a_missing_settings_file_is_created(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.settings.json"

    run(capsys, ["--url", receiver.base_url, "--local-settings", str(path)], local_env(server))

    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["IsEncrypted"] is False and saved["Values"]["AZURE_OPENAI_WEBHOOK_SECRET"].startswith("whsec_")
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_encrypted_settings_file_is_refused(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.write_text(json.dumps({"IsEncrypted": True, "Values": {}}), encoding="utf-8")

    _, printed = run(
        capsys, ["--url", receiver.base_url, "--local-settings", str(settings)], local_env(server), expect=1
    )

    assert "encrypted" in printed
    assert server.webhook_endpoints() == []  # refused before anything was registered


def test_a_refused_api_key_is_a_clear_error_exit(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path
) -> None:
    env = {**os.environ, **local_env(server), "AZURE_OPENAI_API_KEY": "wrong-key-0123456789"}
    before = settings.read_bytes()

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.register_webhook",
            "--url",
            receiver.base_url,
            "--local-settings",
            str(settings),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("register_webhook: listing webhook endpoints: HTTP 401: Access denied")
    assert "wrong-key-0123456789" not in done.stderr
    assert settings.read_bytes() == before and server.webhook_endpoints() == []


def test_a_refused_registration_shows_azures_reason(
    server: FakeAzureOpenAI, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, printed = run(
        capsys, ["--url", "http://example.com", "--local-settings", str(settings)], local_env(server), expect=1
    )

    assert "registering the webhook: HTTP 400: 'url' must use https." in printed
    assert "AZURE_OPENAI_WEBHOOK_SECRET" not in settings.read_text(encoding="utf-8")


def test_without_an_api_key_it_uses_an_entra_token(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credential = ScopedCredential()
    before = len(server.requests)

    run(
        capsys,
        ["--url", receiver.base_url, "--local-settings", str(settings)],
        {"AZURE_OPENAI_ENDPOINT": server.endpoint},
        credential=credential,
    )

    sent = server.requests[before:]
    assert [r.method for r in sent] == ["GET", "POST"]
    assert all(r.headers["authorization"] == f"Bearer {token_for(register_webhook.COGNITIVE_SCOPE)}" for r in sent)
    assert all("api-key" not in r.headers for r in sent)
    assert set(credential.scopes) == {register_webhook.COGNITIVE_SCOPE}
    assert len(credential.scopes) == 1  # one token, reused


def test_an_api_key_is_never_sent_as_a_bearer_token(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(server.requests)

    run(capsys, ["--url", receiver.base_url, "--local-settings", str(settings)], local_env(server))

    sent = server.requests[before:]
    assert sent and all(r.headers["api-key"] == API_KEY and "authorization" not in r.headers for r in sent)


def test_azure_mode_registers_the_webhook_functions_own_key_stores_in_key_vault_and_reloads_the_app(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = azure_env(server, azure, receiver)

    summary, printed = run(capsys, [], env, management_url=azure.url)

    [endpoint] = server.webhook_endpoints()
    key = azure.webhook_keys[KEY_NAME]  # created by the script, on the webhook function only
    assert len(key) >= 32 and key not in (FUNCTION_DEFAULT_KEY, *HOST_KEYS.values())
    assert endpoint["url"] == f"{receiver.base_url}/api/webhooks/azure-openai?code={key}"
    assert endpoint["name"] == "artifact-persister-func-1"
    secret = azure.vault[CURRENT]
    assert summary["url"] == f"{receiver.base_url}/api/webhooks/azure-openai?code=***"
    assert summary["app_reloaded"] is True and summary["changed"] is True
    assert summary["secret_stored_in"] == f"Key Vault {azure.url}: secret {CURRENT}"
    assert summary["previous_secret_kept_in"] is None and PREVIOUS not in azure.vault  # nothing to keep yet
    for never in (secret, key, API_KEY, FUNCTION_DEFAULT_KEY, *HOST_KEYS.values()):
        assert never not in printed
    assert azure.paths() == [
        f"{WEBHOOK_FUNCTION}/listkeys",
        f"{WEBHOOK_FUNCTION}/keys/{KEY_NAME}",  # PUT: the key did not exist yet
        f"/secrets/{CURRENT}",  # GET: nothing stored yet
        f"/secrets/{CURRENT}",  # PUT
        f"{SITE}/config/configreferences/appsettings/refresh",
        f"{SITE}/restart",
    ]
    end_a_run(server)
    [got] = receiver.wait(1)
    assert got.path.endswith(f"?code={key}")
    openai.OpenAI(api_key="x").webhooks.verify_signature(got.body, got.headers, secret=secret)

    again, printed = run(capsys, [], env, management_url=azure.url)

    assert again["changed"] is False and again["app_reloaded"] is False
    assert again["endpoint_id"] == summary["endpoint_id"] and azure.vault[CURRENT] == secret
    assert azure.webhook_keys[KEY_NAME] == key  # read, not made again
    assert azure.paths()[6:] == [f"{WEBHOOK_FUNCTION}/listkeys", f"/secrets/{CURRENT}"]
    assert secret not in printed and key not in printed


def test_the_host_keys_are_never_read_nor_registered(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A host key opens every HTTP function (start, status, import, cancel): anyone who can list the
    resource's webhook endpoints would read it. The URL carries the webhook function's key alone."""
    run(capsys, [], azure_env(server, azure, receiver), management_url=azure.url)

    assert not [path for path in azure.paths() if "/host/" in path]
    [endpoint] = server.webhook_endpoints()
    code = dict(parse_qsl(urlsplit(endpoint["url"]).query))["code"]
    assert code == azure.webhook_keys[KEY_NAME] and code not in HOST_KEYS.values()


def test_an_existing_key_of_the_webhook_function_is_reused(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    azure.webhook_keys[KEY_NAME] = "an-existing-webhook-function-key-0123456789"

    run(capsys, [], azure_env(server, azure, receiver), management_url=azure.url)

    [endpoint] = server.webhook_endpoints()
    assert endpoint["url"].endswith("?code=an-existing-webhook-function-key-0123456789")
    assert [method for method, path, _, _ in azure.calls if path.startswith(WEBHOOK_FUNCTION)] == ["POST"]


def test_azure_mode_replaces_the_registration_when_the_function_key_changes(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = azure_env(server, azure, receiver)
    first, _ = run(capsys, [], env, management_url=azure.url)
    old_secret = azure.vault[CURRENT]
    azure.webhook_keys[KEY_NAME] = "rotated-function-key-0123456789abcdef"  # renewed in the portal, say

    second, printed = run(capsys, [], env, management_url=azure.url)

    [endpoint] = server.webhook_endpoints()
    assert endpoint["id"] == second["endpoint_id"] and second["removed"] == [first["endpoint_id"]]
    assert endpoint["url"].endswith("?code=rotated-function-key-0123456789abcdef")
    assert "rotated-function-key-0123456789abcdef" not in printed and second["app_reloaded"] is True
    assert azure.vault[PREVIOUS] == old_secret != azure.vault[CURRENT]


def test_the_webhook_function_missing_is_a_clear_error(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**azure_env(server, azure, receiver), "AZURE_FUNCTION_APP_NAME": "func-undeployed"}

    _, printed = run(capsys, [], env, management_url=azure.url, expect=1)

    assert "the app has no function azure_openai_webhook (is the code deployed?" in printed
    assert server.webhook_endpoints() == [] and azure.vault == {}


def test_rotate_replaces_the_secret_and_keeps_the_old_one_accepted_until_the_next_rotation(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = azure_env(server, azure, receiver)
    first, _ = run(capsys, [], env, management_url=azure.url)
    original = azure.vault[CURRENT]
    azure.vault_writes.clear()

    rotated, printed = run(capsys, ["--rotate"], env, management_url=azure.url)

    [endpoint] = server.webhook_endpoints()
    assert rotated["changed"] is True and rotated["removed"] == [first["endpoint_id"]]
    assert endpoint["id"] == rotated["endpoint_id"] != first["endpoint_id"]
    new = azure.vault[CURRENT]
    assert new != original and azure.vault[PREVIOUS] == original
    assert azure.vault_writes == [PREVIOUS, CURRENT]  # the old one kept before the new one replaces it
    assert rotated["previous_secret_kept_in"] == f"Key Vault {azure.url}: secret {PREVIOUS}"
    assert rotated["app_reloaded"] is True and original not in printed and new not in printed
    end_a_run(server)
    [got] = receiver.wait(1)
    openai.OpenAI(api_key="x").webhooks.verify_signature(got.body, got.headers, secret=new)

    run(capsys, ["--rotate"], env, management_url=azure.url)

    assert azure.vault[PREVIOUS] == new and original not in azure.vault.values()  # retired


def test_rotate_locally_keeps_the_previous_secret_beside_the_new_one(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", receiver.base_url, "--local-settings", str(settings)]
    run(capsys, argv, local_env(server))
    original = stored_secret(settings)

    summary, _ = run(capsys, [*argv, "--rotate"], local_env(server))

    values = json.loads(settings.read_text(encoding="utf-8"))["Values"]
    assert values["AZURE_OPENAI_WEBHOOK_SECRET"] != original
    assert values["AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS"] == original
    assert summary["previous_secret_kept_in"] == f"{settings}: Values.AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS"


def test_azure_mode_names_every_missing_setting(server: FakeAzureOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    _, printed = run(capsys, [], {"AZURE_OPENAI_ENDPOINT": server.endpoint}, expect=1)

    for name in (
        "AZURE_KEY_VAULT_ENDPOINT",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "FUNCTION_APP_URL",
    ):
        assert name in printed
    assert server.webhook_endpoints() == []


def test_an_unauthorised_management_call_is_a_clear_error(
    server: FakeAzureOpenAI,
    receiver: WebhookReceiver,
    azure: AzureStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class WrongCredential(ScopedCredential):
        def get_token(self, *scopes: str, **_: Any) -> AccessToken:
            return AccessToken("not-a-management-token", int(time.time()) + 3600)

    _, printed = run(
        capsys, [], azure_env(server, azure, receiver), expect=1, credential=WrongCredential(), management_url=azure.url
    )

    assert "reading the webhook function's keys: HTTP 401" in printed
    assert server.webhook_endpoints() == []


@pytest.mark.parametrize(
    ("app_url", "key", "expected"),
    [
        ("https://app.example", "k1", "https://app.example/api/webhooks/azure-openai?code=k1"),
        ("https://app.example/", None, "https://app.example/api/webhooks/azure-openai"),
        ("https://app.example/api/webhooks/azure-openai", None, "https://app.example/api/webhooks/azure-openai"),
        (
            "https://app.example/base?code=old&x=1",
            "new",
            "https://app.example/base/api/webhooks/azure-openai?x=1&code=new",
        ),
    ],
)
def test_webhook_url(app_url: str, key: str | None, expected: str) -> None:
    assert register_webhook.webhook_url(app_url, key) == expected
    assert "k1" not in register_webhook.redact(expected) and "new" not in register_webhook.redact(expected)


def run_hook(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "register_webhook.sh"), *args],  # noqa: S607 - bash from PATH, as azd runs it
        env={**{k: v for k, v in os.environ.items() if k != "ARTIFACTS_REGISTER_WEBHOOK"}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_hook_does_nothing_unless_webhooks_are_wanted(server: FakeAzureOpenAI, settings: Path) -> None:
    done = run_hook(local_env(server), "--url", "https://app.example", "--local-settings", str(settings))

    assert done.returncode == 0, done.stderr
    assert "Webhook registration skipped: ARTIFACTS_REGISTER_WEBHOOK is not true" in done.stdout
    assert server.webhook_endpoints() == [] and "WEBHOOK_SECRET" not in settings.read_text(encoding="utf-8")


def test_the_hook_runs_the_script_when_webhooks_are_wanted(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, settings: Path
) -> None:
    env = local_env(server, ARTIFACTS_REGISTER_WEBHOOK="true")

    done = run_hook(env, "--url", receiver.base_url, "--local-settings", str(settings))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["endpoint_id"] == server.webhook_endpoints()[0]["id"]
    assert stored_secret(settings) not in done.stdout + done.stderr


def test_errors_are_scrubbed_of_every_secret_in_every_form_and_of_nothing_else() -> None:
    api = register_webhook.Api(httpx.Client(), secrets=["k3y/with+chars=="])
    api.secrets.append("")  # an unset API key is appended as "" in Azure: it must not blank out every gap
    text = "listing failed for https://app/api/webhooks/azure-openai?code=k3y%2Fwith%2Bchars%3D%3D (k3y/with+chars==)"
    assert api.scrub(text) == "listing failed for https://app/api/webhooks/azure-openai?code=*** (***)"
