"""A fault-injecting HTTP/1.1 proxy in front of Azurite: Storage answering 500/503, or not at all, for a while.

Modelled on bench/latency_proxy.py (one loopback port per route, request boundaries parsed), but
it also frames the answers, one request then its response, which every Storage client here does
(none pipelines). That lets it:

- answer a request itself, without forwarding it, with a Storage error (``500 InternalError``,
  ``503 ServerBusy``), for a share of the requests during a window;
- hold requests for a while before forwarding them (Storage slow to answer), or forward a request
  and then drop the connection without its answer (a timeout after the request was sent: the
  write may have happened, the client cannot tell);
- record every blob commit it forwarded with the status Storage answered (``Put Blob``,
  ``Put Block List``), so the harness can tell a file committed twice.

It runs in a process of its own (``python -m tests.harness.storage_proxy --route blob=HOST:PORT``):
all instances' Storage traffic crosses it, and the harness process is busy enough. It prints one
JSON line with its ports and answers on a control port:
``POST /fault`` ``{"route", "kind": "status"|"stall"|"drop", "status", "seconds", "share", "seed",
"hold_seconds"}``,
``GET /commits``, ``GET /dropped``, ``GET /counts``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.latency_proxy import Head, JsonControl, ProtocolError, read_head, route_argument

_READ_SIZE = 256 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_ERROR_CODES = {500: "InternalError", 503: "ServerBusy"}


@dataclass
class Fault:
    """Until ``until`` (monotonic), ``share`` of the route's requests are answered ``status`` (kind
    "status"), held ``hold_seconds`` before being forwarded (kind "stall"), or forwarded with
    their answer dropped (kind "drop")."""

    route: str
    kind: str
    status: int
    hold_seconds: float
    share: float
    until: float
    rng: random.Random


@dataclass(frozen=True)
class Commit:
    """A blob commit that reached Azurite, and what Azurite answered."""

    at: float  # wall-clock seconds
    method: str
    path: str  # /{account}/{container}/{blob}
    kind: str  # "put_blob" or "put_block_list"
    status: int
    conditional: bool  # sent with If-None-Match / If-Match: a refusal is a check, not a failure


@dataclass
class _Response:
    status: int
    length: int | None  # None: until the connection closes
    chunked: bool


class StorageFaultProxy:
    """Routes by name (``{"blob": ("127.0.0.1", 10000)}``), each on its own loopback port."""

    def __init__(self, upstreams: dict[str, tuple[str, int]]) -> None:
        self._upstreams = dict(upstreams)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._commits: list[Commit] = []
        self._dropped: list[dict[str, Any]] = []  # requests that happened but whose answer was dropped
        self._counts: dict[str, int] = {"forwarded": 0, "answered_error": 0, "held": 0, "dropped": 0}
        self.ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="storage-fault-proxy", daemon=True)

    def start(self) -> StorageFaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=30)
        return self

    def add_fault(self, route: str, kind: str, *, status: int, seconds: float, share: float, seed: int,
                  hold_seconds: float = 0.0) -> None:
        if kind not in ("status", "stall", "drop"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(route, kind, status, hold_seconds, share, time.monotonic() + seconds, random.Random(seed))  # noqa: S311 - a replayable schedule, not secrets
        with self._lock:
            self._faults.append(fault)

    def commits(self) -> list[Commit]:
        with self._lock:
            return list(self._commits)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def dropped(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._dropped)

    def _fault_for(self, route: str) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.until > now]
            for fault in self._faults:
                if fault.route in (route, "*") and fault.rng.random() < fault.share:
                    return fault
        return None

    async def _listen(self) -> None:
        for name in self._upstreams:
            server = await asyncio.start_server(
                functools.partial(self._accept, name), "127.0.0.1", 0, limit=_MAX_HEAD_BYTES
            )
            self.ports[name] = int(server.sockets[0].getsockname()[1])

    async def _accept(self, route: str, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        host, port = self._upstreams[route]
        upstream_reader: asyncio.StreamReader | None = None
        upstream: asyncio.StreamWriter | None = None
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    return
                fault = self._fault_for(route)
                if fault is not None and fault.kind == "status":
                    await _drain_body(reader, head)  # the client sent it; Storage would read it
                    _answer_error(client, fault.status)
                    await client.drain()
                    self._count("answered_error")
                    continue
                if fault is not None and fault.kind == "stall":
                    self._count("held")
                    await asyncio.sleep(fault.hold_seconds)  # the client may give up meanwhile
                if upstream is None:
                    upstream_reader, upstream = await asyncio.open_connection(host, port, limit=_MAX_HEAD_BYTES)
                assert upstream_reader is not None
                upstream.write(head.raw)
                await _forward_body(reader, upstream, head)
                await upstream.drain()
                if fault is not None and fault.kind == "drop":
                    await asyncio.sleep(fault.hold_seconds)
                    status = await _swallow_response(upstream_reader, head.method)
                    self._note_commit(head, status)
                    self._count("dropped")
                    with self._lock:
                        self._dropped.append({"at": time.time(), "method": head.method, "path": head.path,
                                              "status": status})
                    return  # the request happened; its answer never arrives
                response = await _relay_response(upstream_reader, client, head.method)
                self._count("forwarded")
                self._note_commit(head, response.status)
                if response.length is None and not response.chunked:
                    return  # the body ran to the close
        except (ConnectionError, asyncio.IncompleteReadError, ProtocolError, OSError):
            return
        finally:
            for writer in (upstream, client):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def _note_commit(self, head: Head, status: int) -> None:
        if head.method != "PUT":
            return
        text = head.raw.decode("latin-1")
        target = text.split(" ", 2)[1]
        query = parse_qs(urlsplit(target).query)
        comp = query.get("comp", [""])[0]
        headers = text.lower()
        if comp == "blocklist":
            kind = "put_block_list"
        elif not comp and "x-ms-blob-type:" in headers:
            kind = "put_blob"
        else:
            return
        conditional = "\r\nif-none-match:" in headers or "\r\nif-match:" in headers
        with self._lock:
            self._commits.append(Commit(time.time(), head.method, head.path, kind, status, conditional))


def _answer_error(client: asyncio.StreamWriter, status: int) -> None:
    code = _ERROR_CODES.get(status, "InternalError")
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>Injected by the harness.</Message></Error>").encode()
    reason = "Service Unavailable" if status == 503 else "Internal Server Error"
    client.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nx-ms-error-code: {code}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )


async def _drain_body(reader: asyncio.StreamReader, head: Head) -> None:
    if head.chunked:
        await _copy_chunked(reader, None)
    else:
        await _copy_exactly(reader, None, head.content_length)


async def _forward_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head) -> None:
    if head.chunked:
        await _copy_chunked(reader, writer)
    else:
        await _copy_exactly(reader, writer, head.content_length)


async def _relay_response(upstream: asyncio.StreamReader, client: asyncio.StreamWriter, method: str) -> _Response:
    """Pass one response on, framed by its status, Content-Length or chunks."""
    raw = await upstream.readuntil(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    client.write(raw)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        await client.drain()
        return _Response(status, 0, False)
    if chunked:
        await _copy_chunked(upstream, client)
    elif length is not None:
        await _copy_exactly(upstream, client, length)
    else:
        while data := await upstream.read(_READ_SIZE):
            client.write(data)
            await client.drain()
    await client.drain()
    return _Response(status, length, chunked)


async def _swallow_response(upstream: asyncio.StreamReader, method: str) -> int:
    """Read one response and throw it away; its status."""
    raw = await upstream.readuntil(b"\r\n\r\n")
    status = int(raw.split(b"\r\n")[0].split(b" ")[1])
    return status


async def _copy_exactly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, count: int) -> None:
    while count > 0:
        data = await reader.read(min(count, _READ_SIZE))
        if not data:
            raise ConnectionError("closed mid-body")
        if writer is not None:
            writer.write(data)
            await writer.drain()
        count -= len(data)


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    def out(data: bytes) -> None:
        if writer is not None:
            writer.write(data)

    while True:
        line = await reader.readuntil(b"\r\n")
        out(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                out(trailer)
            out(b"\r\n")
            return
        await _copy_exactly(reader, writer, size + 2)


# -- the process: the proxy and its control port -------------------------------------------------


class _Control(JsonControl):
    proxy: StorageFaultProxy

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/commits":
            self._answer({"commits": [vars(c) for c in self.proxy.commits()]})
        elif self.path == "/dropped":
            self._answer({"dropped": self.proxy.dropped()})
        elif self.path == "/counts":
            self._answer(self.proxy.counts())
        else:
            self._answer({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/fault":
            self._answer({"error": "not found"}, 404)
            return
        try:
            spec = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            self.proxy.add_fault(str(spec["route"]), str(spec["kind"]), status=int(spec.get("status", 503)),
                                 seconds=float(spec["seconds"]), share=float(spec.get("share", 1.0)),
                                 seed=int(spec.get("seed", 0)), hold_seconds=float(spec.get("hold_seconds", 0.0)))
        except (ValueError, KeyError, TypeError) as error:
            self._answer({"error": str(error)}, 400)
            return
        self._answer({"ok": True})



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.storage_proxy")
    parser.add_argument("--route", type=route_argument, action="append", required=True, help="NAME=HOST:PORT")
    args = parser.parse_args(argv)
    proxy = StorageFaultProxy(dict(args.route)).start()
    control = ThreadingHTTPServer(("127.0.0.1", 0), type("Control", (_Control,), {"proxy": proxy}))
    print(json.dumps({**proxy.ports, "control": control.server_address[1]}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        control.serve_forever()


if __name__ == "__main__":
    main()
