"""A latency-injecting HTTP/1.1 proxy for the benchmarks: cloud round trips on loopback.

Each route listens on a loopback port of its own and forwards to one upstream (Azurite's blob
or queue service, the fake Azure OpenAI). Every request waits ``delay_ms`` before it is
forwarded, however many requests a keep-alive connection carries: request boundaries are parsed
(``Content-Length`` and chunked bodies); responses flow back untouched. A new connection waits
one more delay (the TCP handshake; TLS would cost more), so connection reuse pays as it does in
Azure. Requests and connections are counted per route, and each request is logged (monotonic
time, method, path) so a benchmark can report requests per persisted file and when a given
request was made.

    .venv/bin/python -m bench.latency_proxy --route blob=127.0.0.1:10000 --delay-ms 20

From the command line it runs in its own process (so its CPU is not the measured app's), prints
one JSON line with its ports, and answers on a control port: ``GET /counts``, ``GET /log``,
``POST /reset``, ``PUT /delay?ms=20``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import monotonic
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_DELAY_MS = 20.0
_READ_SIZE = 256 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_LOG_ENTRIES = 200_000


class ProtocolError(Exception):
    """The client sent something that is not an HTTP/1.1 request this proxy can frame."""


@dataclass
class RouteCounts:
    requests: int = 0
    connections: int = 0
    methods: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "connections": self.connections, "methods": dict(self.methods)}


@dataclass(frozen=True)
class Head:
    """A request's start line and the framing of its body."""

    raw: bytes
    method: str
    path: str
    content_length: int
    chunked: bool


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next request's head on a kept-alive connection; None once the client is gone."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    return parse_head(raw)


def parse_head(raw: bytes) -> Head:
    """Frame one request from its head (the bytes up to and including the blank line)."""
    lines = raw.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("not an HTTP request line") from None
    if not version.startswith("HTTP/1."):
        raise ProtocolError(f"unsupported version {version}")
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            if not value.strip().isdigit():
                raise ProtocolError("bad Content-Length")
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return Head(raw, method, urlsplit(target).path, 0 if chunked else length, chunked)


