"""The webhook latency benchmark's plumbing, on a scaled clock: one short run per mode reaches its
first blob, the webhook one through a signed delivery alone, and the report renders. Timings are
the benchmark's to print, never asserted here."""

from __future__ import annotations

import dataclasses

import pytest

from bench.webhook_latency import measure_runs, render, webhook_registered
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI
from tests.support.host import FunctionsHost


def test_one_short_run_per_mode_lands_and_renders(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polling: a look every second finds the end.
    monkeypatch.setenv("ARTIFACTS_POLL_MIN_SECONDS", "1")
    monkeypatch.setenv("ARTIFACTS_POLL_MAX_SECONDS", "1")
    polled = measure_runs(host, fake, app_env.artifacts(), mode="polling", lengths=[0.3], repeats=1, timeout=20)
    # Webhook: the first look is an hour away, so only the delivery can move the run on.
    monkeypatch.setenv("ARTIFACTS_POLL_MIN_SECONDS", "3600")
    monkeypatch.setenv("ARTIFACTS_POLL_MAX_SECONDS", "3600")
    with webhook_registered(host, fake, lambda secret: monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", secret)):
        hooked = measure_runs(host, fake, app_env.artifacts(), mode="webhook", lengths=[0.3], repeats=1, timeout=20)

    (poll,), (hook,) = polled, hooked
    assert poll.deliveries == 0 and poll.gets >= 1 and poll.committed_at > poll.ended_at
    assert hook.deliveries == 1 and hook.gets == 1 and hook.committed_at > hook.ended_at
    assert hook.last_modified <= hook.committed_at

    report = render({
        "runs": [dataclasses.asdict(r) for r in (*polled, *hooked)], "repeats": 1, "lengths": [0.3],
        "load_before": [0.0, 0.0, 0.0], "load_after": [0.0, 0.0, 0.0], "minutes": 0.1, "cores": 2,
    })
    assert "| 0.3 s |" in report and "Webhook deliveries answered 2xx: 1 of 1 runs" in report
