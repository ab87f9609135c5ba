"""The benchmarks' latency proxy: every request on a kept-alive connection is framed, counted,
held for the delay and forwarded whole; responses come back untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.latency_proxy import LatencyProxy, ProtocolError, parse_head

ROOT = Path(__file__).resolve().parents[2]


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received: method, path, body length and hash."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Azurite and the fake
    seen: list[dict[str, Any]] = []  # noqa: RUF012 - shared on purpose: the tests read it

    def _echo(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass  # trailers
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {"method": self.command, "path": self.path, "size": len(body),
                  "sha256": hashlib.sha256(body).hexdigest()}
        _Echo.seen.append(record)
        answer = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def do_GET(self) -> None:
        self._echo()

    def do_PUT(self) -> None:
        self._echo()

    def do_POST(self) -> None:
        self._echo()

    def do_DELETE(self) -> None:
        self._echo()

    def do_HEAD(self) -> None:
        self._echo()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, int]]:
    _Echo.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_requests_on_one_kept_alive_connection_are_each_counted_and_forwarded_whole(
    upstream: tuple[str, int],
) -> None:
    big = os.urandom(3 * 1024 * 1024)
    with LatencyProxy({"blob": upstream, "openai": upstream}, delay_ms=1) as proxy, httpx.Client(
        base_url=f"http://127.0.0.1:{proxy.port('blob')}", timeout=30
    ) as client:
        answers = [
            client.get("/container?comp=list"),
            client.put("/container/a.bin", content=big),
            client.post("/chunked", content=iter([b"abc", b"", b"defgh", os.urandom(70_000)])),  # no length: chunked
            client.head("/container/a.bin"),
            client.delete("/queue/messages/1"),
        ]
        assert [a.status_code for a in answers] == [200] * 5
        assert answers[1].json() == {"method": "PUT", "path": "/container/a.bin", "size": len(big),
                                     "sha256": hashlib.sha256(big).hexdigest()}
        assert answers[2].json()["size"] == 8 + 70_000
        counts = proxy.counts()
    assert counts["blob"]["requests"] == 5
    assert counts["blob"]["connections"] == 1  # five requests, one connection: each delayed, each counted
    assert counts["blob"]["methods"] == {"GET": 1, "PUT": 1, "POST": 1, "HEAD": 1, "DELETE": 1}
    assert counts["openai"] == {"requests": 0, "connections": 0, "methods": {}}
    assert [(method, path) for _, route, method, path in proxy.log()] == [
        ("GET", "/container"), ("PUT", "/container/a.bin"), ("POST", "/chunked"),
        ("HEAD", "/container/a.bin"), ("DELETE", "/queue/messages/1"),
    ]
    assert [s["method"] for s in _Echo.seen] == ["GET", "PUT", "POST", "HEAD", "DELETE"]


def test_a_request_is_held_for_the_delay_before_it_reaches_the_upstream(upstream: tuple[str, int]) -> None:
    # An hour per request (none per connection): the request is framed at once and never goes out here.
    proxy = LatencyProxy({"blob": upstream}, delay_ms=3_600_000, connect_delay_ms=0).start()
    outcome: list[BaseException | httpx.Response] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(f"http://127.0.0.1:{proxy.port('blob')}/held", timeout=60))
        except httpx.HTTPError as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        seen = threading.Event()
        for _ in range(500):  # until the proxy has framed the request, at most 5 s
            if proxy.counts()["blob"]["requests"] == 1:
                seen.set()
                break
            seen.wait(0.01)
        assert seen.is_set()
        assert _Echo.seen == []  # counted, but still held
    finally:
        proxy.stop()  # ends the held request: the caller sees the connection close
        caller.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError)
    assert _Echo.seen == []


def test_counts_reset_and_delay_change_at_runtime(upstream: tuple[str, int]) -> None:
    with LatencyProxy({"queue": upstream}, delay_ms=0) as proxy:
        assert httpx.get(f"http://127.0.0.1:{proxy.port('queue')}/one").status_code == 200
        proxy.reset()
        assert proxy.counts()["queue"]["requests"] == 0 and proxy.log() == []
        proxy.delay_ms = 2
        assert httpx.get(f"http://127.0.0.1:{proxy.port('queue')}/two").status_code == 200
        assert proxy.counts()["queue"]["requests"] == 1
        assert proxy.delay_ms == 2
        with pytest.raises(ValueError, match="negative"):
            proxy.delay_ms = -1


def test_request_heads_are_framed_by_length_or_chunking() -> None:
    head = parse_head(b"PUT /c/b?comp=block HTTP/1.1\r\nHost: x\r\ncontent-length: 42\r\n\r\n")
    assert (head.method, head.path, head.content_length, head.chunked) == ("PUT", "/c/b", 42, False)
    chunked = parse_head(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n")
    assert (chunked.content_length, chunked.chunked) == (0, True)  # chunking wins, as HTTP/1.1 says
    assert parse_head(b"GET / HTTP/1.1\r\n\r\n").content_length == 0
    for bad in (b"GARBAGE\r\n\r\n", b"GET / HTTP/2\r\n\r\n", b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"):
        with pytest.raises(ProtocolError):
            parse_head(bad)


def test_the_command_line_serves_a_control_port(upstream: tuple[str, int]) -> None:
    host, port = upstream
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.latency_proxy", "--route", f"blob={host}:{port}", "--delay-ms", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        control = f"http://127.0.0.1:{ports['control']}"
        assert httpx.put(f"{control}/delay", params={"ms": "5"}).json() == {"delay_ms": 5.0}
        assert httpx.get(f"http://127.0.0.1:{ports['blob']}/x").status_code == 200
        counts = httpx.get(f"{control}/counts").json()
        assert counts["delay_ms"] == 5.0 and counts["routes"]["blob"]["requests"] == 1
        assert [entry[1:] for entry in httpx.get(f"{control}/log").json()["requests"]] == [["blob", "GET", "/x"]]
        assert httpx.post(f"{control}/reset").status_code == 200
        assert httpx.get(f"{control}/counts").json()["routes"]["blob"]["requests"] == 0
        assert httpx.put(f"{control}/delay", params={"ms": "-3"}).status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=10)
