"""The seeded workload: which runs, of which shapes, started how and when; and the driver that
plays it against the instances as callers (and Azure OpenAI's webhooks) would.

Every choice comes from ``random.Random(seed)``: the same seed makes the same runs, files (sizes
and bytes), owners, keys and timings. What the instances answer depends on timing; the driver
records it all for the invariant checker.

How a run starts (``how``):

- ``post``: ``POST /api/responses`` once; if its answer is lost (the instance died, 5xx), the
  caller does what docs/api.md says: imports whatever the prompt created;
- ``post_key``: the same POST with an ``Idempotency-Key``, sent several times (at once, to other
  instances, later), retried on 409/5xx/lost answers until one 202;
- ``import``: the run is made "elsewhere" (straight at the fake), then imported, and sometimes
  imported again (the repair path, racing the first import's watcher);
- ``capture``: made elsewhere and never told to the app: only a webhook to an instance in
  ``ARTIFACTS_WEBHOOK_CAPTURE=all`` mode can make the app follow it.

Webhook deliveries are also replayed, same ``webhook-id``, to another instance (arriving twice,
racing the watcher's own polls).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.harness.cluster import Instance
from tests.support.http_front import FUNCTION_KEY
from tests.support.principals import CALLER, IMPORTER, easy_auth

MiB = 1024 * 1024
ENDINGS = ("completed", "incomplete", "failed", "cancelled")
DEPLOYMENT = "gpt-test"
IDP = "aad"
_RETRYABLE = frozenset({409, 500, 502, 503, 504})
_LONG_RUN_SECONDS = 25.0  # a long-poll run's own end, when nobody polls it
_OUTCOME_UNKNOWN_SECONDS = 150.0  # longer than any workload run lasts: its webhook resolves the claim


def _error_code(answer: Answer) -> object:
    error = (answer.body or {}).get("error")
    return error.get("code") if isinstance(error, dict) else None


def _outcome_unknown(answer: Answer) -> bool:
    return _error_code(answer) == "outcome_unknown"


def _honest_refusal(answer: Answer) -> bool:
    """A keyed POST that never got its 202 but was told why: the create's outcome is unknown (a
    lost answer), or the request holding the key is still on it (its instance was killed). Whether
    a run was made and lost is for the run invariants: every run the prompt created is checked."""
    return answer.status in (409, 502, 504) and _error_code(answer) in ("outcome_unknown", "idempotency_key_in_flight")


@dataclass(frozen=True)
class WorkloadShape:
    """How big and how hard a workload is."""

    runs: int
    span_seconds: float  # runs start spread over this long
    max_files: int  # a "many files" run has up to this many
    big_file_mib: float  # a "few MiB" file is about this large
    owners: int = 3


SHORT = WorkloadShape(runs=10, span_seconds=14, max_files=12, big_file_mib=5)


@dataclass
class RunSpec:
    index: int
    how: str  # post, post_key, import, capture
    owner: str | None  # principal id; None: no caller (captured)
    sizes: list[int]
    cited: list[bool]
    ending: str
    polls_before_done: int
    seconds_before_done: float | None
    start_at: float
    extra_posts: int = 0  # post_key: how many more POSTs with the same key
    reimport_at: float | None = None  # seconds after the start, a second import
    replay_webhook: bool = False
    expirable: bool = False  # every file cited: an expired container cannot hide one

    @property
    def prompt(self) -> str:
        return f"harness run {self.index}"

    def owner_header(self) -> str | None:
        return None if self.owner is None else f"{IDP}:{self.owner}"


def make_workload(seed: int, shape: WorkloadShape) -> list[RunSpec]:
    rng = random.Random(seed)  # noqa: S311 - a replayable workload, not secrets
    runs: list[RunSpec] = []
    for index in range(shape.runs):
        how = rng.choices(("post", "post_key", "import", "capture"), weights=(3, 3, 2, 1))[0]
        kind = rng.choices(("many", "none", "big", "few"), weights=(2, 1, 1, 4))[0]
        if kind == "many":
            sizes = [rng.randint(1, 64 * 1024) for _ in range(rng.randint(shape.max_files // 2, shape.max_files))]
        elif kind == "none":
            sizes = []
        elif kind == "big":
            sizes = [int(shape.big_file_mib * MiB) + rng.randint(0, MiB), rng.randint(100, 5000)]
        else:
            sizes = [rng.randint(1, 200 * 1024) for _ in range(rng.randint(1, 4))]
        cite_all = rng.random() < 0.5
        cited = [cite_all or rng.random() < 0.5 for _ in sizes]
        long_poll = rng.random() < 0.3
        runs.append(RunSpec(
            index=index,
            how=how,
            owner=None if how == "capture" else f"user{rng.randrange(shape.owners)}",
            sizes=sizes,
            cited=cited,
            ending=rng.choices(ENDINGS, weights=(5, 1, 1, 1))[0],
            # Long polls: the watcher looks many times; otherwise the run ends by its own clock,
            # with nobody polling, so the webhook (if any) races the next poll. A long-poll run
            # nobody polls (its create's answer was lost) still ends, later, as a real run does:
            # whichever comes first, its polls or its clock.
            polls_before_done=rng.randint(5, 8) if long_poll else 0,
            seconds_before_done=round(rng.uniform(0.5, 4.0), 2) + (_LONG_RUN_SECONDS if long_poll else 0),
            start_at=round(rng.uniform(0, shape.span_seconds), 2),
            extra_posts=rng.randint(1, 3) if how == "post_key" else 0,
            reimport_at=round(rng.uniform(0.5, 8.0), 2) if how == "import" and rng.random() < 0.6 else None,
            replay_webhook=rng.random() < 0.5,
            expirable=all(cited),
        ))
    return sorted(runs, key=lambda r: r.start_at)


def file_bytes(seed: int, spec: RunSpec) -> list[bytes]:
    """The run's files: reproducible bytes, different in every file."""
    rng = random.Random(f"{seed}-{spec.index}")  # noqa: S311 - reproducible content
    return [rng.randbytes(size) for size in spec.sizes]


