"""Run end -> first blob: how much sooner a webhook lands a run's files than the watcher's polls do.

    .venv/bin/python -m bench.webhook_latency [--repeats 3] [--lengths 5 20 45]

Prints a Markdown section. :func:`run` answers the same text, measured in a fresh interpreter
(the app reads its settings when it loads, so the measurement gets a process of its own).

How it measures, in that interpreter: Azurite (in memory), the fake Azure OpenAI and the app (the
tests' stand-in for the Functions host, ``tests/support/host.py``, moving real Azurite queue
messages and honouring their visibility delays, each invocation through the real worker library).
Each run is started with ``POST /api/responses`` (a background run with one 64 KiB file) and
stays running until a timer calls the fake's ``finish()`` a set number of seconds later: the
moment of that call (``time.time()``) is the run's end. The first blob's moment is when the app's
blob write (``ArtifactStore.write``, the Put Blob answered by Azurite) returned, taken in the same
process by wrapping that method; each is checked against the blob's Last-Modified, which Storage
gives to the second.

Polling: no webhook registered; the watcher's delayed queue messages find the end. Webhook: the
fake's signed delivery reaches ``POST /api/webhooks/azure-openai`` over real HTTP (the tests'
loopback HTTP front, with the function key), and the delayed polls still run as the safety net.
Both at the production schedule (ARTIFACTS_POLL_MIN_SECONDS 2 doubling to ARTIFACTS_POLL_MAX_SECONDS
30). Every run of one mode is in flight at once; the modes run one after the other, on queues and
containers of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

    from tests.fake_openai import FakeAzureOpenAI
    from tests.support.host import FunctionsHost

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (5.0, 20.0, 45.0)  # seconds from start to end; none on a look of the schedule (see render)
PRODUCTION_POLL = (2, 30)  # ARTIFACTS_POLL_MIN_SECONDS, ARTIFACTS_POLL_MAX_SECONDS: the defaults
FILE_BYTES = 64 * 1024
API_KEY = "bench-webhook-key"
DEPLOYMENT = "bench"
WORKERS = 8  # invocations the host stand-in runs at once per received batch
REPEAT_GAP_SECONDS = 0.5  # between the starts of one repeat and the next, so equal runs do not end together
MODES = ("webhook", "polling")
WEBHOOK_ROUTE = "webhooks/azure-openai"


@dataclass(frozen=True)
class RunResult:
    mode: str  # "webhook" or "polling"
    length: float  # seconds from the POST's answer to finish()
    ended_at: float  # time.time() when finish() was called
    committed_at: float  # time.time() when the first artifact blob's write returned
    last_modified: float  # that blob's Last-Modified (whole seconds), as Unix time
    gets: int  # GETs of the response the fake answered
    deliveries: int  # webhook deliveries the app answered 2xx

    @property
    def latency(self) -> float:
        return self.committed_at - self.ended_at


class CommitClock:
    """Records, per response id, when the app's first artifact blob write returned (Put Blob or
    the block list commit answered by Storage). Blob names start with ``{response_id}/``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: dict[str, float] = {}

    @contextlib.contextmanager
    def watching(self) -> Iterator[CommitClock]:
        from shared.storage.artifact_blobs import ArtifactStore  # noqa: PLC0415 - the app, loaded by the caller's settings

        original = ArtifactStore.write
        clock = self

        def timed_write(store: ArtifactStore, *args: Any, **kwargs: Any) -> Any:
            stored = original(store, *args, **kwargs)
            now = time.time()
            blob_name = str(kwargs["blob_name"] if "blob_name" in kwargs else args[0])
            with clock._lock:
                clock.first.setdefault(blob_name.split("/", 1)[0], now)
            return stored

        ArtifactStore.write = timed_write  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            ArtifactStore.write = original  # type: ignore[method-assign]

    def has(self, response_ids: Sequence[str]) -> bool:
        with self._lock:
            return all(rid in self.first for rid in response_ids)


