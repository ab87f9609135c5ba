"""The pipeline's promises, checked at quiescence against what Storage, the fake and the journals hold.

Each broken promise is one :class:`Violation` naming the run, the file (when one), the invariant
and what was seen. The invariants (docs/operations.md "Failure semantics", docs/contracts.md
"The completion event", docs/api.md "Callers"):

- ``file_whole``: every file the run made is one whole blob (size and SHA-256 of the fake's bytes,
  in the metadata and in the content), or recorded failed with a code and a reason;
- ``file_failed_transient``: a file recorded failed although only transient faults hit it (429,
  5xx, cut bodies, Storage errors): only an expired container is a permanent cause here;
- ``no_partial_blob``: no blob that is not one of the run's files, whole; at most one per file;
- ``single_commit``: each blob committed once (a second successful commit is a double write);
- ``one_event``: at least one event; no more events than the run's generations (its start and
  each import: a re-import that changed nothing repeats its ``event_id``), unless a delivery of
  the run's watcher was interrupted (killed, paused, lease lost, failed) or an events-queue send's
  answer was dropped; no more distinct events than generations;
- ``cloud_event``: every message on the events queue is the app's CloudEvent (structured JSON:
  ``specversion`` 1.0, the type, a source, ``id`` = ``data.event_id``, ``subject`` = the run);
- ``event_after_files``: no event names a file still pending, or leaves a file out;
- ``status_equals_event``: the status API's answer agrees with the event it names;
- ``not_stuck``: every run reaches phase ``complete`` with its event, and is not given up;
- ``one_create_per_key``: each Idempotency-Key made one run at Azure OpenAI, and every 202 for
  it named that run;
- ``owner_kept``: the status and the run's last event name its owner (an earlier event may name
  nobody: a capture before its caller adopted the run, never another owner); another owner gets 404;
- ``caller_served`` (from the driver): a caller retrying for 20 s got its 202 (a POST, an import).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.pipeline.events import EVENT_TYPE
from tests.harness.journal import Delivery

TRANSIENT_CODES = frozenset({"retries_exhausted", "upstream_error"})


@dataclass(frozen=True)
class Violation:
    invariant: str
    response_id: str
    file_id: str | None
    seen: str

    def describe(self) -> str:
        where = self.response_id + (f"/{self.file_id}" if self.file_id else "")
        return f"[{self.invariant}] {where}: {self.seen}"


@dataclass(frozen=True)
class ExpectedFile:
    file_id: str
    container_id: str
    size: int
    sha256: str


@dataclass
class RunFacts:
    """What the checker knows about one run the app was expected to follow."""

    response_id: str
    label: str  # "run 7 (post_key)": the workload's name for it
    owner: str | None  # "aad:user1"; None for a captured run
    files: list[ExpectedFile]
    generations: int  # starts and imports the app answered
    status: dict[str, Any] | None  # the status API's answer, as the owner asked
    stranger_status: int | None  # what another owner got
    idempotency_key: str | None = None
    creates: int = 0  # create requests for the run's prompt that reached the fake (the app's)
    key_answers: set[str] = field(default_factory=set)  # response ids the 202s for the key named
    expired_containers: set[str] = field(default_factory=set)


@dataclass
class Observed:
    runs: dict[str, RunFacts]
    events: list[dict[str, Any]]  # the events queue's messages, whole (CloudEvents)
    blobs: dict[str, tuple[int, dict[str, str], str]]  # name -> (size, metadata, sha256 of the content)
    commits: list[dict[str, Any]]  # from the Storage proxy
    deliveries: list[Delivery]
    interruptions: dict[str, list[str]]  # response id -> how its watcher deliveries were interrupted
    artifacts_path: str  # "/{account}/{artifacts container}/": where the proxy saw artifact commits
    events_path: str = ""  # "/{account}/{events queue}/messages": sends of completion events
    dropped: list[dict[str, Any]] = field(default_factory=list)  # Storage answers the proxy dropped


def interruptions(deliveries: list[Delivery], killed: dict[str, float],
                  pauses: dict[str, list[tuple[float, float]]]) -> dict[str, list[str]]:
    """For each run, the watcher deliveries that did not end cleanly: killed mid-way, spanning a
    pause, losing their lease, or failing (a step that sent its event and then failed is redone)."""
    found: dict[str, list[str]] = defaultdict(list)
    for d in deliveries:
        if d.response_id is None or d.function not in ("watch_run", "give_up_run"):
            continue
        why = None
        if d.ended is None and d.instance in killed:
            why = f"killed on {d.instance}"
        elif any(start <= (d.ended or float("inf")) and d.started <= end for start, end in pauses.get(d.instance, [])):
            why = f"paused on {d.instance}"
        elif d.lease_lost:
            why = f"lease lost on {d.instance} ({d.lease_lost})"
        elif d.ok is False:
            why = f"failed on {d.instance}"
        if why:
            found[d.response_id].append(f"{d.function} delivery {d.dequeue_count} of {d.message_id}: {why}")
    return dict(found)


def _event_data(document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A message of the events queue: its data (version 1's event), and what breaks the envelope ("" if nothing)."""
    data = document.get("data")
    if not isinstance(data, dict):
        return {}, f"an events-queue message without a data object: {sorted(document)[:10]}"
    wanted = {"specversion": "1.0", "type": EVENT_TYPE, "id": data.get("event_id"),
              "subject": data.get("response_id"), "datacontenttype": "application/json"}
    wrong = {key: document.get(key) for key, value in wanted.items() if document.get(key) != value}
    if wrong or not document.get("source") or not document.get("time"):
        return data, f"event {data.get('event_id')}: not the app's CloudEvent: {wrong or 'no source or time'}"
    return data, ""


