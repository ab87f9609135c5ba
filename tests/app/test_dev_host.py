"""The development host (scripts/dev_host.py), started as ``make start`` starts it without Core Tools:
a process of its own on a free port, against this session's Azurite and fake Azure OpenAI.

Every curl example in README.md, docs/api.md and docs/development.md that calls the app is parsed
from the docs and sent to it, in the order the docs give them, and its answer checked against what
the docs say (the status and fields; the JSON the docs show after it, where they show one). The
host's own semantics are checked too: routes from the metadata, JSON for what no function answers,
a key not asked for, the poison queues, a quiet Ctrl-C, and ``make demo`` through the running app.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from bench.queue_host import QueueSettings
from scripts.dev_host import FunctionInvoker, HttpRoutes, Schedule, TimerListener
from tests.conftest import API_KEY, DEPLOYMENT
from tests.fake_openai import FakeAzureOpenAI
from tests.support.azurite import Azurite, free_port, port_open
from tests.support.host import Binding, FunctionInfo
from tests.support.http_front import serve_http
from tests.support.worker_invoker import worker

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "api.md", ROOT / "docs" / "development.md"]
DOCUMENTED_APP = "http://localhost:7071"
ID_PLACEHOLDERS = ("resp_68c1…", "<response_id>")
LINK_PLACEHOLDER = "<url of an artifact>"
# What api.md says each route answers: the status, and the fields the answer always has.
ANSWERS: dict[tuple[str, str], tuple[int, set[str]]] = {
    ("POST", "responses"): (202, {"response_id", "status", "status_url"}),
    ("GET", "responses/{id}"): (200, {"response_id", "status", "phase", "complete", "counts", "artifacts",
                                      "event_id", "output_text", "warnings", "given_up", "error"}),
    ("POST", "responses/{id}/import"): (202, {"response_id", "status", "phase", "generation", "status_url"}),
    ("POST", "responses/{id}/cancel"): (202, {"status", "cancel_requested"}),
}
# Settings this test gives the dev host; the same names in the test's own environment are not passed on.
_APP_SETTINGS_PREFIXES = ("AZURE_OPENAI_", "ARTIFACTS_", "AzureWebJobs", "AzureFunctionsJobHost__",
                          "WEBSITE_AUTH_ENABLED", "APPLICATIONINSIGHTS_", "OTEL_", "LOCAL_SETTINGS")


# --- the examples, read from the docs ---------------------------------------------------------------


@dataclass
class Example:
    page: str
    line: int
    command: str
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    saves_file: bool
    documented: Any = None  # the JSON the docs show right after it, if any

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.command}"


_FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(text: str) -> list[tuple[str, int, str]]:
    """Fenced code blocks: (language, first line number, text)."""
    blocks: list[tuple[str, int, str]] = []
    current: list[str] = []
    language, start = "", 0
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(line.strip()) if line.strip().startswith("```") else None
        if fence and not inside:
            inside, language, start, current = True, fence.group(1), number + 1, []
        elif line.strip() == "```" and inside:
            inside = False
            blocks.append((language, start, "\n".join(current)))
        elif inside:
            current.append(line)
    return blocks


def parse_curl(command: str) -> tuple[str, str, dict[str, str], str | None, bool]:
    """(method, url, headers, body, saves a file) of a curl command as the docs write them."""
    words = shlex.split(command)
    assert words[0] == "curl", command
    method, url, headers, body, saves = "", "", {}, None, False
    rest = iter(words[1:])
    for word in rest:
        if word in ("-sS", "-s", "-S"):
            continue
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip().lower()] = value.strip()
        elif word in ("-d", "--data"):
            body = next(rest)
        elif word in ("-OJ", "-JO", "-O"):
            saves = True
        elif word.startswith("-"):
            raise AssertionError(f"a curl option this test does not read ({word}): {command}")
        else:
            url = word
    return method or ("POST" if body is not None else "GET"), url, headers, body, saves


def examples() -> list[Example]:
    """Every curl command that calls the app (localhost:7071, or a link the app gave), page by page."""
    found: list[Example] = []
    for page in PAGES:
        last: Example | None = None
        for language, line, text in _blocks(page.read_text(encoding="utf-8")):
            if language == "json" and last is not None and last.documented is None:
                last.documented = json.loads(text)
                continue
            if language != "bash":
                continue
            last = None
            joined = text.replace("\\\n", " ")
            for offset, written in enumerate(joined.splitlines()):
                command = " ".join(written.split())
                if not command.startswith("curl ") or not (DOCUMENTED_APP in command or LINK_PLACEHOLDER in command):
                    continue
                method, url, headers, body, saves = parse_curl(command)
                last = Example(page.relative_to(ROOT).as_posix(), line + offset, command, method, url, headers,
                               body, saves)
                found.append(last)
    return found


def route_of(example: Example) -> tuple[str, str]:
    path = example.url.removeprefix(f"{DOCUMENTED_APP}/api/")
    for placeholder in ID_PLACEHOLDERS:
        path = path.replace(placeholder, "{id}")
    return example.method, path


def test_the_docs_hold_curl_examples_for_every_route_and_the_download_link() -> None:
    found = examples()
    routes = {route_of(e) for e in found if LINK_PLACEHOLDER not in e.url}
    assert routes == set(ANSWERS), "a curl example calls a route this test does not know, or a route lost its example"
    assert any(LINK_PLACEHOLDER in e.url for e in found)
    assert {e.page for e in found} == {p.relative_to(ROOT).as_posix() for p in PAGES}


# --- the development host, as a process --------------------------------------------------------------


@dataclass
class DevHost:
    base: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit status once it has ended and its output is read."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=10)
        return status


DOCUMENTED_INPUT_BLOBS = ("q3/north.csv", "q3/south.csv")


def dev_host_env(azurite: Azurite, fake: FakeAzureOpenAI, settings: Path) -> dict[str, str]:
    """The dev host's environment: this session's Azurite and fake, storage names of its own."""
    suffix = uuid.uuid4().hex[:10]
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python"}}))
    env = {name: value for name, value in os.environ.items() if not name.startswith(_APP_SETTINGS_PREFIXES)}
    env.update({
        "LOCAL_SETTINGS": str(settings),
        "AZURE_OPENAI_ENDPOINT": fake.endpoint,
        "AZURE_OPENAI_API_KEY": API_KEY,
        "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARTIFACTS_QUEUE": f"dl-{suffix}",
        "ARTIFACTS_RUNS_QUEUE": f"runs-{suffix}",
        "ARTIFACTS_EVENTS_QUEUE": f"events-{suffix}",
        "ARTIFACTS_CONTAINER": f"artifacts-{suffix}",
        "ARTIFACTS_STATUS_CONTAINER": f"status-{suffix}",
        "ARTIFACTS_INPUT_CONTAINER": f"inputs-{suffix}",
        "ARTIFACTS_POLL_MIN_SECONDS": "1",
        "ARTIFACTS_POLL_MAX_SECONDS": "1",
        "ARTIFACTS_DOWNLOAD_ATTEMPTS": "1",
        # host.json's 30 s, shortened as an app setting the way the host reads it: a failed delivery is back in 1 s.
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "PYTHONUNBUFFERED": "1",
    })
    # The blobs api.md's input_blobs example names.
    inputs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        env["ARTIFACTS_INPUT_CONTAINER"])
    inputs.create_container()
    for name in DOCUMENTED_INPUT_BLOBS:
        inputs.upload_blob(name, b"month,sales\njul,140\n")
    return env


def start_dev_host(env: dict[str, str]) -> DevHost:
    """``python -m scripts.dev_host`` on a free port, once it listens."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "scripts.dev_host", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    host = DevHost(f"http://127.0.0.1:{port}", process)

    def read() -> None:
        assert process.stdout is not None
        host.lines.extend(line.rstrip("\n") for line in process.stdout)

    host.reader = threading.Thread(target=read, name="dev-host-output", daemon=True)
    host.reader.start()
    deadline = time.monotonic() + 60
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            host.stop()
            raise AssertionError(f"the dev host did not start: {host.output()}")
        time.sleep(0.1)  # polling for readiness, with a deadline
    return host


