"""Session-wide real services: Azurite and the fake Azure OpenAI, both on loopback."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.fake_openai import FakeAzureOpenAI
from tests.support.azurite import Azurite, start_azurite
from tests.support.host import FunctionsHost

API_KEY = "test-key-0123456789abcdef"
DEPLOYMENT = "gpt-test"

# ``unit``: a test that needs no Azurite and starts no child process; ``pytest -m unit`` runs them
# alone, in seconds. Decided from each test's fixture closure and the two lists below; a test marked
# ``unit`` that starts a process anyway fails (see _unit_tests_start_no_process).
#
# Fixtures that start Azurite (a child process): directly, or by asking for one by name
# (test_links's ``place`` and ``delegated`` call request.getfixturevalue, invisible in the closure).
# ``app_env`` and ``host`` need ``azurite``, so every test through them is in the closure already.
AZURITE_FIXTURES = frozenset({"azurite", "restartable_azurite", "oauth_azurite", "place", "delegated"})
# Fixtures that start another child process: the probe app in a fresh worker (tests/app/test_worker_path.py).
PROCESS_FIXTURES = frozenset({"worker_probe"})
# Tests that start Azurite or another child process in their own body, not through a fixture:
# "module::test function".
STARTS_PROCESSES = frozenset({
    "tests.harness.test_harness::test_nothing_lost_across_instances_and_faults",  # Azurite and instances
    "tests.bench.test_latency_proxy::test_the_command_line_serves_a_control_port",
    "tests.test_register_webhook::test_a_refused_api_key_is_a_clear_error_exit",
    "tests.test_register_webhook::test_the_hook_does_nothing_unless_webhooks_are_wanted",
    "tests.test_register_webhook::test_the_hook_runs_the_script_when_webhooks_are_wanted",
    "tests.infra.test_local_settings::test_has_answers_by_exit_status_and_prints_nothing",
    "tests.test_newcomer::test_make_test_without_python_313_says_so_in_one_line",
    "tests.test_newcomer::test_make_test_without_python_313_for_the_checks_says_so_in_one_line_and_still_runs_pytest",
    "tests.test_newcomer::test_make_help_lists_every_target_with_what_it_does",
})


def _test_key(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    return f"{module.__name__ if module else item.nodeid}::{getattr(item, 'originalname', item.name)}"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules = {module.__name__: module for item in items if (module := getattr(item, "module", None))}
    stale = sorted(
        key for key in STARTS_PROCESSES
        if (name := key.split("::")[0]) in modules and not hasattr(modules[name], key.split("::")[1])
    )
    if stale:
        raise pytest.UsageError(f"tests/conftest.py STARTS_PROCESSES names tests that do not exist: {stale}")
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if AZURITE_FIXTURES.isdisjoint(fixtures) and PROCESS_FIXTURES.isdisjoint(fixtures) \
                and _test_key(item) not in STARTS_PROCESSES:
            item.add_marker(pytest.mark.unit)


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
def _unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``unit`` test that starts a child process (Azurite or any other) fails, naming the command:
    the lists above are then wrong, and the test belongs in one of them."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(self: subprocess.Popen[Any], args: Any, *_: Any, **__: Any) -> NoReturn:
        raise AssertionError(f"a unit test started a process ({args!r}): list it in tests/conftest.py")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


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
    """The host stand-in with the real worker, which imports the app anew under this test's
    settings (bindings, such as the queue names, are read when the module loads)."""
    return FunctionsHost(azurite.connection_string)
