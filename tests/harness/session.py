"""One seeded harness session: Azurite, the Storage fault proxy, the fake, K instances; the workload
and the fault schedule played together; quiescence; the invariants checked; a report.

The fake runs in this process (the instances reach it over HTTP); Azurite and the proxy and the
instances are processes of their own. Everything this session starts, it stops, by pid.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from shared.settings import QueueNames
from tests.fake_openai import FakeAzureOpenAI
from tests.harness.cluster import Instance, StorageProxyProcess
from tests.harness.faults import MODERATE, Applied, FaultEvent, FaultMix, FaultScheduler, make_schedule
from tests.harness.invariants import ExpectedFile, Observed, RunFacts, Violation, check, interruptions, sha256
from tests.harness.journal import Delivery
from tests.harness.workload import IDP, SHORT, Driver, RunLog, WorkloadShape, creates_for, make_workload
from tests.support.azurite import ACCOUNT, start_azurite
from tests.support.http_front import FUNCTION_KEY
from tests.support.principals import CALLER, IMPORTER, easy_auth

API_KEY = "harness-key-0123456789abcdef"
LEASE_SECONDS = 3  # a paused instance's messages reappear after this; renewed every second
# App settings the harness sets for every instance; anything of the same name in this process's
# environment is not passed on.
_APP_SETTINGS_PREFIXES = ("AZURE_OPENAI_", "ARTIFACTS_", "AzureWebJobs", "AzureFunctionsJobHost__",
                          "WEBSITE_AUTH_ENABLED", "APPLICATIONINSIGHTS_", "OTEL_")


OPERATOR = "aad:operator"  # reads the captured runs' status (they have no owner)


@dataclass(frozen=True)
class SessionConfig:
    seed: int
    instances: int = 3
    shape: WorkloadShape = SHORT
    faults: FaultMix = MODERATE
    quiesce_seconds: float = 90.0  # after the workload and the faults, the runs have this long to finish
    workdir: Path | None = None  # kept (journals, logs, schedule); default a temporary folder, removed


@dataclass
class Report:
    seed: int
    instances: int
    runs: int
    files: int
    seconds: float
    schedule: list[FaultEvent]
    applied: list[Applied]
    violations: list[Violation]
    notes: list[str] = field(default_factory=list)

    def faults_by_kind(self) -> dict[str, int]:
        return dict(Counter(a.event.kind if a.event.kind != "upstream" else f"upstream:{a.event.params['what']}"
                            for a in self.applied if not a.outcome.startswith("skipped")))

    def summary(self) -> str:
        lines = [f"seed {self.seed}: {self.instances} instances, {self.runs} runs, {self.files} files, "
                 f"{len(self.applied)} faults in {self.seconds:.1f} s, {len(self.violations)} violation(s)"]
        lines += [f"  fault {a.event.describe()} -> {a.outcome}" for a in self.applied]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  VIOLATION {v.describe()}" for v in self.violations]
        return "\n".join(lines)


def _instance_env(fake: FakeAzureOpenAI, connection: str, names: dict[str, str], secret: str,
                  capture: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_APP_SETTINGS_PREFIXES)}
    return {
        **base,
        "AZURE_OPENAI_ENDPOINT": fake.endpoint,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-test",
        "AZURE_OPENAI_API_KEY": API_KEY,
        "AZURE_OPENAI_TIMEOUT_SECONDS": "5",  # a stalled body times out within a step
        "AzureWebJobsStorage": connection,
        "ARTIFACTS_QUEUE": names["queue"],
        "ARTIFACTS_RUNS_QUEUE": names["runs"],
        "ARTIFACTS_EVENTS_QUEUE": names["events"],
        "ARTIFACTS_CONTAINER": names["container"],
        "ARTIFACTS_STATUS_CONTAINER": names["status"],
        "ARTIFACTS_POLL_MIN_SECONDS": "1",
        "ARTIFACTS_POLL_MAX_SECONDS": "2",
        "AZURE_OPENAI_WEBHOOK_SECRET": secret,
        "ARTIFACTS_WEBHOOK_CAPTURE": capture,
        "WEBSITE_AUTH_ENABLED": "true",  # Easy Auth on: the caller headers name the owner
        # The host, shortened: a failed delivery is back in a second; a delivery ends within 30 s.
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__functionTimeout": "00:01:00",
        "PYTHONUNBUFFERED": "1",
    }


class Session:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self._own_workdir = config.workdir is None
        self.workdir = config.workdir or Path(tempfile.mkdtemp(prefix=f"harness-{config.seed}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        suffix = uuid.uuid4().hex[:10]
        self.names = {"queue": f"h-dl-{suffix}", "runs": f"h-runs-{suffix}", "events": f"h-ev-{suffix}",
                      "container": f"h-art-{suffix}", "status": f"h-st-{suffix}"}
        self.instances: list[Instance] = []

    def run(self) -> Report:
        began = time.monotonic()
        config = self.config
        azurite = start_azurite()
        proxy: StorageProxyProcess | None = None
        fake = FakeAzureOpenAI(api_key=API_KEY, webhook_retries=6, webhook_backoff_seconds=0.5).start()
        driver: Driver | None = None
        try:
            proxy = StorageProxyProcess(azurite, self.workdir / "storage-proxy.log")
            endpoint_id, secret = fake.register_webhook("http://127.0.0.1:9/unset", name="harness")
            # Every instance of an app has the same settings: the capture mode alternates by seed,
            # so both modes are exercised across seeds (a mixed cluster is no configuration Azure runs).
            capture = "all" if config.seed % 2 == 0 else "started"
            for slot in range(config.instances):
                env = _instance_env(fake, proxy.connection_string, self.names, secret, capture)
                self.instances.append(Instance(slot, env, self.workdir, LEASE_SECONDS))
            with ThreadPoolExecutor(max_workers=config.instances) as starting:
                list(starting.map(lambda instance: instance.start(), self.instances))
            runs = make_workload(config.seed, config.shape)
            schedule = make_schedule(config.seed, config.shape.span_seconds + 6, config.instances, config.faults,
                                     LEASE_SECONDS)
            (self.workdir / "schedule.txt").write_text(
                f"seed {config.seed}\n" + "\n".join(e.describe() for e in schedule) + "\n", encoding="utf-8")
            driver = Driver(config.seed, runs, fake, self.instances, secret)
            scheduler = FaultScheduler(fake, proxy, self.instances,
                                       lambda: _expirable(driver.logs.values()) if driver else [])
            webhook_target = _WebhookTarget(fake, endpoint_id, self.instances)
            webhook_target.start()
            started = time.monotonic()
            faulting = threading.Thread(target=scheduler.run, args=(schedule, started), name="faults", daemon=True)
            faulting.start()
            driver.run(started)
            faulting.join(timeout=300)
            scheduler.stop()
            notes = self._quiesce(fake, driver, azurite.connection_string, began)
            webhook_target.stop()
            observed = self._observe(fake, driver, proxy, scheduler, azurite.connection_string)
            with (self.workdir / "events.jsonl").open("w", encoding="utf-8") as evidence:
                evidence.writelines(json.dumps(event) + "\n" for event in observed.events)
            with (self.workdir / "webhooks.jsonl").open("w", encoding="utf-8") as evidence:
                evidence.writelines(json.dumps(dataclasses.asdict(d)) + "\n" for d in fake.webhook_deliveries())
            violations = check(observed) + [
                Violation("caller_served", rid or f"run {log.spec.index}", None, f"run {log.spec.index} "
                          f"({log.spec.how}): {problem}")
                for log in driver.logs.values() for problem in log.problems
                for rid in [next(iter(sorted(log.response_ids)), "")]
            ]
            report = Report(config.seed, config.instances, len(observed.runs),
                            sum(len(f.files) for f in observed.runs.values()), time.monotonic() - began,
                            schedule, scheduler.applied, violations, notes)
            (self.workdir / "report.txt").write_text(report.summary() + "\n", encoding="utf-8")
            return report
        finally:
            if driver is not None:
                driver.close()
            for instance in self.instances:
                instance.stop()
            if proxy is not None:
                proxy.stop()
            fake.stop()
            azurite.stop()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- quiescence -------------------------------------------------------------------------------

    def _status(self, driver: Driver, response_id: str, owner: str | None) -> tuple[int | None, dict[str, Any] | None]:
        target = driver.pick()
        if target is None:
            return None, None
        headers = {"x-functions-key": FUNCTION_KEY}
        # A captured run has no owner: only a principal with the import right sees it (an operator).
        idp, _, principal = (owner or OPERATOR).partition(":")
        headers.update(easy_auth(principal, CALLER, IMPORTER, provider=idp))
        try:
            answer = httpx.get(f"{target[1]}/api/responses/{response_id}", headers=headers, timeout=30,
                               trust_env=False)
        except httpx.HTTPError:
            return None, None
        body: Any = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None
        return answer.status_code, body if isinstance(body, dict) else None

    def _expected(self, fake: FakeAzureOpenAI, driver: Driver) -> dict[str, RunLog]:
        """Every run the app must follow: what the workload started or imported, what its prompts
        created, and a captured run once an instance in capture-all mode took its first webhook
        or the app knows it (a delivery the fake gave up on, to a paused instance, may still have
        been handled once the instance resumed)."""
        all_mode = {inc.url for inst in self.instances if inst.capture == "all" for inc in inst.incarnations}
        first_ok: dict[str, str] = {}
        for delivery in fake.webhook_deliveries():
            if delivery.ok and delivery.response_id not in first_ok:
                first_ok[delivery.response_id] = delivery.url
        expected: dict[str, RunLog] = {}
        for log in driver.logs.values():
            ids = set(log.response_ids) | set(driver.created_for(log.spec.prompt))
            # Capture-all records a run only if it used the code interpreter (it made files).
            made_files = log.scenario is not None and bool(log.scenario.containers)
            for rid in ids:
                if log.spec.how != "capture" or self._status(driver, rid, None)[0] == 200 or (
                    made_files and any(first_ok.get(rid, "").startswith(u) for u in all_mode)
                ):
                    expected[rid] = log
        return expected

    def _quiesce(self, fake: FakeAzureOpenAI, driver: Driver, connection: str, began: float) -> list[str]:
        """Wait (bounded) until every expected run has its event, the queues are empty and nothing runs."""
        notes: list[str] = []
        with _suppress_timeout():
            fake.wait_for_webhooks_settled(timeout=60)
        queues = QueueServiceClient.from_connection_string(connection)
        deadline = time.monotonic() + self.config.quiesce_seconds
        waiting: list[str] = []
        while time.monotonic() < deadline:
            expected = self._expected(fake, driver)
            waiting = []
            for rid, log in expected.items():
                code, body = self._status(driver, rid, log.spec.owner_header())
                if code != 200 or body is None or body.get("phase") != "complete" or not body.get("event_id"):
                    waiting.append(rid)
            depth = {name: _depth(queues, name) for name in (self.names["queue"], self.names["runs"],
                                                             QueueNames.poison(self.names["queue"]),
                                                             QueueNames.poison(self.names["runs"]))}
            busy = sum(instance.in_flight() for instance in self.instances)
            if not waiting and not any(depth.values()) and busy == 0:
                return notes
            threading.Event().wait(1.0)  # polling the condition, bounded by the deadline
        notes.append(f"not quiescent after {self.config.quiesce_seconds} s: {len(waiting)} run(s) without "
                     f"their event: {waiting[:10]}")
        return notes

    # -- what happened ------------------------------------------------------------------------------

    def _observe(self, fake: FakeAzureOpenAI, driver: Driver, proxy: StorageProxyProcess,
                 scheduler: FaultScheduler, connection: str) -> Observed:
        runs: dict[str, RunFacts] = {}
        stored = set(fake.response_ids())
        for rid, log in self._expected(fake, driver).items():
            owner = log.spec.owner_header()
            code, body = self._status(driver, rid, owner)
            stranger, _ = self._status(driver, rid, f"{IDP}:stranger") if owner else (None, None)
            files = []
            containers = log.scenario.containers if log.scenario is not None and rid in stored else []
            for container in containers:
                files += [ExpectedFile(f.file_id, container.container_id, len(f.content), sha256(f.content))
                          for f in container.files if f.source == "assistant"]
            key_answers = {str(a.body["response_id"]) for a in log.answers
                           if a.status == 202 and a.body and a.route == "responses" and "response_id" in a.body}
            runs[rid] = RunFacts(
                response_id=rid, label=f"run {log.spec.index} ({log.spec.how}, {log.spec.ending})", owner=owner,
                files=files, generations=max(1, log.generations), status=body if code == 200 else None,
                stranger_status=stranger, idempotency_key=log.idempotency_key,
                creates=creates_for(fake, log.spec.prompt), key_answers=key_answers,
                expired_containers=set(scheduler.expired),
            )
        deliveries: list[Delivery] = []
        killed: dict[str, float] = {}
        pauses: dict[str, list[tuple[float, float]]] = {}
        for instance in self.instances:
            for incarnation, delivery in instance.deliveries():
                deliveries.append(delivery)
                if incarnation.killed_at is not None:
                    killed[incarnation.name] = incarnation.killed_at
                pauses[incarnation.name] = incarnation.pauses
        return Observed(
            runs=runs,
            events=self._events(connection),
            blobs=self._blobs(connection),
            commits=proxy.commits(),
            deliveries=deliveries,
            interruptions=interruptions(deliveries, killed, pauses),
            artifacts_path=f"/{ACCOUNT}/{self.names['container']}/",
            events_path=f"/{ACCOUNT}/{self.names['events']}/messages",
            dropped=proxy.dropped(),
        )

    def _events(self, connection: str) -> list[dict[str, Any]]:
        queue = QueueServiceClient.from_connection_string(connection).get_queue_client(self.names["events"])
        events: list[dict[str, Any]] = []
        try:
            while batch := list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60)):
                for message in batch:
                    events.append(json.loads(base64.b64decode(message.content)))
                    queue.delete_message(message)
        except ResourceNotFoundError:
            pass  # no event was ever sent
        return events

    def _blobs(self, connection: str) -> dict[str, tuple[int, dict[str, str], str]]:
        container = BlobServiceClient.from_connection_string(connection).get_container_client(self.names["container"])
        blobs: dict[str, tuple[int, dict[str, str], str]] = {}
        if not container.exists():
            return blobs
        for blob in container.list_blobs(include=["metadata"]):
            content = container.get_blob_client(blob.name).download_blob().readall()
            blobs[blob.name] = (int(blob.size), dict(blob.metadata or {}), hashlib.sha256(content).hexdigest())
        return blobs


def _expirable(logs: Any) -> list[str]:
    """Containers of started runs whose files are all cited (expiry cannot hide one of them)."""
    return [c.container_id for log in logs if log.scenario is not None and log.spec.expirable and log.response_ids
            for c in log.scenario.containers if c.container_id]


def _depth(queues: QueueServiceClient, name: str) -> int:
    try:
        return int(queues.get_queue_client(name).get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0


class _suppress_timeout:  # noqa: N801 - used as a context manager, reads as one
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, TimeoutError)


class _WebhookTarget:
    """Keeps the fake's registered webhook URL on a live instance (a restarted instance serves on
    another port), as a load balancer in front of the app would."""

    def __init__(self, fake: FakeAzureOpenAI, endpoint_id: str, instances: list[Instance]) -> None:
        self._fake, self._endpoint_id, self._instances = fake, endpoint_id, instances
        self._stop = threading.Event()
        self._current: str | None = None
        self._thread = threading.Thread(target=self._follow, name="webhook-target", daemon=True)

    def start(self) -> None:
        self._retarget()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _follow(self) -> None:
        while not self._stop.wait(0.3):  # checking liveness, not synchronising
            self._retarget()

    def _retarget(self) -> None:
        live = [inc.url for inst in self._instances if (inc := inst.current) is not None]
        if not live or self._current in live:
            return
        self._current = live[0]
        url = f"{self._current}/api/webhooks/azure-openai?code={FUNCTION_KEY}"
        httpx.post(f"{self._fake.endpoint}/openai/v1/dashboard/webhook_endpoints/{self._endpoint_id}",
                   json={"url": url}, headers={"api-key": API_KEY}, timeout=10, trust_env=False)
