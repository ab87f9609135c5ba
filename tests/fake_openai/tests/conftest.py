"""The fake's own tests share one running fake and one client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fake_openai import FakeAzureOpenAI

API_KEY = "fake-test-key"


@pytest.fixture
def server() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def http(server: FakeAzureOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint, headers={"api-key": API_KEY}, timeout=10) as client:
        yield client