def measure_runs(
    host: FunctionsHost,
    fake: FakeAzureOpenAI,
    artifacts: ContainerClient,  # the app's artifact container
    *,
    mode: str,
    lengths: Sequence[float],
    repeats: int,
    timeout: float,
) -> list[RunResult]:
    """Start ``repeats`` runs of each length, end each on its timer, and deliver queue messages
    until every run's first blob is written. With ``mode == "webhook"`` the caller has registered
    the app's webhook at the fake (see :func:`webhook_registered`)."""
    from tests.fake_openai import FakeContainer, FakeFile, Scenario  # noqa: PLC0415

    ended: dict[str, float] = {}
    lengths_of: dict[str, float] = {}
    timers: list[threading.Timer] = []

    def end(response_id: str) -> None:
        ended[response_id] = time.time()
        fake.finish(response_id)

    with CommitClock().watching() as clock:
        try:
            for repeat in range(repeats):
                if repeat:
                    time.sleep(REPEAT_GAP_SECONDS)
                for length in lengths:
                    prompt = f"bench webhook latency {uuid.uuid4().hex}"
                    made = FakeFile(os.urandom(FILE_BYTES), "/mnt/data/result.bin", cite="real")
                    # Running for every GET the benchmark could make: only the timer ends it.
                    fake.register(prompt, Scenario([FakeContainer([made])], polls_before_done=10**9))
                    call = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode())
                    if call.response.status_code != 202:
                        raise RuntimeError(f"POST /api/responses answered {call.response.status_code}")
                    response_id = str(call.json()["response_id"])
                    lengths_of[response_id] = length
                    timer = threading.Timer(length, end, args=(response_id,))
                    timer.daemon = True
                    timers.append(timer)
                    timer.start()
            started = list(lengths_of)
            host.run_until(lambda: clock.has(started), timeout=timeout, workers=WORKERS)
        finally:
            for timer in timers:
                timer.cancel()
    results = []
    deliveries = fake.webhook_deliveries()
    for response_id, length in lengths_of.items():
        blob = next(iter(artifacts.list_blobs(name_starts_with=f"{response_id}/")))
        results.append(RunResult(
            mode=mode,
            length=length,
            ended_at=ended[response_id],
            committed_at=clock.first[response_id],
            last_modified=blob.last_modified.timestamp(),
            gets=int(fake.polls(response_id)),
            deliveries=sum(1 for d in deliveries if d.response_id == response_id and d.ok),
        ))
    return results


@contextlib.contextmanager
def webhook_registered(host: FunctionsHost, fake: FakeAzureOpenAI, set_secret: Callable[[str], None]) -> Iterator[str]:
    """Serve the app over loopback HTTP and register its webhook URL (with the function key) at
    the fake; ``set_secret`` puts the signing secret where the app reads it. Yields the URL."""
    from tests.support.http_front import FUNCTION_KEY, serve_http  # noqa: PLC0415

    with serve_http(host) as base:
        url = f"{base}/api/{WEBHOOK_ROUTE}?code={FUNCTION_KEY}"
        _, secret = fake.register_webhook(url, name="bench-webhook-latency")
        set_secret(secret)
        try:
            yield url
        finally:
            fake.clear_webhooks()


def _app_settings(connection_string: str, endpoint: str, suffix: str) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": endpoint,
        "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": API_KEY,
        "AzureWebJobsStorage": connection_string,
        "ARTIFACTS_QUEUE": f"bench-files-{suffix}",
        "ARTIFACTS_RUNS_QUEUE": f"bench-runs-{suffix}",
        "ARTIFACTS_EVENTS_QUEUE": f"bench-events-{suffix}",
        "ARTIFACTS_CONTAINER": f"bench-artifacts-{suffix}",
        "ARTIFACTS_STATUS_CONTAINER": f"bench-status-{suffix}",
        "ARTIFACTS_POLL_MIN_SECONDS": str(PRODUCTION_POLL[0]),
        "ARTIFACTS_POLL_MAX_SECONDS": str(PRODUCTION_POLL[1]),
    }


