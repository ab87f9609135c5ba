"""A fake Azure OpenAI v1 endpoint for tests: real HTTP on loopback, standard library only."""

from tests.fake_openai.deliveries import WebhookDelivery
from tests.fake_openai.receiver import Received, WebhookReceiver
from tests.fake_openai.server import (
    CreateFault,
    FakeApiError,
    FakeAzureOpenAI,
    FakeContainer,
    FakeFile,
    FakeImage,
    RecordedRequest,
    Scenario,
    SlowBody,
    UploadedFile,
    demo_scenario,
    named_scenario,
    png_bytes,
)
from tests.fake_openai.webhooks import RESPONSE_EVENT_TYPES, event_body, sign

__all__ = [
    "RESPONSE_EVENT_TYPES",
    "CreateFault",
    "FakeApiError",
    "FakeAzureOpenAI",
    "FakeContainer",
    "FakeFile",
    "FakeImage",
    "Received",
    "RecordedRequest",
    "Scenario",
    "SlowBody",
    "UploadedFile",
    "WebhookDelivery",
    "WebhookReceiver",
    "demo_scenario",
    "event_body",
    "named_scenario",
    "png_bytes",
    "sign",
]
