"""Settings: validated once, errors name the setting, secrets never in repr."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import QueueNames, load_settings, queue_names

BASE = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4.1",
    "AZURE_OPENAI_API_KEY": "sekrit-key",
    "AzureWebJobsStorage": (
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VrcmV0;EndpointSuffix=core.windows.net"
    ),
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://res.openai.azure.com", "https://res.openai.azure.com"),
        ("https://res.openai.azure.com/", "https://res.openai.azure.com"),
        ("https://res.openai.azure.com/openai/v1/", "https://res.openai.azure.com"),
        ("https://res.openai.azure.com/openai", "https://res.openai.azure.com"),
        ("http://127.0.0.1:8089", "http://127.0.0.1:8089"),
    ],
)
def test_endpoint_forms(raw: str, expected: str) -> None:
    assert load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": raw}).endpoint == expected


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.queues.artifacts == "artifact-downloads"
    assert settings.artifacts_container == "artifacts"
    assert settings.status_container == "artifact-status"
    assert not settings.uses_entra_id


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"AZURE_OPENAI_ENDPOINT": "ftp://x", "ARTIFACTS_QUEUE": "Bad_Name"})
    message = str(caught.value)
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "AzureWebJobsStorage", "ARTIFACTS_QUEUE"):
        assert name in message


@pytest.mark.parametrize(
    "raw",
    ["http://127.0.0.1:8089", "http://127.9.8.7", "http://localhost:1", "http://LOCALHOST:1/openai/v1", "http://[::1]:2"],
)
def test_plain_http_is_accepted_for_loopback(raw: str) -> None:
    assert load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": raw}).endpoint.startswith("http://")


@pytest.mark.parametrize(
    "raw",
    [
        "http://my-resource.openai.azure.com",
        "http://10.0.0.1",
        "http://128.0.0.1",
        "http://[::2]:2",
        "http://[::ffff:10.0.0.1]",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "HTTP://my-resource.openai.azure.com/openai/v1/",
    ],
)
def test_plain_http_is_refused_beyond_loopback(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": raw})
    [problem] = caught.value.problems
    assert "AZURE_OPENAI_ENDPOINT" in problem
    assert "https://" in problem and "loopback" in problem and "cleartext" in problem


def test_https_is_accepted_for_any_host() -> None:
    assert load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": "https://10.0.0.1"}).endpoint == "https://10.0.0.1"


@pytest.mark.parametrize("value", ["https://x.example/?a=1", "https://user:pw@x.example", "not a url", "https://"])
def test_malformed_endpoints_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": value})


def test_timeout_must_fit_an_http_request() -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_TIMEOUT_SECONDS"):
        load_settings({**BASE, "AZURE_OPENAI_TIMEOUT_SECONDS": "300"})
    assert load_settings({**BASE, "AZURE_OPENAI_TIMEOUT_SECONDS": "30"}).timeout_seconds == 30


def test_secrets_stay_out_of_repr() -> None:
    text = repr(load_settings(BASE))
    assert "sekrit-key" not in text and "c2VrcmV0" not in text


def test_no_key_means_entra_id() -> None:
    settings = load_settings({k: v for k, v in BASE.items() if k != "AZURE_OPENAI_API_KEY"})
    assert settings.uses_entra_id


def test_development_storage_shorthand_is_expanded() -> None:
    settings = load_settings({**BASE, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert settings.storage.connection_string is not None
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1" in settings.storage.connection_string


def test_dedicated_artifact_storage_wins() -> None:
    settings = load_settings({**BASE, "ARTIFACTS_STORAGE_CONNECTION": "UseDevelopmentStorage=true"})
    assert settings.storage.connection_string is not None
    assert "devstoreaccount1" in settings.storage.connection_string


def test_identity_based_storage() -> None:
    env = {k: v for k, v in BASE.items() if k != "AzureWebJobsStorage"}
    settings = load_settings(
        {
            **env,
            "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net/",
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net/",
            "AzureWebJobsStorage__clientId": "abc",
        }
    )
    assert settings.storage.account_url == "https://acct.blob.core.windows.net"
    assert settings.storage.client_id == "abc"
    assert settings.storage.connection_string is None
    assert settings.queue_storage.account_url == "https://acct.queue.core.windows.net"
    # The queue triggers need the queue service as much as the host does: its absence is named.
    with pytest.raises(ConfigError, match="AzureWebJobsStorage__queueServiceUri"):
        load_settings({**env, "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net/"})


def test_queue_name_settings() -> None:
    assert queue_names({}) == QueueNames("artifact-downloads", "artifact-runs", "artifact-events")
    assert queue_names({"ARTIFACTS_QUEUE": "jobs", "ARTIFACTS_RUNS_QUEUE": "watch"}).artifacts == "jobs"
    assert queue_names({"ARTIFACTS_RUNS_QUEUE": "watch"}).runs == "watch"
    assert QueueNames.poison("jobs") == "jobs-poison"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"ARTIFACTS_QUEUE": "x" * 57}, "ARTIFACTS_QUEUE"),  # its poison queue would be 64 characters
        ({"ARTIFACTS_RUNS_QUEUE": "Runs"}, "ARTIFACTS_RUNS_QUEUE"),
        ({"ARTIFACTS_EVENTS_QUEUE": "artifact-downloads"}, "distinct"),
        ({"ARTIFACTS_RUNS_QUEUE": "artifact-downloads-poison"}, "distinct"),
        ({"AZURE_OPENAI_BACKGROUND": "maybe"}, "AZURE_OPENAI_BACKGROUND"),
        ({"ARTIFACTS_RUN_MAX_HOURS": "0"}, "ARTIFACTS_RUN_MAX_HOURS"),
        ({"ARTIFACTS_POLL_MIN_SECONDS": "-1"}, "ARTIFACTS_POLL_MIN_SECONDS"),
        # 0 times any growth stays 0: the watcher would poll Azure OpenAI in a hot loop.
        ({"ARTIFACTS_POLL_MIN_SECONDS": "0"}, "ARTIFACTS_POLL_MIN_SECONDS must be a whole number of seconds from 1"),
        ({"ARTIFACTS_POLL_MAX_SECONDS": "0"}, "ARTIFACTS_POLL_MAX_SECONDS must be a whole number of seconds from 1"),
        ({"ARTIFACTS_POLL_MIN_SECONDS": "10", "ARTIFACTS_POLL_MAX_SECONDS": "5"}, "ARTIFACTS_POLL_MAX_SECONDS"),
    ],
)
def test_watcher_settings_are_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings({**BASE, **env})


def test_watcher_settings() -> None:
    settings = load_settings(BASE)
    assert settings.background is True
    assert settings.run_max_seconds == 6 * 3600
    assert (settings.poll_min_seconds, settings.poll_max_seconds) == (2, 30)
    changed = load_settings({**BASE, "AZURE_OPENAI_BACKGROUND": "false", "ARTIFACTS_RUN_MAX_HOURS": "0.5"})
    assert changed.background is False
    assert changed.run_max_seconds == 1800


def test_queues_use_the_host_storage_even_when_artifacts_go_elsewhere() -> None:
    dedicated = "DefaultEndpointsProtocol=https;AccountName=b;AccountKey=c2VrcmV0;EndpointSuffix=core.windows.net"
    settings = load_settings({**BASE, "ARTIFACTS_STORAGE_CONNECTION": dedicated})
    assert settings.storage.connection_string == dedicated
    assert settings.queue_storage.connection_string == BASE["AzureWebJobsStorage"]
    identity = {k: v for k, v in BASE.items() if k != "AzureWebJobsStorage"}
    by_identity = load_settings({**identity, "AzureWebJobsStorage__accountName": "acct"})
    assert by_identity.queue_storage.account_url == "https://acct.queue.core.windows.net"
    assert by_identity.storage.account_url == "https://acct.blob.core.windows.net"
