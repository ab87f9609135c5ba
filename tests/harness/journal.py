"""The delivery journal: each instance process appends one JSON line per delivery start and end.

A process killed with SIGKILL writes nothing more, so a start without its end is a delivery that
died mid-way; a paused process's deliveries span the pause. The invariant checker reads these to
tell an allowed duplicate (its completing step was interrupted) from a defect. One file per
process incarnation, flushed line by line; a torn last line (the kill came mid-write) is skipped.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


class JournalWriter:
    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": time.time(), "ev": event, **fields}, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()  # a SIGKILL must not lose what was already done

    # bench.queue_host.ListenerObserver
    def lease_lost(self, function: str, message_id: str, dequeue_count: int, why: str) -> None:
        self.write("lease_lost", fn=function, mid=message_id, dq=dequeue_count, why=why)


@dataclass
class Delivery:
    """One delivery of one message, as an instance journaled it."""

    instance: str  # "i{slot}.{incarnation}"
    function: str
    message_id: str
    response_id: str | None
    dequeue_count: int
    started: float
    ended: float | None  # None: the process died before it returned
    ok: bool | None
    lease_lost: str | None = None  # why, when the listener lost the message's lease


def read_journal(path: Path, instance: str) -> list[Delivery]:
    deliveries: dict[tuple[str, int], Delivery] = {}
    order: list[Delivery] = []
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # torn by the kill
        key = (str(entry.get("mid")), int(entry.get("dq", 0)))
        if entry["ev"] == "start":
            delivery = Delivery(instance, entry["fn"], key[0], entry.get("rid"), key[1], entry["t"], None, None)
            deliveries[key] = delivery
            order.append(delivery)
        elif entry["ev"] == "end" and key in deliveries:
            deliveries[key].ended = entry["t"]
            deliveries[key].ok = bool(entry.get("ok"))
        elif entry["ev"] == "lease_lost" and key in deliveries:
            deliveries[key].lease_lost = str(entry.get("why"))
    return order