def check(observed: Observed) -> list[Violation]:
    violations: list[Violation] = []
    events_by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in observed.events:
        data, problem = _event_data(document)
        if problem:
            violations.append(Violation("cloud_event", str(data.get("response_id")), None, problem))
        events_by_run[str(data.get("response_id"))].append(data)
    for facts in observed.runs.values():
        violations += _check_run(facts, events_by_run.get(facts.response_id, []), observed)
    violations += _check_blobs(observed)
    violations += _check_commits(observed)
    return violations


def _check_run(facts: RunFacts, events: list[dict[str, Any]], observed: Observed) -> list[Violation]:
    check = _RunCheck(facts, events, observed)
    check.stuck()
    check.files()
    check.events()
    check.status_matches_event()
    check.owner_and_key()
    return check.out


class _RunCheck:
    """The invariants of one run, each a method; ``out`` collects what broke."""

    def __init__(self, facts: RunFacts, events: list[dict[str, Any]], observed: Observed) -> None:
        self.facts, self.observed = facts, observed
        self.out: list[Violation] = []
        self.status = facts.status
        self.states = {a["file_id"]: a for a in (facts.status or {}).get("artifacts", [])}
        self.in_order = events  # as the events queue gave them
        self.by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            self.by_id[str(event.get("event_id"))].append(event)

    def v(self, invariant: str, seen: str, file_id: str | None = None) -> None:
        self.out.append(Violation(invariant, self.facts.response_id, file_id, f"{self.facts.label}: {seen}"))

    def stuck(self) -> None:
        status = self.status
        if status is None:
            self.v("not_stuck", "the status API does not know the run (or never answered)")
            return
        if status.get("phase") != "complete" or not status.get("event_id"):
            self.v("not_stuck", f"phase {status.get('phase')!r}, event_id {status.get('event_id')!r}, "
                                f"counts {status.get('counts')}")
        if status.get("given_up"):
            self.v("not_stuck", f"given up: {status.get('given_up')!r}")

    def files(self) -> None:
        """Whole, or failed with a reason, and failed only for a permanent cause."""
        rid = self.facts.response_id
        for file in self.facts.files:
            blobs = [(name, info) for name, info in self.observed.blobs.items()
                     if name.startswith(f"{rid}/{file.file_id}/")]
            whole = [name for name, (size, meta, sha) in blobs
                     if size == file.size and sha == file.sha256 and meta.get("sha256") == file.sha256]
            state = self.states.get(file.file_id)
            if len(blobs) > 1:
                self.v("no_partial_blob", f"{len(blobs)} blobs for one file: {[n for n, _ in blobs]}", file.file_id)
            if whole:
                if state is not None and state.get("state") != "persisted":
                    self.v("status_equals_event", f"the blob is whole but the status says {state.get('state')!r}",
                           file.file_id)
            elif blobs:
                name, (size, meta, sha) = blobs[0]
                self.v("file_whole", f"blob {name} is not the file: {size} bytes sha {sha[:12]} (metadata sha "
                                     f"{meta.get('sha256', '-')[:12]}), expected {file.size} bytes sha "
                                     f"{file.sha256[:12]}", file.file_id)
            else:
                self._failed(file, state)

    def _failed(self, file: ExpectedFile, state: dict[str, Any] | None) -> None:
        if state is None:
            self.v("file_whole", "neither persisted nor recorded failed: the run does not list the file", file.file_id)
        elif state.get("state") != "failed" or not state.get("code") or not state.get("reason"):
            self.v("file_whole", f"no blob, and the status says {state.get('state')!r} (code {state.get('code')!r})",
                   file.file_id)
        elif state.get("code") in TRANSIENT_CODES or (
            state.get("code") == "file_gone" and file.container_id not in self.facts.expired_containers
        ):
            self.v("file_failed_transient", f"recorded failed {state.get('code')!r} though only transient faults "
                                            f"hit it: {str(state.get('reason'))[:200]}", file.file_id)

    def events(self) -> None:
        if not self.by_id:
            self.v("one_event", "no completion event")
        allowed = self.observed.interruptions.get(self.facts.response_id, [])
        # One event per generation (a start, each import): a re-import that changed nothing repeats
        # the same event_id by contract. More copies than that only where a delivery was interrupted.
        copies_sent = [copy for copies in self.by_id.values() for copy in copies]
        if len(copies_sent) > max(1, self.facts.generations) and not allowed \
                and not self._send_answer_dropped(copies_sent):
            counts = {event_id: len(copies) for event_id, copies in self.by_id.items()}
            self.v("one_event", f"{len(copies_sent)} events {counts} for {self.facts.generations} generation(s) "
                                "though no watcher delivery of the run was interrupted")
        if len(self.by_id) > max(1, self.facts.generations):
            self.v("one_event", f"{len(self.by_id)} distinct events {sorted(self.by_id)} for "
                                f"{self.facts.generations} generation(s)")
        expected_ids = {f.file_id for f in self.facts.files}
        for event_id, copies in self.by_id.items():
            event = copies[0]
            listed = {a.get("file_id"): a for a in event.get("artifacts", [])}
            pending = [fid for fid, a in listed.items() if a.get("state") not in ("persisted", "failed")]
            if pending and not event.get("given_up"):
                self.v("event_after_files", f"event {event_id} names files still pending: {pending[:5]}")
            missing = sorted(expected_ids - set(listed))
            if missing and not event.get("artifacts_truncated"):
                self.v("event_after_files", f"event {event_id} leaves out {len(missing)} file(s) the run made: "
                                            f"{missing[:5]}")
            if event.get("owner") not in (self.facts.owner, None):
                self.v("owner_kept", f"event {event_id} names owner {event.get('owner')!r}, "
                                     f"expected {self.facts.owner!r}")
        # A webhook capture may record a run for nobody (and send its event) before its caller
        # adopts it by a POST or an import; after that, its last event names the caller.
        latest = max(enumerate(self.in_order), key=lambda entry: (str(entry[1].get("sent_at")), entry[0]),
                     default=(0, None))[1]
        if latest is not None and latest.get("owner") != self.facts.owner:
            self.v("owner_kept", f"the last event {latest.get('event_id')} names owner {latest.get('owner')!r}, "
                                 f"expected {self.facts.owner!r}")

    def _send_answer_dropped(self, copies: list[dict[str, Any]]) -> bool:
        """Whether an events-queue send's answer was dropped near these copies' times: the SDK's
        retry of a send that had happened is a duplicate the app cannot avoid."""
        sent = [_epoch(c.get("sent_at")) for c in copies]
        times = [t for t in sent if t is not None]
        if not times:
            return False
        return any(d["method"] == "POST" and d["path"].startswith(self.observed.events_path)
                   and min(times) - 5 <= float(d["at"]) <= max(times) + 5 for d in self.observed.dropped)

    def status_matches_event(self) -> None:
        status = self.status
        if status is None or not status.get("event_id"):
            return
        named = self.by_id.get(str(status["event_id"]))
        if named is None:
            self.v("status_equals_event", f"the status names event {status['event_id']} that never arrived "
                                          f"(arrived: {sorted(self.by_id)})")
            return
        event = named[0]
        for key in ("status", "complete", "given_up", "counts"):
            if event.get(key) != status.get(key):
                self.v("status_equals_event", f"{key}: event {event.get(key)!r}, status {status.get(key)!r}")
        event_states = {a.get("file_id"): (a.get("state"), a.get("sha256")) for a in event.get("artifacts", [])}
        status_states = {fid: (a.get("state"), a.get("sha256")) for fid, a in self.states.items()}
        if not event.get("artifacts_truncated") and event_states != status_states:
            differ = sorted(str(k) for k in set(event_states) | set(status_states)
                            if event_states.get(k) != status_states.get(k))
            self.v("status_equals_event", f"artifacts differ for {differ[:5]}")

    def owner_and_key(self) -> None:
        facts = self.facts
        if facts.owner is not None and facts.stranger_status != 404:
            self.v("owner_kept", f"another owner asking for the run got {facts.stranger_status}, not 404")
        if facts.idempotency_key is None:
            return
        if facts.creates != 1:
            self.v("one_create_per_key", f"Idempotency-Key {facts.idempotency_key} made {facts.creates} create "
                                         f"requests at Azure OpenAI")
        if len(facts.key_answers) > 1:
            self.v("one_create_per_key", f"the 202s for Idempotency-Key {facts.idempotency_key} named "
                                         f"{sorted(facts.key_answers)}")


