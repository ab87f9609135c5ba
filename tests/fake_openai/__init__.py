"""A fake Azure OpenAI v1 endpoint for tests: real HTTP on loopback, standard library only."""

from tests.fake_openai.server import (
    FakeApiError,
    FakeAzureOpenAI,
    FakeContainer,
    FakeFile,
    RecordedRequest,
    Scenario,
    demo_scenario,
    png_bytes,
)

__all__ = [
    "FakeApiError",
    "FakeAzureOpenAI",
    "FakeContainer",
    "FakeFile",
    "RecordedRequest",
    "Scenario",
    "demo_scenario",
    "png_bytes",
]