@pytest.fixture(scope="module")
def dev_host(azurite: Azurite, fake: FakeAzureOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    host = start_dev_host(dev_host_env(azurite, fake, tmp_path_factory.mktemp("dev-host") / "local.settings.json"))
    yield host
    host.stop()


def wait_for(what: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, f"not done within {timeout} s"
        time.sleep(0.5)  # the run moves on through queue delays


def finished(http: httpx.Client, status_url: str) -> dict[str, Any]:
    """The run's status once its completion event is sent."""
    def done() -> dict[str, Any] | None:
        document: dict[str, Any] = http.get(status_url).json()
        return document if document.get("event_id") else None
    result: dict[str, Any] = wait_for(done)
    return result


def test_every_documented_curl_example_answers_as_documented(dev_host: DevHost) -> None:
    """Each example as the docs write it, in their order: an id or a link in it is the one the
    example before it made (``resp_68c1…``, ``<response_id>``, ``<url of an artifact>``)."""
    response_id, running = "", False
    status: dict[str, Any] = {}
    with httpx.Client(timeout=30) as http:
        for example in examples():
            url = example.url.replace(DOCUMENTED_APP, dev_host.base)
            for placeholder in ID_PLACEHOLDERS:
                url = url.replace(placeholder, response_id)
            if LINK_PLACEHOLDER in url:
                artifact = next(a for a in status["artifacts"] if a["state"] == "persisted")
                download = http.get(artifact["url"])
                assert download.status_code == 200, example
                assert download.headers["content-disposition"].startswith("attachment;"), example  # -OJ's name
                assert hashlib.sha256(download.content).hexdigest() == artifact["sha256"], example
                continue
            answer = http.request(example.method, url, headers=example.headers,
                                  content=example.body.encode() if example.body is not None else None)
            expected_status, fields = ANSWERS[route_of(example)]
            assert answer.status_code == expected_status, f"{example}\n-> {answer.status_code} {answer.text}"
            assert answer.headers["content-type"].startswith("application/json"), example
            body = answer.json()
            assert fields <= set(body), f"{example}: missing {fields - set(body)}"
            check_documented(example, body)
            if route_of(example) == ("POST", "responses"):
                response_id, running = body["response_id"], "fake:in-progress" in (example.body or "")
                assert body["status_url"] == f"{dev_host.base}/api/responses/{response_id}"
                if not running:
                    status = finished(http, body["status_url"])
                    assert status["complete"] is True and status["counts"]["failed"] == 0, status
            elif route_of(example) == ("POST", "responses/{id}/cancel"):
                assert body["cancel_requested"] is running, example
                if running:
                    ended = finished(http, f"{dev_host.base}/api/responses/{response_id}")
                    assert ended["status"] == "cancelled"


def check_documented(example: Example, body: dict[str, Any]) -> None:
    """The answer has every field of the JSON the docs show after the example, and the same status
    and phase; a persisted artifact has every field of the documented one."""
    documented = example.documented
    if not isinstance(documented, dict):
        return
    assert set(documented) <= set(body), f"{example}: documented but missing: {set(documented) - set(body)}"
    for name in ("status", "phase"):
        if name in documented and name in body and route_of(example)[0] == "POST":
            assert body[name] == documented[name], f"{example}: {name} {body[name]!r}, documented {documented[name]!r}"
    shown = [a for a in documented.get("artifacts", []) if a.get("state") == "persisted" and "url" in a]
    persisted = [a for a in body.get("artifacts", []) if a.get("state") == "persisted"]
    if shown and persisted:
        assert set(shown[0]) <= set(persisted[0]), f"{example}: artifact fields {set(shown[0]) - set(persisted[0])}"


def test_it_says_plainly_that_it_is_a_stand_in_and_lists_the_functions(dev_host: DevHost) -> None:
    output = dev_host.output()
    assert "NOT the Functions host" in output
    for route in ("[POST] http://localhost:", "/api/responses/{response_id}/cancel", "monitor_queues: timer"):
        assert route in output


def test_routes_come_from_the_metadata_and_every_other_answer_is_json(dev_host: DevHost) -> None:
    with httpx.Client(base_url=dev_host.base, timeout=30) as http:
        # No key is asked for, as under func start; one sent (right or wrong) changes nothing.
        known = http.get("/api/responses/resp_unknown", headers={"x-functions-key": "wrong"})
        assert (known.status_code, known.json()["error"]["code"]) == (404, "not_found")  # the app's own answer
        assert http.post("/api/RESPONSES", content=b"{}").status_code == 400  # routes match as the host's do
        for method, path in (("GET", "/api/nothing"), ("DELETE", "/api/responses/x"), ("GET", "/responses"),
                             ("PUT", "/api/responses")):
            answer = http.request(method, path)
            assert answer.status_code == 404, (method, path)
            assert answer.json()["error"]["code"] == "not_found"


def test_a_file_that_keeps_failing_goes_through_the_poison_queue(dev_host: DevHost) -> None:
    """maxDequeueCount deliveries (visibilityTimeout shortened as an app setting), then the poison
    queue, whose trigger records the failure, and the run completes with its event."""
    with httpx.Client(timeout=30) as http:
        started = http.post(f"{dev_host.base}/api/responses", json={"input": "fake:failing-file:500 a forecast"})
        assert started.status_code == 202, started.text
        status = finished(http, started.json()["status_url"])
    failed = [a for a in status["artifacts"] if a["state"] == "failed"]
    assert [(a["filename"], a["code"]) for a in failed] == [("forecast.xlsx", "retries_exhausted")]
    assert failed[0]["attempts"] == QueueSettings.from_host_json().max_dequeue_count
    assert status["counts"] == {"pending": 0, "persisted": 3, "failed": 1}


def test_make_demo_goes_through_the_running_app(dev_host: DevHost) -> None:
    demo = subprocess.run([sys.executable, "-m", "scripts.demo", "--app", dev_host.base], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"the app answers at {dev_host.base}" in demo.stdout
    assert demo.stdout.count("through its download link") == 3 and "MISMATCH" not in demo.stdout
    assert "completion event evt_" in demo.stdout


def test_ctrl_c_ends_it_quietly_with_exit_status_0(
    azurite: Azurite, fake: FakeAzureOpenAI, tmp_path: Path
) -> None:
    host = start_dev_host(dev_host_env(azurite, fake, tmp_path / "local.settings.json"))
    with httpx.Client(timeout=30) as http:  # something running when Ctrl-C comes
        assert http.post(f"{host.base}/api/responses", json={"input": "fake:in-progress:2"}).status_code == 202
    assert host.stop() == 0
    output = host.output()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert output.rstrip().endswith("==> stopped")


# --- its parts, in this process ------------------------------------------------------------------------


def test_ncrontab_schedules_as_the_timer_trigger_reads_them() -> None:
    moment = datetime(2026, 3, 14, 9, 26, 53, 500, tzinfo=UTC)
    assert Schedule("0 */1 * * * *").next_after(moment) == datetime(2026, 3, 14, 9, 27, 0, tzinfo=UTC)
    assert Schedule("*/10 * * * * *").next_after(moment) == datetime(2026, 3, 14, 9, 27, 0, tzinfo=UTC)
    assert Schedule("30 0 12 * * *").next_after(moment) == datetime(2026, 3, 14, 12, 0, 30, tzinfo=UTC)
    assert Schedule("0 0 9 * * 1-5").next_after(moment) == datetime(2026, 3, 16, 9, 0, 0, tzinfo=UTC)  # a Monday
    assert Schedule("0 15,45 * * * *").next_after(moment) == datetime(2026, 3, 14, 9, 45, 0, tzinfo=UTC)
    for bad in ("* * * * *", "0 61 * * * *", "0 */0 * * * *", "0 0 0 31 2 *", "@hourly"):
        with pytest.raises(ValueError):
            Schedule(bad).next_after(moment)


def test_the_timer_runs_its_function_on_schedule_through_the_invoker() -> None:
    calls: list[tuple[str, bool]] = []

    class Invoker:  # records what the seam would hand the worker
        def timer(self, function: str, *, past_due: bool) -> bool:
            calls.append((function, past_due))
            return True

    binding = Binding("timer", "timerTrigger", "IN", {"schedule": "* * * * * *"})
    timer = TimerListener("tick", binding.raw, Invoker()).start()  # type: ignore[arg-type]
    try:
        wait_for(lambda: len(calls) >= 2, timeout=5)
    finally:
        timer.stop()
    assert calls[0] == ("tick", False)


def test_http_routes_match_the_templates_and_methods_of_the_metadata() -> None:
    def http(route: str, methods: list[str]) -> Binding:
        return Binding("req", "httpTrigger", "IN", {"route": route, "methods": methods})

    functions = {
        "status": FunctionInfo("status", [http("responses/{response_id}", ["GET"])]),
        "cancel": FunctionInfo("cancel", [http("responses/{response_id}/cancel", ["POST"])]),
    }
    routes = HttpRoutes(functions, FunctionInvoker(worker()), "api")
    assert routes.match("GET", "responses/resp_1") == ("status", {"response_id": "resp_1"})
    assert routes.match("post", "Responses/a%2Fb/CANCEL") == ("cancel", {"response_id": "a/b"})
    for method, route in (("POST", "responses/resp_1"), ("GET", "responses"), ("GET", "responses/a/b/c")):
        with pytest.raises(LookupError):
            routes.match(method, route)


def test_queue_settings_are_host_json_with_the_hosts_app_setting_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = QueueSettings.from_host()
    assert plain == QueueSettings.from_host_json()
    assert (plain.batch_size, plain.new_batch_threshold, plain.visibility_timeout, plain.max_dequeue_count) == (
        16, 8, 30, 5)
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__visibilityTimeout", "00:00:03")
    monkeypatch.setenv("AZUREFUNCTIONSJOBHOST__EXTENSIONS__QUEUES__MAXDEQUEUECOUNT", "2")
    overridden = QueueSettings.from_host()
    assert (overridden.visibility_timeout, overridden.max_dequeue_count) == (3, 2)


def test_functions_are_invoked_in_one_place() -> None:
    """The seam: nothing else in the dev host invokes a function, and the seam hands every
    invocation to the worker library."""
    source = (ROOT / "scripts" / "dev_host.py").read_text(encoding="utf-8")
    seam = source[source.index("class FunctionInvoker"):source.index("class HttpRoutes")]
    for verb in ("invoke_http(", "invoke_queue(", "invoke_timer("):
        assert source.count(verb) == seam.count(verb) == 1, verb
    assert ".call(" not in source


class NoFunctions:
    def http(self, method: str, route: str, *, body: bytes, headers: dict[str, str], query_string: str) -> Any:
        raise LookupError(route)


def test_the_front_answers_json_to_every_method_and_to_a_malformed_request() -> None:
    """Every answer is JSON, also where the standard library would send its own HTML page."""
    with serve_http(NoFunctions(), function_key=None) as base:
        for method in ("HEAD", "OPTIONS", "TRACE", "CONNECT"):
            answer = httpx.request(method, f"{base}/api/responses", timeout=10)
            assert answer.status_code in (404, 501), method
            assert answer.headers["content-type"].startswith("application/json"), method
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"NOT A REQUEST LINE\r\n\r\n")
            reply = raw.makefile("rb").read()
        # An unparsable request line gets a bare answer (no status line to speak HTTP/1.x in): the body alone.
        body = reply.partition(b"\r\n\r\n")[2] if reply.startswith(b"HTTP/") else reply
        assert json.loads(body)["error"]["code"] == "bad_request"