def _check_blobs(observed: Observed) -> list[Violation]:
    """Blobs that belong to no expected file (a stray or partial write)."""
    known = {(facts.response_id, f.file_id) for facts in observed.runs.values() for f in facts.files}
    out = []
    for name, (size, meta, sha) in observed.blobs.items():
        parts = name.split("/")
        if len(parts) < 3 or (parts[0], parts[1]) not in known:
            out.append(Violation("no_partial_blob", parts[0], parts[1] if len(parts) > 1 else None,
                                 f"blob {name} ({size} bytes, sha {sha[:12]}) is no file of a followed run"))
        elif meta.get("sha256") != sha:
            out.append(Violation("no_partial_blob", parts[0], parts[1],
                                 f"blob {name}: metadata sha {meta.get('sha256')} but content sha {sha}"))
    return out


def _check_commits(observed: Observed) -> list[Violation]:
    """A blob committed successfully more than once was written twice."""
    done: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for commit in observed.commits:
        if 200 <= int(commit["status"]) < 300:
            done[str(commit["path"])].append(commit)
    out = []
    for path, commits in done.items():
        if len(commits) < 2 or not path.startswith(observed.artifacts_path):
            continue  # run records and claims are rewritten on purpose
        parts = path.strip("/").split("/")  # account/container/response/file/name
        kinds = ", ".join(f"{c['kind']}{' (conditional)' if c['conditional'] else ''}" for c in commits)
        out.append(Violation("single_commit", parts[2] if len(parts) > 2 else path,
                             parts[3] if len(parts) > 3 else None,
                             f"committed {len(commits)} times: {kinds}"))
    return out


def _epoch(stamp: object) -> float | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` as Unix seconds."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