def scenario(seed: int, spec: RunSpec) -> Scenario:
    files = [
        FakeFile(content=content, path=f"/mnt/data/r{spec.index}_f{n}.bin", cite="real" if cite else None)
        for n, (content, cite) in enumerate(zip(file_bytes(seed, spec), spec.cited, strict=True))
    ]
    return Scenario(
        containers=[FakeContainer(files)] if files else [],
        status=spec.ending,
        polls_before_done=spec.polls_before_done,
        seconds_before_done=spec.seconds_before_done,
    )


def create_body(prompt: str) -> dict[str, Any]:
    """A create request as another service would send it (a run made elsewhere)."""
    return {
        "model": DEPLOYMENT, "input": prompt, "background": True, "store": True,
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
        "include": ["code_interpreter_call.outputs"],
    }


@dataclass
class Answer:
    """One HTTP call the workload made, and what came back."""

    at: float
    instance: str
    method: str
    route: str
    status: int | None  # None: no answer (connection refused/reset, timeout)
    body: dict[str, Any] | None
    error: str | None = None


@dataclass
class RunLog:
    """What the driver did for one run and what it saw."""

    spec: RunSpec
    scenario: Scenario | None = None  # what the fake makes for the run's prompt, once registered
    idempotency_key: str | None = None
    response_ids: set[str] = field(default_factory=set)  # what the app or the fake said the run is
    answers: list[Answer] = field(default_factory=list)
    generations: int = 0  # the highest generation an import answer reported
    problems: list[str] = field(default_factory=list)  # the driver could not do what it meant to
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)
            if answer.status == 202 and answer.body and isinstance(answer.body.get("response_id"), str):
                self.response_ids.add(answer.body["response_id"])
                generation = answer.body.get("generation")
                if isinstance(generation, int):
                    self.generations = max(self.generations, generation)


