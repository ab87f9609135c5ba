"""A body that keeps trickling in cannot hold a delivery past its deadline (half of functionTimeout).

Every read gets a byte well inside the read timeout, so only a deadline checked on every read
stops it; checked once per 4 MiB block, the delivery runs until the whole body has arrived,
however long that takes (in production: until the host kills the worker at functionTimeout).
"""

from __future__ import annotations

import os

import pytest

from shared.errors import DeliveryTimeUp
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeFile
from tests.support.flow import discovered_on_a_short_deadline, status
from tests.support.host import FunctionsHost


def test_a_trickling_body_is_dropped_at_the_deliverys_deadline(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # functionTimeout 4 s: a delivery may take 2 s. A byte every 50 ms keeps every read inside the
    # read timeout (10 s); the whole body would take 400 x 50 ms = 20 s.
    file = FakeFile(os.urandom(400), "/mnt/data/drip.bin", cite="real")
    answer = discovered_on_a_short_deadline(host, fake, monkeypatch, file)
    body = fake.trickle_next_download(byte_every_seconds=0.05)

    (delivery,) = host.deliver("persist_artifact", max_rounds=1)
    assert delivery.error is not None and delivery.error.exception_type == DeliveryTimeUp.__name__, repr(delivery.error)
    assert body.ended.wait(timeout=30)  # the fake notices the client left at its next byte
    assert not body.whole, f"the client read all {body.sent} bytes before stopping"
    assert body.sent < body.total
    assert status(host, answer["response_id"])["artifacts"][0]["state"] == "pending"

    # The next delivery, at normal speed, stores the file whole.
    assert all(d.error is None for d in host.deliver("persist_artifact", until_empty=True))
    artifact = status(host, answer["response_id"])["artifacts"][0]
    assert artifact["state"] == "persisted"
    assert app_env.artifacts().download_blob(artifact["blob_name"]).readall() == file.content
