"""An error answer that only configuration can cure names the setting to fix (issue 20): no Entra ID
token (AZURE_OPENAI_API_KEY or `az login`), a create route that does not exist (the form of
AZURE_OPENAI_ENDPOINT), a deployment that does not exist, webhooks without their secret."""

from __future__ import annotations

import importlib
import json
from typing import Any, NoReturn

import azure.identity
import pytest
from azure.identity import CredentialUnavailableError

from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI
from tests.support.host import FunctionsHost


def post(host: FunctionsHost) -> tuple[int, dict[str, Any]]:
    call = host.http("POST", "responses", body=json.dumps({"input": "chart the sales"}).encode())
    error: dict[str, Any] = call.json()["error"]
    return call.response.status_code, error


class NoCredential:
    """What DefaultAzureCredential does on a machine with no sign-in and no managed identity."""

    def __init__(self, **_: Any) -> None:
        pass

    def get_token(self, *scopes: str, **_: Any) -> NoReturn:
        raise CredentialUnavailableError(message="DefaultAzureCredential failed to retrieve a token")


def test_no_key_and_no_token_names_the_key_setting_and_az_login(
    host: FunctionsHost, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", NoCredential)
    status, error = post(host)
    assert (status, error["code"]) == (500, "credential_unavailable")
    assert "AZURE_OPENAI_API_KEY" in error["message"] and "az login" in error["message"]


def test_a_404_on_the_create_route_says_to_check_the_form_of_the_endpoint(
    app_env: AppEnv, fake: FakeAzureOpenAI, monkeypatch: pytest.MonkeyPatch, host: FunctionsHost
) -> None:
    # A deployment URL of the old API where the resource URL belongs: /openai/v1/responses under it is no route.
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", f"{fake.endpoint}/openai/deployments/gpt-test")
    status, error = post(host)
    assert (status, error["code"]) == (502, "upstream_error")
    assert "check the form of AZURE_OPENAI_ENDPOINT" in error["message"]
    assert error["upstream"]["status"] == 404


def test_a_404_naming_the_deployment_says_to_check_the_deployment(
    host: FunctionsHost, fake: FakeAzureOpenAI
) -> None:
    fake.fail_next("/openai/v1/responses", 404, {"error": {
        "code": "DeploymentNotFound",
        "message": "The API deployment for this resource does not exist. If you created the deployment within the "
                   "last 5 minutes, please wait a moment and try again."}})
    status, error = post(host)
    assert (status, error["code"]) == (502, "upstream_error")
    assert "AZURE_OPENAI_DEPLOYMENT" in error["message"]


def test_a_404_on_a_read_says_to_check_the_form_of_the_endpoint(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    fake.fail_next("/openai/v1/responses/", 404, {"error": {"code": "404", "message": "Resource not found"}}, times=10)
    call = host.http("POST", "responses/resp_elsewhere/import")
    error = call.json()["error"]
    assert (call.response.status_code, error["code"]) == (502, "upstream_route_not_found")
    assert "check the form of AZURE_OPENAI_ENDPOINT" in error["message"]


def test_webhooks_without_a_secret_name_the_secret_setting(host: FunctionsHost) -> None:
    call = host.http("POST", "webhooks/azure-openai", body=b"{}",
                     headers={"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"})
    error = call.json()["error"]
    assert (call.response.status_code, error["code"]) == (401, "webhook_not_configured")
    assert "AZURE_OPENAI_WEBHOOK_SECRET" in error["message"]


def test_the_hints_are_one_module_s_constants() -> None:
    answers = importlib.import_module("shared.api.answers")
    assert "AZURE_OPENAI_ENDPOINT" in answers.ENDPOINT_FORM
    assert "AZURE_OPENAI_API_KEY" in answers.CREDENTIAL_HINT and "az login" in answers.CREDENTIAL_HINT
