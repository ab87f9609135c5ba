"""Session-wide real services: Azurite and the fake Azure OpenAI, both on loopback."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.fake_openai import FakeAzureOpenAI
from tests.support.azurite import Azurite, start_azurite
from tests.support.host import FunctionsHost

API_KEY = "test-key-0123456789abcdef"
DEPLOYMENT = "gpt-test"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    emulator = start_azurite()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeAzureOpenAI]:
    server = FakeAzureOpenAI(api_key=API_KEY).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fault a test injected but did not use up must not reach the next test."""
    yield
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").clear_faults()
        request.getfixturevalue("fake").clear_webhooks()  # no later test's run reaches this test's receiver


@dataclass
class AppEnv:
    queue: str
    runs_queue: str
    events_queue: str
    container: str
    status_container: str
    blobs: BlobServiceClient

    def artifacts(self) -> ContainerClient:
        return self.blobs.get_container_client(self.container)

    def status(self) -> ContainerClient:
        return self.blobs.get_container_client(self.status_container)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, azurite: Azurite, fake: FakeAzureOpenAI) -> AppEnv:
    """App settings pointing at Azurite and the fake, with storage names unique to the test."""
    suffix = uuid.uuid4().hex[:12]
    env = AppEnv(
        queue=f"q-{suffix}",
        runs_queue=f"runs-{suffix}",
        events_queue=f"events-{suffix}",
        container=f"artifacts-{suffix}",
        status_container=f"status-{suffix}",
        blobs=BlobServiceClient.from_connection_string(azurite.connection_string),
    )
    for name, value in {
        "AZURE_OPENAI_ENDPOINT": fake.endpoint,
        "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": API_KEY,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARTIFACTS_QUEUE": env.queue,
        "ARTIFACTS_RUNS_QUEUE": env.runs_queue,
        "ARTIFACTS_EVENTS_QUEUE": env.events_queue,
        # The watcher's schedule, shortened so a test follows many polls in moments.
        "ARTIFACTS_POLL_MIN_SECONDS": "1",
        "ARTIFACTS_POLL_MAX_SECONDS": "1",
        "ARTIFACTS_CONTAINER": env.container,
        "ARTIFACTS_STATUS_CONTAINER": env.status_container,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "ARTIFACTS_STORAGE_CONNECTION",
        "AZURE_OPENAI_BACKGROUND",
        "ARTIFACTS_RUN_MAX_HOURS",
        "AZURE_OPENAI_WEBHOOK_SECRET",
        "ARTIFACTS_WEBHOOK_CAPTURE",
        "ARTIFACTS_LINK_MINUTES",
        "WEBSITE_AUTH_ENABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.fixture
def host(app_env: AppEnv, azurite: Azurite) -> FunctionsHost:
    """The app loaded as the worker loads it, under this test's settings."""
    import function_app  # noqa: PLC0415 - loaded under this test's settings

    importlib.reload(function_app)  # bindings (the queue name) are read when the module loads
    return FunctionsHost(function_app.app, azurite.connection_string)