def measure(repeats: int, lengths: Sequence[float]) -> dict[str, Any]:
    """Both modes, in this process (which it configures through its environment)."""
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    from tests.fake_openai import FakeAzureOpenAI  # noqa: PLC0415
    from tests.support.azurite import start_azurite  # noqa: PLC0415
    from tests.support.host import FunctionsHost  # noqa: PLC0415

    load_before = os.getloadavg()
    started = time.monotonic()
    for name in ("AZURE_OPENAI_WEBHOOK_SECRET", "ARTIFACTS_WEBHOOK_CAPTURE", "AZURE_OPENAI_BACKGROUND",
                 "ARTIFACTS_STORAGE_CONNECTION", "WEBSITE_AUTH_ENABLED"):
        os.environ.pop(name, None)
    azurite = start_azurite()
    fake = FakeAzureOpenAI(api_key=API_KEY, page_size=100).start()
    results: list[RunResult] = []
    try:
        for mode in MODES:
            print(f"{mode}: {repeats} x runs of {', '.join(f'{s:g}' for s in lengths)} s", file=sys.stderr, flush=True)
            settings = _app_settings(azurite.connection_string, fake.endpoint, uuid.uuid4().hex[:10])
            os.environ.update(settings)
            os.environ.pop("AZURE_OPENAI_WEBHOOK_SECRET", None)
            host = FunctionsHost(azurite.connection_string)  # the worker loads the app: bindings name the queues
            artifacts = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
                settings["ARTIFACTS_CONTAINER"])
            timeout = max(lengths) + 2 * PRODUCTION_POLL[1] + 60
            with contextlib.ExitStack() as stack:
                if mode == "webhook":
                    stack.enter_context(webhook_registered(
                        host, fake, lambda secret: os.environ.__setitem__("AZURE_OPENAI_WEBHOOK_SECRET", secret)))
                results += measure_runs(host, fake, artifacts, mode=mode, lengths=lengths, repeats=repeats,
                                        timeout=timeout)
    finally:
        fake.stop()
        azurite.stop()
    return {
        "runs": [dataclasses.asdict(r) for r in results],
        "repeats": repeats,
        "lengths": list(lengths),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "minutes": (time.monotonic() - started) / 60,
        "cores": os.cpu_count(),
    }


def look_times(poll_min: int, poll_max: int, until: float) -> list[int]:
    """When the watcher looks at a run, in seconds after the POST (the production schedule)."""
    from shared.pipeline.watcher import poll_delay  # noqa: PLC0415
    from shared.settings import load_settings  # noqa: PLC0415

    settings = load_settings({
        "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
        "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": "unused",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "ARTIFACTS_POLL_MIN_SECONDS": str(poll_min),
        "ARTIFACTS_POLL_MAX_SECONDS": str(poll_max),
    })
    times, elapsed, looks = [], 0, 0
    while elapsed <= until:
        looks += 1
        elapsed += poll_delay(settings, looks)
        times.append(elapsed)
    return times