class LatencyProxy:
    """Routes by name (``{"blob": ("127.0.0.1", 10000)}``), each on its own free loopback port."""

    def __init__(
        self,
        upstreams: Mapping[str, tuple[str, int]],
        *,
        delay_ms: float = DEFAULT_DELAY_MS,
        connect_delay_ms: float | None = None,
        on_request: Callable[[str, Head], None] | None = None,
    ) -> None:
        """``connect_delay_ms`` is paid once per new connection (default: ``delay_ms``, the
        handshake's round trip); ``delay_ms`` by every request. ``on_request`` is called with the
        route and the head of every request as it arrives, on the proxy's event loop (so it must be
        quick): a benchmark classifies requests by operation there."""
        self._upstreams = dict(upstreams)
        self._delay = delay_ms / 1000
        self._connect_delay = None if connect_delay_ms is None else connect_delay_ms / 1000
        self._on_request = on_request
        self._lock = threading.Lock()
        self._counts = {name: RouteCounts() for name in self._upstreams}
        self._log: deque[tuple[float, str, str, str]] = deque(maxlen=_LOG_ENTRIES)
        self._ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    # -- control, from any thread ---------------------------------------------------------------

    def start(self) -> LatencyProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def port(self, route: str) -> int:
        return self._ports[route]

    @property
    def ports(self) -> dict[str, int]:
        return dict(self._ports)

    @property
    def delay_ms(self) -> float:
        return self._delay * 1000

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError("the delay must not be negative")
        self._delay = value / 1000  # read once per request: a change applies to the next ones

    def counts(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: counts.as_dict() for name, counts in self._counts.items()}

    def log(self) -> list[tuple[float, str, str, str]]:
        """Every request since the last reset: (monotonic time it arrived, route, method, path)."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        with self._lock:
            self._counts = {name: RouteCounts() for name in self._upstreams}
            self._log.clear()

    # -- the proxy, on its own event loop -------------------------------------------------------

    async def _listen(self) -> None:
        for name in self._upstreams:
            server = await asyncio.start_server(
                functools.partial(self._accept, name), "127.0.0.1", 0, limit=_MAX_HEAD_BYTES
            )
            self._servers.append(server)
            self._ports[name] = int(server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, route: str, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._connect(route, client_reader, client)
        except asyncio.CancelledError:
            client.close()  # the proxy is stopping: the connection ends here
        finally:
            self._connections.discard(task)

    async def _connect(self, route: str, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        with self._lock:
            self._counts[route].connections += 1
        host, port = self._upstreams[route]
        try:
            await self._pause(self._connect_delay)  # the TCP handshake's round trip
            upstream_reader, upstream = await asyncio.open_connection(host, port, limit=_MAX_HEAD_BYTES)
        except OSError:
            client.close()
            return
        requests = asyncio.ensure_future(self._requests(route, client_reader, upstream))
        responses = asyncio.ensure_future(_pipe(upstream_reader, client))
        try:
            # Either side closing ends the connection: a client that leaves wants no more
            # answers, and an upstream that closes (Connection: close, a cut body) is passed on.
            await asyncio.wait({requests, responses}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (requests, responses):
                task.cancel()
            await asyncio.gather(requests, responses, return_exceptions=True)
            for writer in (upstream, client):
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _requests(self, route: str, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
        """Forward one request after another, each after the delay, bodies streamed as they come."""
        while True:
            head = await read_head(reader)
            if head is None:
                return
            with self._lock:
                counts = self._counts[route]
                counts.requests += 1
                counts.methods[head.method] = counts.methods.get(head.method, 0) + 1
                self._log.append((monotonic(), route, head.method, head.path))
            if self._on_request is not None:
                self._on_request(route, head)
            await self._pause()
            upstream.write(head.raw)
            if head.chunked:
                await _forward_chunked(reader, upstream)
            else:
                await _forward_exactly(reader, upstream, head.content_length)
            await upstream.drain()

    async def _pause(self, delay: float | None = None) -> None:
        delay = self._delay if delay is None else delay
        if delay > 0:
            await asyncio.sleep(delay)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_READ_SIZE):
        writer.write(data)
        await writer.drain()


async def _forward_exactly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int) -> None:
    while count > 0:
        data = await reader.read(min(count, _READ_SIZE))
        if not data:
            raise ConnectionError("the client closed mid-body")
        writer.write(data)
        count -= len(data)
        await writer.drain()


async def _forward_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                writer.write(trailer)
            writer.write(b"\r\n")
            return
        await _forward_exactly(reader, writer, size + 2)  # the chunk and its CRLF


# -- the command line: the proxy in its own process, with a control port ---------------------------


class JsonControl(BaseHTTPRequestHandler):
    """A proxy's control endpoint: answers JSON, logs nothing (the proxies here and in tests/harness)."""

    def _answer(self, document: dict[str, Any], status: int = 200) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Control(JsonControl):
    proxy: LatencyProxy

    def do_GET(self) -> None:
        if self.path == "/counts":
            self._answer({"delay_ms": self.proxy.delay_ms, "routes": self.proxy.counts()})
        elif self.path == "/log":
            self._answer({"requests": self.proxy.log()})
        else:
            self._answer({"error": "not found"}, 404)

    def do_POST(self) -> None:
        if self.path == "/reset":
            self.proxy.reset()
            self._answer({"reset": True})
        else:
            self._answer({"error": "not found"}, 404)

    def do_PUT(self) -> None:
        split = urlsplit(self.path)
        values = parse_qs(split.query).get("ms", [])
        if split.path != "/delay" or len(values) != 1:
            self._answer({"error": "PUT /delay?ms=N"}, 400)
            return
        try:
            self.proxy.delay_ms = float(values[0])
        except ValueError as error:
            self._answer({"error": str(error)}, 400)
            return
        self._answer({"delay_ms": self.proxy.delay_ms})


def route_argument(text: str) -> tuple[str, tuple[str, int]]:
    """``NAME=HOST:PORT`` on a proxy's command line."""
    name, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not name or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, (host, int(port))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--route", type=route_argument, action="append", required=True,
                        help="NAME=HOST:PORT (repeatable)")
    parser.add_argument("--delay-ms", type=float, default=DEFAULT_DELAY_MS, help="per request")
    parser.add_argument("--connect-delay-ms", type=float, default=None,
                        help="per new connection (default: the request delay, as it changes)")
    args = parser.parse_args(argv)
    with LatencyProxy(dict(args.route), delay_ms=args.delay_ms, connect_delay_ms=args.connect_delay_ms) as proxy:
        handler = type("Control", (_Control,), {"proxy": proxy})
        control = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        print(json.dumps({**proxy.ports, "control": control.server_address[1]}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            control.serve_forever()


if __name__ == "__main__":
    main()
