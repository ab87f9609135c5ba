"""The seeded fault schedule, and the scheduler that applies it while the workload runs.

The schedule is a list of :class:`FaultEvent` made from the seed alone (so a failing seed replays
the same faults at the same offsets; what each fault hits depends on timing, so every application
is logged with what it hit). Kinds:

- ``kill``: SIGKILL an instance, preferably while it runs deliveries, and start it again;
- ``pause``: SIGSTOP an instance for longer than its lease, then SIGCONT: its messages are
  delivered again elsewhere meanwhile (the double delivery);
- ``upstream``: the fake's hooks: 429 with ``retry-after``, 5xx, truncated bodies (with and
  without a length), trickling bodies, bodies that stall past the app's timeout, expired containers;
- ``storage``: the Storage fault proxy: 500/503 answers, slow answers, answers dropped after the
  request was made, for a few seconds;
- ``lost_create``: a create request that reached Azure OpenAI whose answer was lost: the
  connection dropped (``FakeAzureOpenAI.lose_next_create_answer``) or the answer held past the
  app's timeout and then dropped (``hold_next_create_answer``). The caller then retries with its
  Idempotency-Key, or imports what its prompt made. On a fake without these hooks the kind is
  logged as skipped.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fake_openai import FakeAzureOpenAI
from tests.harness.cluster import Instance, StorageProxyProcess

KINDS = ("kill", "pause", "upstream", "storage", "lost_create")
_HELD_CREATE_SECONDS = 7.0  # a held create answer is dropped after this: past the app's 5-second timeout
_BUSY_WAIT_SECONDS = 3.0  # a kill waits this long, at most, for its instance to be mid-delivery


@dataclass(frozen=True)
class FaultEvent:
    at: float  # seconds after the workload starts
    kind: str
    params: dict[str, Any]

    def describe(self) -> str:
        details = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"t+{self.at:6.2f}s {self.kind:<11} {details}"


@dataclass(frozen=True)
class FaultMix:
    """How many faults of each kind per minute of workload."""

    per_minute: dict[str, float]


MODERATE = FaultMix({"kill": 4, "pause": 2, "upstream": 16, "storage": 4, "lost_create": 1})
HARSH = FaultMix({"kill": 6, "pause": 3, "upstream": 24, "storage": 6, "lost_create": 2})


def make_schedule(seed: int, seconds: float, instances: int, mix: FaultMix, lease_seconds: int) -> list[FaultEvent]:
    rng = random.Random(seed * 7919 + 17)  # noqa: S311 - a replayable schedule, not secrets
    events: list[FaultEvent] = []
    for kind in KINDS:
        count = round(mix.per_minute.get(kind, 0) * seconds / 60)
        for _ in range(count):
            at = round(rng.uniform(1.0, seconds), 2)
            events.append(FaultEvent(at, kind, _params(rng, kind, instances, lease_seconds)))
    return sorted(events, key=lambda e: e.at)


def _params(rng: random.Random, kind: str, instances: int, lease_seconds: int) -> dict[str, Any]:
    if kind == "kill":
        return {"instance": rng.randrange(instances), "down_seconds": round(rng.uniform(0.5, 3.0), 2)}
    if kind == "pause":
        return {"instance": rng.randrange(instances), "seconds": round(lease_seconds + rng.uniform(1.0, 4.0), 2)}
    if kind == "storage":
        what = rng.choice(("status", "status", "stall", "drop"))
        return {"route": rng.choice(("blob", "queue", "*")), "kind": what,
                "status": rng.choice((500, 503)), "seconds": round(rng.uniform(1.0, 4.0), 2),
                "share": round(rng.uniform(0.2, 0.7), 2), "seed": rng.randrange(1 << 30),
                "hold_seconds": round(rng.uniform(0.5, 3.0), 2) if what != "status" else 0.0}
    if kind == "lost_create":
        return {"held": rng.random() < 0.5}
    what = rng.choice(("throttle", "throttle", "5xx", "cut", "cut_unannounced", "trickle", "stall", "expire"))
    params: dict[str, Any] = {"what": what}
    if what == "throttle":
        params.update(path=rng.choice(("/content", "/openai/v1/responses/", "/files")),
                      times=rng.randint(1, 3), retry_after=rng.choice(("1", "2")))
    elif what == "5xx":
        params.update(path=rng.choice(("/content", "/openai/v1/responses", "/files")),
                      status=rng.choice((500, 502, 503)), times=rng.randint(1, 2))
    elif what in ("cut", "cut_unannounced"):
        params.update(after_bytes=rng.choice((0, 1000, 70_000)), times=rng.randint(1, 2))
    elif what == "trickle":
        params.update(after_bytes=rng.choice((500, 50_000)), seconds=round(rng.uniform(0.5, 2.0), 2))
    elif what == "stall":
        params.update(after_bytes=rng.choice((0, 20_000)), seconds=8.0)  # past AZURE_OPENAI_TIMEOUT_SECONDS
    else:
        params.update(pick=rng.random())  # which run's container, among those started by then
    return params


@dataclass
class Applied:
    """A fault as it was applied: when, and what it hit."""

    event: FaultEvent
    at: float  # wall clock
    outcome: str


@dataclass
class FaultScheduler:
    fake: FakeAzureOpenAI
    proxy: StorageProxyProcess
    instances: list[Instance]
    expirable: Callable[[], list[str]]  # container ids of started runs whose files are all cited
    applied: list[Applied] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)  # container ids
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, schedule: list[FaultEvent], started: float) -> None:
        """Apply each fault at its time (``started`` is monotonic); returns when all are applied
        and every restart or resume has happened."""
        for event in schedule:
            if self._stop.wait(max(0.0, started + event.at - time.monotonic())):  # the fault's time
                break
            self._apply(event)
        for thread in self._threads:
            thread.join(timeout=120)

    def stop(self) -> None:
        self._stop.set()

    def _note(self, event: FaultEvent, outcome: str) -> None:
        with self._lock:
            self.applied.append(Applied(event, time.time(), outcome))

    def _later(self, action: Callable[[], None]) -> None:
        thread = threading.Thread(target=action, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _apply(self, event: FaultEvent) -> None:
        kind, params = event.kind, event.params
        if kind == "kill":
            self._kill(event, self.instances[params["instance"] % len(self.instances)], params["down_seconds"])
        elif kind == "pause":
            self._pause(event, self.instances[params["instance"] % len(self.instances)], params["seconds"])
        elif kind == "storage":
            self.proxy.fault({k: v for k, v in params.items()})
            self._note(event, "applied")
        elif kind == "lost_create":
            self._lost_create(event, bool(params.get("held")))
        else:
            self._note(event, self._upstream(params))

    def _lost_create(self, event: FaultEvent, held: bool) -> None:
        hook = getattr(self.fake, "hold_next_create_answer" if held else "lose_next_create_answer", None)
        if hook is None:
            self._note(event, "skipped: the fake has no lost-create-answer fault (HOOK)")
            return
        fault = hook()
        self._note(event, "armed")
        if held:
            def drop_after_timeout() -> None:
                # Past AZURE_OPENAI_TIMEOUT_SECONDS: the app has given up on the answer by then.
                with contextlib.suppress(TimeoutError):
                    fault.wait_made(timeout=60)
                    self._stop.wait(_HELD_CREATE_SECONDS)  # the hold is the fault
                fault.drop()

            self._later(drop_after_timeout)

    def _kill(self, event: FaultEvent, instance: Instance, down: float) -> None:
        deadline = time.monotonic() + _BUSY_WAIT_SECONDS
        while instance.in_flight() == 0 and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.05)  # waiting, bounded, for the instance to be mid-delivery
        busy = instance.in_flight()
        killed = instance.kill()
        if killed is None:
            self._note(event, f"instance {instance.slot} was down already")
            return
        self._note(event, f"killed {killed.name} with {busy} deliveries in flight")

        def restart() -> None:
            self._stop.wait(down)  # the instance stays down this long (part of the fault)
            instance.start()

        self._later(restart)

    def _pause(self, event: FaultEvent, instance: Instance, seconds: float) -> None:
        paused = instance.pause()
        if paused is None:
            self._note(event, f"instance {instance.slot} was down")
            return
        self._note(event, f"paused {paused.name}")

        def resume() -> None:
            self._stop.wait(seconds)  # paused past the lease: the fault itself
            instance.resume(paused)

        self._later(resume)

    def _upstream(self, params: dict[str, Any]) -> str:
        what = params["what"]
        if what == "throttle":
            self.fake.fail_next(params["path"], 429,
                                {"error": {"code": "429", "message": "Rate limit is exceeded. Try again later."}},
                                headers={"retry-after": params["retry_after"]}, times=params["times"])
        elif what == "5xx":
            self.fake.fail_next(params["path"], params["status"], times=params["times"])
        elif what == "cut":
            self.fake.cut_next_download(params["after_bytes"], times=params["times"])
        elif what == "cut_unannounced":
            self.fake.cut_next_download(params["after_bytes"], times=params["times"], announce_length=False)
        elif what in ("trickle", "stall"):
            self.fake.stall_next_download(params["after_bytes"], params["seconds"])
        else:
            candidates = self.expirable()
            if not candidates:
                return "no container to expire yet"
            container = candidates[int(params["pick"] * len(candidates)) % len(candidates)]
            self.fake.expire(container)
            self.expired.add(container)
            return f"expired {container}"
        return "armed"
