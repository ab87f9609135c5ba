"""The host stand-in invokes functions through the real worker library, not around it.

A small probe app (written to a temporary folder as ``function_app.py``) is loaded into the real
worker (tests/support/worker_invoker.py) in a fresh interpreter, as the host starts one, and
invoked with requests shaped as the host sends them. Each test here would fail under a stand-in
that calls the user function itself: the queue message's trigger metadata reaches
``QueueMessage`` only through the worker's converter; the worker runs a sync function on its own
pool and hands a ``func.Context`` to a function that asks for one; it refuses a return value from a
function without a ``$return`` binding; its ``HttpRequest`` carries the route parameters,
headers, query and body the host passed; a raised exception reaches the host only as the worker's
``RpcException`` (a 500 for HTTP); the timer's payload becomes ``TimerRequest.past_due``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.host import host_query
from tests.support.worker_invoker import ROOT, HostHttpRequest, HostQueueMessage, Worker, iso_8601

PROBE_APP = textwrap.dedent('''
    import json
    import threading

    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    SEEN = []


    def _moment(value):
        return value.isoformat() if value is not None else None


    @app.function_name("echo_message")
    @app.queue_trigger(arg_name="msg", queue_name="probe", connection="AzureWebJobsStorage")
    def echo_message(msg: func.QueueMessage, context: func.Context) -> None:
        SEEN.append({
            "id": msg.id, "body": msg.get_body().decode("utf-8"), "dequeue_count": msg.dequeue_count,
            "insertion_time": _moment(msg.insertion_time), "expiration_time": _moment(msg.expiration_time),
            "time_next_visible": _moment(msg.time_next_visible), "pop_receipt": msg.pop_receipt,
            "invocation_id": context.invocation_id, "thread": threading.current_thread().name,
        })


    @app.function_name("returns_a_value")
    @app.queue_trigger(arg_name="msg", queue_name="probe-returns", connection="AzureWebJobsStorage")
    def returns_a_value(msg: func.QueueMessage) -> None:
        return "done"  # no $return binding: the worker refuses it, whatever a direct call would do


    @app.function_name("echo_request")
    @app.route(route="items/{item_id}", methods=["GET", "POST"])
    def echo_request(req: func.HttpRequest) -> func.HttpResponse:
        seen = {"method": req.method, "url": req.url, "headers": dict(req.headers), "params": dict(req.params),
                "route_params": dict(req.route_params), "body": req.get_body().decode("utf-8")}
        return func.HttpResponse(json.dumps(seen), status_code=201, headers={"X-Probe": "yes"},
                                 mimetype="application/json")


    @app.function_name("raises")
    @app.route(route="boom", methods=["GET"])
    def raises(req: func.HttpRequest) -> func.HttpResponse:
        raise LookupError("nothing here")


    @app.function_name("tick")
    @app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=False)
    def tick(timer: func.TimerRequest) -> None:
        SEEN.append({"past_due": timer.past_due})
''')

INSERTED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
MESSAGE = HostQueueMessage(
    id="5e4f3c2b-1a09-4877-8a6b-5c4d3e2f1a0b", body='{"probe": true}', dequeue_count=3,
    insertion_time=INSERTED, expiration_time=INSERTED + timedelta(days=7),
    next_visible_time=INSERTED + timedelta(seconds=30, microseconds=250000), pop_receipt="AgAAAAMAAAAAAAAA",
)
REQUEST = HostHttpRequest(
    method="POST", url="http://localhost:7071/api/items/a%20b?tag=x&tag=y&empty=",
    headers={"Content-Type": "text/plain", "X-Trace": "t-1"}, query=host_query("tag=x&tag=y&empty="),
    route_params={"item_id": "a b"}, body=b"hello",
)


def probe(app_dir: str) -> None:
    """In the child: load the probe app into the worker, invoke each function, print what came back."""
    worker = Worker()
    worker.load(Path(app_dir))
    seen: list[dict[str, Any]] = sys.modules["function_app"].SEEN  # the probe app, as the worker imported it

    echoed = worker.invoke_queue("echo_message", MESSAGE)
    returned = worker.invoke_queue("returns_a_value", MESSAGE)
    http = worker.invoke_http("echo_request", REQUEST)
    response = http.http_response()
    boom = worker.invoke_http("raises", HostHttpRequest("GET", "http://localhost:7071/api/boom", {}, {}, {}))
    timer = worker.invoke_timer("tick", past_due=True)
    print(json.dumps({
        "functions": sorted(worker.functions),
        "echoed": {"ok": echoed.ok, "invocation_id": echoed.invocation_id, "seen": seen[0]},
        "returned": {"ok": returned.ok, "error": returned.error.message if returned.error else None},
        "http": {"ok": http.ok, "status": response.status_code, "headers": dict(response.headers),
                 "mimetype": response.mimetype, "body": json.loads(response.get_body())},
        "boom": {"status": boom.http_response().status_code,
                 "type": boom.error.exception_type if boom.error else None,
                 "stack": boom.error.stack_trace if boom.error else ""},
        "timer": {"ok": timer.ok, "seen": seen[1]},
    }))


@pytest.fixture(scope="module")
def worker_probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The probe app run in a fresh interpreter (the worker library's state is per process)."""
    app_dir = tmp_path_factory.mktemp("probe-app")
    (app_dir / "function_app.py").write_text(PROBE_APP, encoding="utf-8")
    (app_dir / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_THREADPOOL_THREAD_COUNT"}
    done = subprocess.run(
        [sys.executable, "-c", f"from tests.app.test_worker_path import probe; probe({str(app_dir)!r})"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_the_worker_indexed_the_probe_app(worker_probe: dict[str, Any]) -> None:
    assert worker_probe["functions"] == sorted(["echo_message", "returns_a_value", "echo_request", "raises", "tick"])


def test_queue_trigger_metadata_reaches_the_message_through_the_worker_converter(worker_probe: dict[str, Any]) -> None:
    echoed = worker_probe["echoed"]
    assert echoed["ok"]
    seen = echoed["seen"]
    assert seen["id"] == MESSAGE.id and seen["pop_receipt"] == MESSAGE.pop_receipt
    assert seen["body"] == MESSAGE.body
    assert seen["dequeue_count"] == 3  # DequeueCount, sent as JSON, decoded to an int
    assert seen["insertion_time"] == INSERTED.isoformat()
    assert seen["expiration_time"] == (INSERTED + timedelta(days=7)).isoformat()
    assert seen["time_next_visible"] == MESSAGE.next_visible_time.isoformat()  # type: ignore[union-attr]


def test_the_worker_runs_the_function_on_its_pool_with_its_context(worker_probe: dict[str, Any]) -> None:
    seen = worker_probe["echoed"]["seen"]
    assert seen["invocation_id"] == worker_probe["echoed"]["invocation_id"]  # func.Context, from the worker
    assert seen["thread"].startswith("ThreadPoolExecutor"), seen["thread"]  # not the caller's thread


def test_a_return_value_without_a_return_binding_fails_the_invocation(worker_probe: dict[str, Any]) -> None:
    returned = worker_probe["returned"]
    assert not returned["ok"]
    assert returned["error"].startswith("RuntimeError") and "$return" in returned["error"]


def test_the_http_request_and_response_are_the_workers(worker_probe: dict[str, Any]) -> None:
    http = worker_probe["http"]
    assert http["ok"] and http["status"] == 201
    assert http["mimetype"] == "application/json"
    assert {k.lower(): v for k, v in http["headers"].items()}["x-probe"] == "yes"
    seen = http["body"]
    assert seen["method"] == "POST" and seen["url"] == REQUEST.url
    assert seen["route_params"] == {"item_id": "a b"}
    assert seen["params"] == {"tag": "x,y"}  # a repeated name joined, an empty value left out (the host's query)
    assert seen["headers"]["content-type"] == "text/plain" and seen["headers"]["x-trace"] == "t-1"
    assert seen["body"] == "hello"


def test_an_exception_reaches_the_host_as_the_workers_rpc_exception(worker_probe: dict[str, Any]) -> None:
    boom = worker_probe["boom"]
    assert boom["status"] == 500  # the host's answer to a failed HTTP function
    assert boom["type"] == "LookupError" and "nothing here" in boom["stack"]


def test_the_timer_payload_becomes_the_timer_request(worker_probe: dict[str, Any]) -> None:
    assert worker_probe["timer"] == {"ok": True, "seen": {"past_due": True}}


def test_a_received_message_is_handed_over_as_the_host_decodes_it() -> None:
    """messageEncoding base64: the text of the decoded bytes, with U+FFFD for bytes that are not
    UTF-8 (as .NET decodes them); content that is not base64 at all is refused (the host moves it
    to the poison queue unrun)."""
    received = SimpleNamespace(
        id="m1", content=base64.b64encode(b'\xff{"a": 1}').decode(), dequeue_count=2, inserted_on=INSERTED,
        expires_on=INSERTED + timedelta(days=7), next_visible_on=INSERTED + timedelta(seconds=30), pop_receipt="r1",
    )
    message = HostQueueMessage.received(received, base64_encoded=True)
    assert message.body == '\ufffd{"a": 1}'
    assert (message.id, message.dequeue_count, message.pop_receipt) == ("m1", 2, "r1")
    assert message.insertion_time == INSERTED and message.next_visible_time == INSERTED + timedelta(seconds=30)
    assert HostQueueMessage.received(SimpleNamespace(**{**vars(received), "content": '{"a": 1}'}),
                                     base64_encoded=False).body == '{"a": 1}'
    with pytest.raises(ValueError):
        HostQueueMessage.received(SimpleNamespace(**{**vars(received), "content": "not base64!"}),
                                  base64_encoded=True)


def test_times_and_queries_are_written_as_the_host_writes_them() -> None:
    assert iso_8601(INSERTED + timedelta(microseconds=250000)) == "2026-03-04T05:06:07.25+00:00"
    assert iso_8601(INSERTED) == "2026-03-04T05:06:07+00:00"
    assert host_query("a=1&a=2&b=&c=3") == {"a": "1,2", "c": "3"}