class Driver:
    """Plays a workload against the live instances."""

    def __init__(self, seed: int, runs: list[RunSpec], fake: FakeAzureOpenAI, instances: list[Instance],
                 webhook_secret: str) -> None:
        self.seed = seed
        self.fake = fake
        self.instances = instances
        self.secret = webhook_secret
        self.logs = {spec.index: RunLog(spec) for spec in runs}
        self._rng = random.Random(seed + 1)  # noqa: S311 - instance choices, replayable as far as liveness allows
        self._rng_lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(30.0), trust_env=False)
        self._stop = threading.Event()

    # -- choosing an instance -----------------------------------------------------------------

    def pick(self, avoid: str | None = None) -> tuple[str, str] | None:
        """(incarnation name, base URL) of a live instance, preferring one other than ``avoid``."""
        live = [(inc.name, inc.url) for inst in self.instances if (inc := inst.current) is not None]
        others = [entry for entry in live if entry[0] != avoid] or live
        if not others:
            return None
        with self._rng_lock:
            return self._rng.choice(others)

    def _headers(self, spec: RunSpec, key: str | None = None) -> dict[str, str]:
        headers = {"x-functions-key": FUNCTION_KEY, "content-type": "application/json"}
        if spec.owner is not None:
            # Both roles: a caller here also repairs a lost POST by importing what a capture recorded.
            headers.update(easy_auth(spec.owner, CALLER, IMPORTER, provider=IDP))
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def call(self, log: RunLog, method: str, route: str, *, body: dict[str, Any] | None = None,
             key: str | None = None, avoid: str | None = None) -> Answer:
        target = self.pick(avoid)
        if target is None:
            answer = Answer(time.time(), "-", method, route, None, None, "no live instance")
        else:
            name, url = target
            try:
                response = self._client.request(method, f"{url}/api/{route}", json=body,
                                                headers=self._headers(log.spec, key))
                parsed: Any = None
                with contextlib.suppress(ValueError):
                    parsed = response.json()
                answer = Answer(time.time(), name, method, route, response.status_code,
                                parsed if isinstance(parsed, dict) else None)
            except httpx.HTTPError as error:
                answer = Answer(time.time(), name, method, route, None, None, type(error).__name__)
        log.note(answer)
        return answer

    def retrying(self, log: RunLog, attempt: Callable[[str | None], Answer], seconds: float = 20.0) -> Answer:
        """Call until an answer that is not worth retrying (409 in flight, 5xx, lost), bounded.

        A create whose outcome is unknown is retried for longer, as docs/api.md tells a caller to:
        with webhooks on, the run's webhook finds the claim when the run ends, and then a retry
        answers 202 with the run."""
        started = time.monotonic()
        answer = attempt(None)
        while answer.status is None or answer.status in _RETRYABLE:
            waited = time.monotonic() - started
            if waited > (_OUTCOME_UNKNOWN_SECONDS if _outcome_unknown(answer) else seconds):
                break
            self._stop.wait(0.5)  # a caller's back-off between retries, not synchronisation
            answer = attempt(answer.instance)
        return answer

    # -- the actions ------------------------------------------------------------------------------

    def run(self, started: float) -> None:
        """Start every run at its time (from ``started``, monotonic); returns once all are started
        and their follow-ups (retries, re-imports, replays) are done."""
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="workload") as pool:
            futures = [pool.submit(self._play, log, started) for log in self.logs.values()]
            for future in futures:
                future.result()

    def close(self) -> None:
        self._stop.set()
        self._client.close()

    def _play(self, log: RunLog, started: float) -> None:
        spec = log.spec
        self._stop.wait(max(0.0, started + spec.start_at - time.monotonic()))  # the run's start time
        log.scenario = scenario(self.seed, spec)
        self.fake.register(spec.prompt, log.scenario)
        try:
            if spec.how in ("post", "post_key"):
                self._post(log)
            else:
                self._elsewhere(log)
            if spec.replay_webhook:
                self._replay_webhook(log)
        except Exception as error:  # a driver bug must show in the report, not kill the session
            log.problems.append(f"driver: {type(error).__name__}: {error}")

    def _post(self, log: RunLog) -> None:
        spec = log.spec
        body = {"input": spec.prompt}
        if spec.how == "post":
            answer = self.call(log, "POST", "responses", body=body)
            if answer.status != 202:
                self._repair_lost_post(log, answer)
            return
        log.idempotency_key = key = f"key-{self.seed}-{spec.index}-{uuid.uuid4().hex[:8]}"
        # The first POST and one retry at once, on different instances: the race the claim settles.
        with ThreadPoolExecutor(max_workers=2) as both:
            first = both.submit(self.retrying, log, lambda avoid: self.call(log, "POST", "responses", body=body,
                                                                             key=key, avoid=avoid))
            both.submit(self.call, log, "POST", "responses", body=body, key=key)
            answer = first.result()
        for _ in range(spec.extra_posts - 1):
            self._stop.wait(0.3)
            answer = self.retrying(log, lambda avoid: self.call(log, "POST", "responses", body=body, key=key,
                                                                 avoid=avoid))
        if not log.response_ids and not _honest_refusal(answer):
            log.problems.append(f"no 202 for Idempotency-Key {key}; last answer {answer.status} {answer.error}")

    def _repair_lost_post(self, log: RunLog, answer: Answer) -> None:
        """The repair docs/api.md gives for a POST whose answer was lost: import what the prompt created."""
        for response_id in self.created_for(log.spec.prompt):
            log.response_ids.add(response_id)
            self._import(log, response_id)

    def _elsewhere(self, log: RunLog) -> None:
        spec = log.spec
        response_id = str(self.fake.create(create_body(spec.prompt))["id"])
        log.response_ids.add(response_id)
        if spec.how == "capture":
            return
        self._import(log, response_id)
        if spec.reimport_at is not None:
            self._stop.wait(spec.reimport_at)  # the caller imports again later: the repair path
            self._import(log, response_id)

    def _import(self, log: RunLog, response_id: str) -> None:
        answer = self.retrying(log, lambda avoid: self.call(log, "POST", f"responses/{response_id}/import",
                                                             avoid=avoid))
        if answer.status != 202:
            log.problems.append(f"import of {response_id} answered {answer.status} {answer.error} {answer.body}")

    def _replay_webhook(self, log: RunLog) -> None:
        """Deliver a run's webhook again (same webhook-id) to another instance, once it was sent."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._stop.is_set():
            for response_id in list(log.response_ids):
                sent = [d for d in self.fake.webhook_deliveries() if d.response_id == response_id]
                if sent:
                    target = self.pick(avoid=None)
                    if target is not None:
                        with contextlib.suppress(OSError):
                            self.fake.send_webhook(
                                f"{target[1]}/api/webhooks/azure-openai?code={FUNCTION_KEY}", sent[0].event_type,
                                response_id, secret=self.secret, webhook_id=sent[0].webhook_id)
                    return
            self._stop.wait(0.5)  # waiting for the run to end and its webhook to go out, bounded

    def created_for(self, prompt: str) -> list[str]:
        """The response ids the fake created for ``prompt``."""
        return self.fake.response_ids(prompt)


def creates_for(fake: FakeAzureOpenAI, prompt: str) -> int:
    """How many create requests for ``prompt`` reached the fake over HTTP (the app's)."""
    count = 0
    for request in list(fake.requests):
        if request.method == "POST" and request.path.rstrip("/") == "/openai/v1/responses":
            with contextlib.suppress(ValueError, AttributeError):
                count += json.loads(request.body).get("input") == prompt
    return count