def render(measured: dict[str, Any]) -> str:
    runs = [RunResult(**r) for r in measured["runs"]]
    lengths: list[float] = measured["lengths"]
    looks = look_times(*PRODUCTION_POLL, until=max(lengths))

    def of(mode: str, length: float) -> list[RunResult]:
        return [r for r in runs if r.mode == mode and r.length == length]

    def median(values: Sequence[float]) -> float:
        return float(statistics.median(values))

    # Last-Modified has whole seconds, and Storage stamps it before it answers: the recorded moment
    # must fall in [Last-Modified, Last-Modified + 1 s), plus the answer's way back.
    off = max(max(r.last_modified - r.committed_at, r.committed_at - (r.last_modified + 1)) for r in runs)
    agree = "all agree" if off <= 0.05 else f"off by up to {off:.2f} s"
    lines = [
        "## Run end -> first blob: webhook versus polling",
        "",
        "From the moment a background run ends on the fake Azure OpenAI to the moment the app has "
        "written its first artifact blob to Azurite, with the watcher at the production schedule "
        f"(ARTIFACTS_POLL_MIN_SECONDS {PRODUCTION_POLL[0]} doubling to ARTIFACTS_POLL_MAX_SECONDS "
        f"{PRODUCTION_POLL[1]}: looks at {', '.join(str(t) for t in looks)} s after the start). "
        "**Webhook**: the fake's signed delivery reaches `POST /api/webhooks/azure-openai` over real "
        "loopback HTTP, which queues a wake-up for the watcher; the delayed polls still run as the "
        "safety net. **Polling**: no webhook; the watcher's delayed queue messages (real Azurite "
        "visibility delays) find the end. The fake sends its webhook the moment the run ends: whatever "
        "Azure takes to send one is not in these figures.",
        "",
        "Each run is started with `POST /api/responses` (one 64 KiB file) and ended by a timer that "
        "calls the fake's `finish()` after the given time; the start of the measure is that call "
        "(`time.time()`). The end is when the app's blob write (`ArtifactStore.write`: Azurite "
        "answered the Put Blob) returned, taken in the same process; checked against each blob's "
        f"Last-Modified (whole seconds): {agree}. Medians of {measured['repeats']} runs; every run of one "
        "mode in flight at once, the modes one after the other. Run lengths sit between looks "
        "(60 s would land on one, a race rather than a figure); past 30 s a run's end waits for a "
        f"look every {PRODUCTION_POLL[1]} s, {PRODUCTION_POLL[1] / 2:g} s on average.",
        "",
        "| run ends after | webhook: end -> first blob | polling: end -> first blob | polling: next look | "
        "GETs of the response per run (webhook / polling) |",
        "|---:|---:|---:|---:|---|",
    ]
    for length in lengths:
        hook, poll = of("webhook", length), of("polling", length)
        next_look = next(t for t in looks if t > length)
        gets = f"{median([r.gets for r in hook]):g} / {median([r.gets for r in poll]):g}"
        lines.append(
            f"| {length:g} s | {median([r.latency for r in hook]):.2f} s | {median([r.latency for r in poll]):.2f} s "
            f"| {next_look:g} s after the start | {gets} |"
        )
    delivered = sum(1 for r in runs if r.mode == "webhook" and r.deliveries >= 1)
    hooked = sum(1 for r in runs if r.mode == "webhook")
    lines += [
        "",
        f"Webhook deliveries answered 2xx: {delivered} of {hooked} runs. The GETs are the watcher's looks: "
        "with a webhook, the looks before the end plus the one the wake-up makes; with polling, the looks "
        "up to the first after the end. The webhook saves the wait, not GETs, since the delayed polls "
        "keep running beside it.",
        "",
        "The host stand-in (`tests/support/host.py`) looks at an idle queue every 50 ms and runs up to "
        f"{WORKERS} invocations at once; the real host backs off to host.json's `maxPollingInterval` "
        "(2 s) on an idle queue, which can add up to that much per queue hop in either mode (the "
        "wake-up or the delayed look, then the file's message).",
        "",
        f"Machine: {measured['cores']} cores, shared with other test runs; load average (1, 5, 15 min) "
        f"before {_load(measured['load_before'])}, after {_load(measured['load_after'])}. "
        f"Took {measured['minutes']:.1f} min (`.venv/bin/python -m bench.webhook_latency`).",
        "",
    ]
    return "\n".join(lines)


def _load(load: Sequence[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def run(repeats: int = 3, lengths: Sequence[float] = LENGTHS) -> str:
    """Measure in a fresh interpreter and answer the Markdown section."""
    args = [sys.executable, "-m", "bench.webhook_latency", "--measure", "--repeats", str(repeats),
            "--lengths", *(f"{s:g}" for s in lengths)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    timeout = len(MODES) * (max(lengths) + 200)
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench.webhook_latency --measure failed:\n{out.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return render(measured)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS), help="run lengths, seconds")
    parser.add_argument("--measure", action="store_true", help="measure here and print JSON (what run() calls)")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.repeats, args.lengths)))
    else:
        print(run(args.repeats, args.lengths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
