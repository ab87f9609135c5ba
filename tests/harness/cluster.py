"""The processes of a session: the Storage fault proxy and the app instances, started, killed,
paused and restarted by the harness (only ever the processes it started, by their pid)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.harness.journal import Delivery, read_journal
from tests.support.azurite import ROOT, Azurite, loopback_connection_string, stop_process

_START_SECONDS = 60.0  # an instance imports the app and its SDKs first; the machine may be busy


def _read_ready_line(process: subprocess.Popen[str], what: str, timeout: float) -> dict[str, Any]:
    """The JSON line a child prints once it serves; the child is killed if it does not come."""
    assert process.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline() if process.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0].strip():
        process.kill()
        process.wait()
        raise RuntimeError(f"{what} did not start within {timeout} s (exit code {process.returncode})")
    document: dict[str, Any] = json.loads(box[0])
    return document


class StorageProxyProcess:
    """tests.harness.storage_proxy in its own process, in front of Azurite's blob and queue services."""

    def __init__(self, azurite: Azurite, log: Path) -> None:
        self._log: IO[str] = log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.storage_proxy",
             "--route", f"blob=127.0.0.1:{azurite.blob_port}", "--route", f"queue=127.0.0.1:{azurite.queue_port}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        ports = _read_ready_line(self.process, "the storage fault proxy", 30)
        self.blob_port, self.queue_port, self.control = int(ports["blob"]), int(ports["queue"]), int(ports["control"])
        self.table_port = azurite.table_port

    @property
    def connection_string(self) -> str:
        """Azurite's account, reached through the proxy: what the instances use."""
        return loopback_connection_string(self.blob_port, self.queue_port, self.table_port)

    def fault(self, spec: dict[str, Any]) -> None:
        self._call("POST", "/fault", spec)

    def commits(self) -> list[dict[str, Any]]:
        commits: list[dict[str, Any]] = self._call("GET", "/commits")["commits"]
        return commits

    def dropped(self) -> list[dict[str, Any]]:
        """Requests Storage carried out whose answers the proxy dropped: (at, method, path, status)."""
        dropped: list[dict[str, Any]] = self._call("GET", "/dropped")["dropped"]
        return dropped

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self._call("GET", "/counts")
        return counts

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@dataclass
class Incarnation:
    """One process of an instance slot; a restart makes the next one."""

    name: str  # "i{slot}.{n}"
    process: subprocess.Popen[str]
    journal: Path
    url: str
    started: float
    killed_at: float | None = None
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (stopped, resumed), wall clock


class Instance:
    """One slot: at most one live process at a time, restarted after a kill."""

    def __init__(self, slot: int, env: dict[str, str], workdir: Path, lease_seconds: int) -> None:
        self.slot = slot
        self.env = env
        self.workdir = workdir
        self.lease_seconds = lease_seconds
        self.incarnations: list[Incarnation] = []
        self.lock = threading.Lock()  # a kill and a request picking this instance's URL

    @property
    def current(self) -> Incarnation | None:
        live = self.incarnations[-1] if self.incarnations else None
        return live if live is not None and live.killed_at is None else None

    @property
    def capture(self) -> str:
        return self.env.get("ARTIFACTS_WEBHOOK_CAPTURE", "started")

    def start(self) -> Incarnation:
        name = f"i{self.slot}.{len(self.incarnations)}"
        journal = self.workdir / f"journal-{name}.jsonl"
        log = (self.workdir / f"instance-{name}.log").open("w", encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.instance", "--journal", str(journal),
             "--lease-seconds", str(self.lease_seconds)],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        log.close()  # the child holds its own descriptor
        ready = _read_ready_line(process, f"instance {name}", _START_SECONDS)
        incarnation = Incarnation(name, process, journal, str(ready["http"]), time.time())
        with self.lock:
            self.incarnations.append(incarnation)
        return incarnation

    def kill(self) -> Incarnation | None:
        """SIGKILL the live process: whatever it was doing stops mid-way."""
        with self.lock:
            live = self.current
            if live is None:
                return None
            live.process.send_signal(signal.SIGKILL)
            live.killed_at = time.time()
        live.process.wait()
        return live

    def pause(self) -> Incarnation | None:
        live = self.current
        if live is None:
            return None
        live.process.send_signal(signal.SIGSTOP)
        live.pauses.append((time.time(), float("inf")))
        return live

    def resume(self, incarnation: Incarnation) -> None:
        if incarnation.pauses and incarnation.pauses[-1][1] == float("inf"):
            incarnation.process.send_signal(signal.SIGCONT)
            incarnation.pauses[-1] = (incarnation.pauses[-1][0], time.time())

    def in_flight(self) -> int:
        """Deliveries the live process has started and not finished (read from its journal)."""
        live = self.current
        if live is None:
            return 0
        return sum(1 for d in read_journal(live.journal, live.name) if d.ended is None)

    def deliveries(self) -> list[tuple[Incarnation, Delivery]]:
        return [(inc, d) for inc in self.incarnations for d in read_journal(inc.journal, inc.name)]

    def stop(self) -> None:
        for incarnation in self.incarnations:
            if incarnation.process.poll() is None:
                incarnation.process.send_signal(signal.SIGCONT)  # a paused process cannot die of TERM
                stop_process(incarnation.process)
