"""Azure OpenAI details that moved in its 2026 documentation are settings, with the old values as
defaults: the Entra ID token's scope (AZURE_OPENAI_TOKEN_SCOPE) and the container routes'
api-version (AZURE_OPENAI_CONTAINER_API_VERSION)."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError, UpstreamError
from shared.runtime import build_runtime
from shared.settings import CONTAINER_API_VERSION, TOKEN_SCOPE, load_settings
from tests.conftest import API_KEY, DEPLOYMENT, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile
from tests.support.azurite import Azurite
from tests.support.credentials import RecordingCredential

FOUNDRY_SCOPE = "https://ai.azure.com/.default"



def settings_for(fake: FakeAzureOpenAI, azurite: Azurite, **extra: str) -> dict[str, str]:
    return {"AZURE_OPENAI_ENDPOINT": fake.endpoint, "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
            "AzureWebJobsStorage": azurite.connection_string, **extra}


def test_the_defaults_are_the_values_the_app_used_before() -> None:
    assert TOKEN_SCOPE.default == "https://cognitiveservices.azure.com/.default"
    assert CONTAINER_API_VERSION.default == "preview"


@pytest.mark.parametrize("scope", [None, FOUNDRY_SCOPE])
def test_tokens_are_asked_for_the_configured_scope(
    fake: FakeAzureOpenAI, azurite: Azurite, app_env: AppEnv, scope: str | None
) -> None:
    extra = {"AZURE_OPENAI_TOKEN_SCOPE": scope} if scope else {}
    credential = RecordingCredential()
    runtime = build_runtime(load_settings(settings_for(fake, azurite, **extra)), credential=credential)
    container = fake.add_container(FakeContainer([FakeFile(b"x", "/mnt/data/x.txt")]))
    assert len(list(runtime.openai.list_container_files(container.container_id))) == 1
    assert credential.scopes == [(scope or TOKEN_SCOPE.default,)]


@pytest.mark.parametrize("version", [None, "2099-01-01-preview"])
def test_the_container_routes_send_the_configured_api_version(
    fake: FakeAzureOpenAI, azurite: Azurite, app_env: AppEnv, version: str | None
) -> None:
    extra = {"AZURE_OPENAI_CONTAINER_API_VERSION": version} if version else {}
    runtime = build_runtime(load_settings(settings_for(fake, azurite, AZURE_OPENAI_API_KEY=API_KEY, **extra)))
    file = FakeFile(b"bytes", "/mnt/data/x.txt")
    container = fake.add_container(FakeContainer([file]))
    before = len(fake.requests)
    if version is None:
        assert len(list(runtime.openai.list_container_files(container.container_id))) == 1
        with runtime.openai.open_file_content(container.container_id, file.file_id) as answer:
            assert answer.read() == b"bytes"
    else:  # the fake, like Azure today, knows only preview on these routes
        with pytest.raises(UpstreamError):
            list(runtime.openai.list_container_files(container.container_id))
    sent = [r for r in fake.requests[before:] if "/containers/" in r.path]
    assert sent and {r.query["api-version"] for r in sent} == {version or "preview"}


@pytest.mark.parametrize(("name", "value"), [
    ("AZURE_OPENAI_TOKEN_SCOPE", "https://ai.azure.com"),
    ("AZURE_OPENAI_TOKEN_SCOPE", "http://ai.azure.com/.default"),
    ("AZURE_OPENAI_TOKEN_SCOPE", "api://something/.default x"),
    ("AZURE_OPENAI_CONTAINER_API_VERSION", "preview&x=1"),
    ("AZURE_OPENAI_CONTAINER_API_VERSION", "-preview"),
])
def test_a_malformed_value_is_a_settings_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d",
                       "AzureWebJobsStorage": "UseDevelopmentStorage=true", name: value})
