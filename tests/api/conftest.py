"""Fixtures the API tests share: Easy Auth on, and the app's blobs behind a proxy that sees (and
can refuse) every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import AppEnv
from tests.support.azurite import Azurite
from tests.support.storage_faults import BlobFaults, blob_faults


@pytest.fixture
def easy_auth_on(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform's Easy Auth: the app trusts the caller headers (tests.support.principals)."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


@pytest.fixture
def app_blobs(app_env: AppEnv, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlobFaults]:
    """The app's blobs (run records, claims, artifacts) through the proxy; its queues stay on Azurite."""
    with blob_faults(azurite) as proxy:
        monkeypatch.setenv("ARTIFACTS_STORAGE_CONNECTION", proxy.connection_string)
        yield proxy
