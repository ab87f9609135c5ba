"""Without an API key the app authenticates with Entra ID: Bearer tokens for the right scope."""

from __future__ import annotations

import uuid

from shared.pipeline.persist import persist_message
from shared.runtime import build_runtime
from shared.settings import load_settings
from shared.storage.messages import ArtifactMessage
from tests.conftest import DEPLOYMENT, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile
from tests.support.azurite import Azurite
from tests.support.credentials import RecordingCredential


def test_bearer_token_for_cognitive_services(fake: FakeAzureOpenAI, azurite: Azurite, app_env: AppEnv) -> None:
    settings = load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": fake.endpoint + "/openai/v1/",
            "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
            "AzureWebJobsStorage": azurite.connection_string,
            "ARTIFACTS_CONTAINER": app_env.container,
            "ARTIFACTS_STATUS_CONTAINER": app_env.status_container,
        }
    )
    assert settings.uses_entra_id
    credential = RecordingCredential()
    runtime = build_runtime(settings, credential=credential)

    file = FakeFile(b"entra bytes", "/mnt/data/entra.txt")
    container = fake.add_container(FakeContainer([file]))
    response_id = f"resp_{uuid.uuid4().hex}"
    message = ArtifactMessage(
        response_id=response_id,
        container_id=container.container_id,
        file_id=file.file_id,
        filename="entra.txt",
        blob_name=f"{response_id}/{file.file_id}/entra.txt",
    )
    before = len(fake.requests)
    stored = persist_message(runtime, message.to_json().encode())

    assert stored is not None and stored.size == len(file.content)
    assert app_env.artifacts().get_blob_client(message.blob_name).download_blob().readall() == file.content
    assert credential.scopes and all(s == ("https://cognitiveservices.azure.com/.default",) for s in credential.scopes)
    sent = fake.requests[before:]
    assert sent, "the download reached the fake"
    for request in sent:
        assert request.headers["authorization"] == "Bearer test-token"
        assert "api-key" not in request.headers
