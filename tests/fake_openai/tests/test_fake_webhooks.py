"""The fake's webhooks: registration routes shaped as Azure documents them, and signed deliveries that
the openai SDK (and the standardwebhooks library) accept, or refuse when they are meant to be bad."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import standardwebhooks
from openai.types.webhooks import (
    DeletedWebhookEndpoint,
    ResponseCancelledWebhookEvent,
    ResponseCompletedWebhookEvent,
    ResponseFailedWebhookEvent,
    ResponseIncompleteWebhookEvent,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointWithSecret,
)

from tests.fake_openai import RESPONSE_EVENT_TYPES, FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.fake_openai.receiver import Received, WebhookReceiver
from tests.fake_openai.webhooks import ENDPOINT_OBJECT
from tests.support.flow import create_body

API_KEY = "webhook-test-key"
TOKEN = "webhook-test-token"
ROUTE = "/openai/v1/dashboard/webhook_endpoints"
EVENT_CLASSES: dict[str, type[Any]] = {
    "response.completed": ResponseCompletedWebhookEvent,
    "response.failed": ResponseFailedWebhookEvent,
    "response.cancelled": ResponseCancelledWebhookEvent,
    "response.incomplete": ResponseIncompleteWebhookEvent,
}


@pytest.fixture
def server() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI(api_key=API_KEY, bearer_tokens=[TOKEN], webhook_backoff_seconds=0.01) as fake:
        yield fake


@pytest.fixture
def http(server: FakeAzureOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint, headers={"api-key": API_KEY}) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    got = WebhookReceiver()
    yield got
    got.close()


def start_run(server: FakeAzureOpenAI, scenario: Scenario, prompt: str = "make files") -> str:
    server.register(prompt, scenario)
    response_id: str = server.create(create_body(prompt))["id"]
    return response_id


def running(**changes: Any) -> Scenario:
    scenario = Scenario([FakeContainer([FakeFile(b"a,b\n", "/mnt/data/t.csv")])], polls_before_done=2)
    for name, value in changes.items():
        setattr(scenario, name, value)
    return scenario


def as_openai(raw: dict[str, Any]) -> dict[str, Any]:
    """Azure's documented ``object`` of an endpoint in OpenAI's spelling, the SDK's only difference."""
    assert raw["object"] == ENDPOINT_OBJECT
    return {**raw, "object": "webhook_endpoint"}


def unwrap(secret: str, got: Received) -> Any:
    return openai.OpenAI(api_key="x", webhook_secret=secret).webhooks.unwrap(got.body, got.headers)


def create_endpoint(http: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "app", "url": url, "event_types": list(RESPONSE_EVENT_TYPES), **extra}
    answer = http.post(ROUTE, json=body)
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


# -- registration routes -----------------------------------------------------------------------


def test_create_answers_the_endpoint_with_its_secret_once(http: httpx.Client, receiver: WebhookReceiver) -> None:
    created = create_endpoint(http, receiver.url, event_types=["response.completed", "response.failed"])
    endpoint = WebhookEndpointWithSecret.model_validate(as_openai(created))

    assert endpoint.name == "app" and endpoint.url == receiver.url
    assert endpoint.event_types == ["response.completed", "response.failed"]
    assert endpoint.signing_secret.startswith("whsec_")
    assert len(base64.b64decode(endpoint.signing_secret.removeprefix("whsec_"))) == 32
    assert endpoint.signing_secret_hint == f"whsec_...{endpoint.signing_secret[-4:]}"

    listed = http.get(ROUTE)
    one = http.get(f"{ROUTE}/{endpoint.id}")
    for answer in (listed, one):
        assert answer.status_code == 200, answer.text
        assert endpoint.signing_secret not in answer.text  # shown once, at creation
    page = WebhookEndpointList.model_validate({**listed.json(), "data": [as_openai(e) for e in listed.json()["data"]]})
    assert [e.id for e in page.data] == [endpoint.id] and page.has_more is False
    assert WebhookEndpoint.model_validate(as_openai(one.json())).signing_secret_hint == endpoint.signing_secret_hint


def test_delete_answers_the_deleted_object_and_forgets_the_endpoint(
    http: httpx.Client, receiver: WebhookReceiver
) -> None:
    endpoint_id = create_endpoint(http, receiver.url)["id"]

    deleted = http.delete(f"{ROUTE}/{endpoint_id}")

    assert deleted.status_code == 200, deleted.text
    assert DeletedWebhookEndpoint.model_validate(deleted.json()).deleted is True
    assert http.get(ROUTE).json()["data"] == []
    again = http.delete(f"{ROUTE}/{endpoint_id}")
    assert again.status_code == 404
    assert again.json()["error"]["message"] == f"Webhook endpoint with id '{endpoint_id}' not found."
    assert http.get(f"{ROUTE}/{endpoint_id}").status_code == 404


def test_update_changes_the_url_and_types_but_never_the_secret(http: httpx.Client, receiver: WebhookReceiver) -> None:
    created = create_endpoint(http, receiver.url)
    new_url = "https://example.invalid/api/webhooks/azure-openai"

    updated = http.post(f"{ROUTE}/{created['id']}", json={"url": new_url, "event_types": ["response.failed"]})

    assert updated.status_code == 200, updated.text
    assert updated.json()["url"] == new_url and updated.json()["event_types"] == ["response.failed"]
    assert updated.json()["signing_secret_hint"] == created["signing_secret_hint"]
    assert "signing_secret" not in updated.json()
    assert http.post(f"{ROUTE}/we_nope", json={"name": "x"}).status_code == 404


def test_list_pages_newest_first(http: httpx.Client, receiver: WebhookReceiver) -> None:
    ids = [create_endpoint(http, receiver.url, name=f"app-{n}")["id"] for n in range(5)]

    first = http.get(ROUTE, params={"limit": 2}).json()
    rest = http.get(ROUTE, params={"limit": 100, "after": first["last_id"]}).json()

    assert [e["id"] for e in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    assert [e["id"] for e in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    assert http.get(ROUTE, params={"limit": 101}).status_code == 400
    assert http.get(ROUTE, params={"after": "we_unknown"}).status_code == 400


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"name": "n" * 257}, "name"),
        ({"url": "http://example.com/hook"}, "url"),  # plain http leaves the machine
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "/api/webhooks"}, "url"),
        ({"url": 7}, "url"),
        ({"url": "https://example.com:notaport/hook"}, "url"),
        ({"event_types": []}, "event_types"),
        ({"event_types": "response.completed"}, "event_types"),
        ({"event_types": ["response.completed", "response.done"]}, "event_types"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_create_refuses_a_bad_body(http: httpx.Client, change: dict[str, Any], param: str) -> None:
    body = {"name": "app", "url": "https://example.com/hook", "event_types": ["response.completed"], **change}
    body = {k: v for k, v in body.items() if v is not None}

    answer = http.post(ROUTE, json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["param"] == param
    assert http.get(ROUTE).json()["data"] == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_http_is_allowed_to_loopback(http: httpx.Client, host: str) -> None:
    assert create_endpoint(http, f"http://{host}:7071/api/webhooks/azure-openai")["url"].startswith("http://")


def test_create_body_must_be_a_json_object(http: httpx.Client) -> None:
    assert http.post(ROUTE, content=b"not json", headers={"content-type": "application/json"}).status_code == 400
    assert http.post(ROUTE, json=["a"]).status_code == 400


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"api-key": "wrong"}, 401),
        ({"authorization": f"Bearer {API_KEY}"}, 401),
        ({"authorization": f"Bearer {TOKEN}"}, 200),
    ],
)
def test_registration_routes_want_the_same_auth(server: FakeAzureOpenAI, headers: dict[str, str], status: int) -> None:
    assert httpx.get(server.endpoint + ROUTE, headers=headers).status_code == status


# -- deliveries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed", "incomplete"])
def test_a_run_that_ends_by_its_polls_sends_one_signed_event(
    server: FakeAzureOpenAI, http: httpx.Client, receiver: WebhookReceiver, status: str
) -> None:
    endpoint_id, secret = server.register_webhook(receiver.url)
    response_id = start_run(server, running(status=status))

    for _ in range(3):  # queued, in_progress, then the final object
        final = http.get(f"/openai/v1/responses/{response_id}").json()
    server.wait_for_webhooks_settled()

    [got] = receiver.received
    event = unwrap(secret, got)
    assert isinstance(event, EVENT_CLASSES[f"response.{status}"])
    EVENT_CLASSES[f"response.{status}"].model_validate(json.loads(got.body))
    assert event.data.id == response_id and event.object == "event" and event.id.startswith("evt_")
    assert final["status"] == status
    assert event.created_at >= final["created_at"]
    assert got.headers["webhook-id"].startswith("wh_")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("OpenAI/1.0")
    assert got.path == "/api/webhooks/azure-openai?code=k"  # the registered URL, query and all
    standardwebhooks.Webhook(secret).verify(got.body, got.headers)  # the app's verifier agrees
    [delivery] = server.webhook_deliveries()
    assert (delivery.endpoint_id, delivery.response_id, delivery.event_type) == (
        endpoint_id,
        response_id,
        f"response.{status}",
    )
    assert delivery.ok and delivery.status == 200 and delivery.error is None and delivery.attempt == 1
    assert delivery.webhook_id == got.headers["webhook-id"]


def test_finish_and_cancel_send_their_events(
    server: FakeAzureOpenAI, http: httpx.Client, receiver: WebhookReceiver
) -> None:
    _, secret = server.register_webhook(receiver.url)
    finished = start_run(server, running(), "finish me")
    cancelled = start_run(server, running(), "cancel me")

    server.finish(finished)
    assert http.post(f"/openai/v1/responses/{cancelled}/cancel").status_code == 200
    receiver.wait(2)
    server.finish(finished)  # already ended: nothing more
    for _ in range(3):
        http.get(f"/openai/v1/responses/{finished}")
    server.wait_for_webhooks_settled()

    events = {unwrap(secret, got).data.id: unwrap(secret, got).type for got in receiver.received}
    assert events == {finished: "response.completed", cancelled: "response.cancelled"}


def test_a_background_run_that_ends_at_once_still_sends_its_event(
    server: FakeAzureOpenAI, receiver: WebhookReceiver
) -> None:
    _, secret = server.register_webhook(receiver.url)

    response_id = start_run(server, running(polls_before_done=0))

    [delivery] = server.wait_for_deliveries(1, response_id=response_id)
    assert delivery.ok
    assert unwrap(secret, receiver.wait(1)[0]).data.id == response_id


def test_a_synchronous_run_sends_nothing(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    server.register_webhook(receiver.url)
    server.register("sync", running())

    server.create({**create_body("sync"), "background": False})
    server.wait_for_webhooks_settled()

    assert server.webhook_deliveries() == [] and receiver.received == []


def test_only_subscribed_endpoints_get_an_event_each_with_its_own_secret(
    server: FakeAzureOpenAI, receiver: WebhookReceiver
) -> None:
    _, completed_secret = server.register_webhook(receiver.url + "&who=completed", ["response.completed"])
    _, all_secret = server.register_webhook(receiver.url + "&who=all")
    server.register_webhook(receiver.url + "&who=failed", ["response.failed"])

    response_id = start_run(server, running())
    server.finish(response_id)
    server.wait_for_webhooks_settled()

    by_who = {got.path.rsplit("=", 1)[1]: got for got in receiver.received}
    assert sorted(by_who) == ["all", "completed"]
    assert unwrap(completed_secret, by_who["completed"]).data.id == response_id
    assert unwrap(all_secret, by_who["all"]).data.id == response_id
    with pytest.raises(openai.InvalidWebhookSignatureError):
        unwrap(all_secret, by_who["completed"])
    assert by_who["all"].headers["webhook-id"] != by_who["completed"].headers["webhook-id"]


def test_a_run_ends_by_itself_after_its_seconds(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    _, secret = server.register_webhook(receiver.url)

    response_id = start_run(server, running(polls_before_done=0, seconds_before_done=0.05))
    [delivery] = server.wait_for_deliveries(1, response_id=response_id)

    assert delivery.ok and server.polls(response_id) == 0  # nobody polled
    response = server.response(response_id)
    assert response is not None and response["status"] == "completed"
    assert unwrap(secret, receiver.wait(1)[0]).type == "response.completed"


def test_polls_can_end_a_timed_run_first(
    server: FakeAzureOpenAI, http: httpx.Client, receiver: WebhookReceiver
) -> None:
    server.register_webhook(receiver.url)
    response_id = start_run(server, running(polls_before_done=1, seconds_before_done=3600))

    statuses = [http.get(f"/openai/v1/responses/{response_id}").json()["status"] for _ in range(2)]

    assert statuses == ["queued", "completed"]
    assert [d.response_id for d in server.wait_for_deliveries(1)] == [response_id]


def test_a_timed_run_without_polls_keeps_running_until_its_time(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    response_id = start_run(server, running(polls_before_done=0, seconds_before_done=3600))

    statuses = {http.get(f"/openai/v1/responses/{response_id}").json()["status"] for _ in range(5)}

    assert statuses == {"queued", "in_progress"}


def test_stop_stops_the_run_clocks() -> None:
    server = FakeAzureOpenAI().start()
    response_id = start_run(server, running(polls_before_done=0, seconds_before_done=3600))
    clock = f"fake-run-clock-{response_id}"
    assert any(t.name == clock for t in threading.enumerate())

    server.stop()

    assert not any(t.name == clock for t in threading.enumerate())


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_register_refuses_impossible_seconds(server: FakeAzureOpenAI, seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds_before_done"):
        server.register("p", running(seconds_before_done=seconds))


def test_a_failed_delivery_is_retried_under_the_same_id(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    _, secret = server.register_webhook(receiver.url)
    receiver.statuses = [500, 503]

    response_id = start_run(server, running(polls_before_done=0))
    server.wait_for_webhooks_settled()

    attempts = server.webhook_deliveries()
    assert [(d.attempt, d.status) for d in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert [d.error for d in attempts] == ["answered 500", "answered 503", None]
    assert len({d.webhook_id for d in attempts}) == 1
    assert [unwrap(secret, got).data.id for got in receiver.received] == [response_id] * 3


def test_a_retry_goes_to_the_url_registered_now(receiver: WebhookReceiver) -> None:
    """The app moved (a restarted instance answers elsewhere) and its registration was updated
    between two attempts: the retry reaches it there."""
    gone = WebhookReceiver()
    old_url = gone.url
    gone.close()  # nothing listens at the first URL any more
    with FakeAzureOpenAI(webhook_retries=3, webhook_backoff_seconds=1.0) as server:
        endpoint_id, _ = server.register_webhook(old_url)
        start_run(server, running(polls_before_done=0))
        server.wait_for_deliveries(1)
        httpx.post(f"{server.endpoint}/openai/v1/dashboard/webhook_endpoints/{endpoint_id}",
                   json={"url": receiver.url}, headers={"api-key": server.api_key})
        server.wait_for_webhooks_settled()

        attempts = server.webhook_deliveries()
        assert attempts[0].url == old_url and attempts[0].status is None
        assert attempts[-1].url == receiver.url and attempts[-1].status == 200
        assert len({d.webhook_id for d in attempts}) == 1


def test_retries_are_bounded(receiver: WebhookReceiver) -> None:
    with FakeAzureOpenAI(webhook_retries=2, webhook_backoff_seconds=0.01) as server:
        server.register_webhook(receiver.url)
        receiver.statuses = [500] * 10
        start_run(server, running(polls_before_done=0))
        server.wait_for_webhooks_settled()

        assert [(d.attempt, d.status) for d in server.webhook_deliveries()] == [(1, 500), (2, 500), (3, 500)]


def test_a_redirect_is_a_failed_delivery(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    server.register_webhook(receiver.url)
    receiver.statuses = [307]

    start_run(server, running(polls_before_done=0))
    server.wait_for_webhooks_settled()

    assert [d.status for d in server.webhook_deliveries()] == [307, 200]
    assert [got.path for got in receiver.received] == ["/api/webhooks/azure-openai?code=k"] * 2


def test_an_unreachable_receiver_is_recorded_not_raised() -> None:
    receiver = WebhookReceiver()
    url = receiver.url
    receiver.close()  # nothing listens there now
    with FakeAzureOpenAI(webhook_retries=1, webhook_backoff_seconds=0.01) as server:
        server.register_webhook(url)
        start_run(server, running(polls_before_done=0))
        server.wait_for_webhooks_settled()

        attempts = server.webhook_deliveries()
        assert [(d.attempt, d.status) for d in attempts] == [(1, None), (2, None)]
        assert all(d.error and "refused" in d.error.lower() for d in attempts)


def test_ending_a_run_from_inside_the_receiver_does_not_deadlock(server: FakeAzureOpenAI) -> None:
    """The receiver serves one request at a time and, while handling the first event, cancels
    another run: that run's event can only arrive once the first request is answered."""
    second = start_run(server, running(), "second")
    cancels: list[int] = []

    def cancel_second(got: Received) -> None:
        if not cancels:
            cancels.append(
                httpx.post(
                    f"{server.endpoint}/openai/v1/responses/{second}/cancel", headers={"api-key": API_KEY}
                ).status_code
            )

    receiver = WebhookReceiver(threaded=False, on_receive=cancel_second)
    try:
        _, secret = server.register_webhook(receiver.url)
        first = start_run(server, running(), "first")
        server.finish(first)

        received = receiver.wait(2)
        assert cancels == [200]
        assert [unwrap(secret, got).data.id for got in received] == [first, second]
    finally:
        receiver.close()


def test_clear_webhooks_forgets_endpoints_and_records(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    server.register_webhook(receiver.url)
    start_run(server, running(polls_before_done=0))
    server.wait_for_webhooks_settled()
    assert server.webhook_endpoints() and server.webhook_deliveries()

    server.clear_webhooks()
    start_run(server, running(polls_before_done=0), "after the clear")
    server.wait_for_webhooks_settled()

    assert server.webhook_endpoints() == [] and server.webhook_deliveries() == []
    assert len(receiver.received) == 1


def test_wait_for_deliveries_times_out(server: FakeAzureOpenAI) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        server.wait_for_deliveries(1, timeout=0.01)


def test_the_registration_helper_validates_like_the_route(server: FakeAzureOpenAI) -> None:
    with pytest.raises(Exception, match="https"):
        server.register_webhook("http://example.com/hook")
    with pytest.raises(Exception, match="Invalid event type"):
        server.register_webhook("https://example.com/hook", ["response.done"])
    assert server.webhook_endpoints() == []


# -- hand-made deliveries --------------------------------------------------------------------


def good_or_bad(server: FakeAzureOpenAI, receiver: WebhookReceiver, secret: str, **spoil: Any) -> Received:
    before = len(receiver.received)
    event_type = spoil.pop("event_type", "response.completed")
    status = server.send_webhook(receiver.url, event_type, "resp_1", secret=secret, **spoil)
    assert status == 200
    return receiver.wait(before + 1)[before]


def test_a_hand_made_delivery_is_good_by_default(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    _, secret = server.register_webhook(receiver.url)

    got = good_or_bad(server, receiver, secret)

    event = unwrap(secret, got)
    assert isinstance(event, ResponseCompletedWebhookEvent) and event.data.id == "resp_1"
    standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    [delivery] = server.webhook_deliveries()
    assert delivery.endpoint_id is None and delivery.webhook_id == got.headers["webhook-id"] and delivery.ok


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param({"signature": "v1," + base64.b64encode(b"x" * 32).decode()}, id="bad-signature"),
        pytest.param({"signature": "not-even-versioned"}, id="malformed-signature"),
        pytest.param({"secret": "whsec_" + base64.b64encode(b"another key" * 3).decode()}, id="wrong-secret"),
        pytest.param({"timestamp": int(time.time()) - 600}, id="stale"),
        pytest.param({"timestamp": int(time.time()) + 600}, id="from-the-future"),
    ],
)
def test_bad_deliveries_fail_the_sdk_signature_check(
    server: FakeAzureOpenAI, receiver: WebhookReceiver, spoil: dict[str, Any]
) -> None:
    _, secret = server.register_webhook(receiver.url)

    got = good_or_bad(server, receiver, spoil.pop("secret", secret), **spoil)

    with pytest.raises(openai.InvalidWebhookSignatureError):
        unwrap(secret, got)


def test_a_duplicate_id_is_sent_twice_and_verifies_twice(server: FakeAzureOpenAI, receiver: WebhookReceiver) -> None:
    _, secret = server.register_webhook(receiver.url)

    first = good_or_bad(server, receiver, secret, webhook_id="wh_same")
    second = good_or_bad(server, receiver, secret, webhook_id="wh_same")

    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "wh_same"
    assert unwrap(secret, first).data.id == unwrap(secret, second).data.id


def test_a_signed_non_json_body_passes_the_signature_and_fails_parsing(
    server: FakeAzureOpenAI, receiver: WebhookReceiver
) -> None:
    _, secret = server.register_webhook(receiver.url)

    got = good_or_bad(server, receiver, secret, body=b"not json {")

    openai.OpenAI(api_key="x").webhooks.verify_signature(got.body, got.headers, secret=secret)
    with pytest.raises(ValueError):  # json.JSONDecodeError
        unwrap(secret, got)


def test_an_unknown_event_type_verifies_but_is_no_response_event(
    server: FakeAzureOpenAI, receiver: WebhookReceiver
) -> None:
    _, secret = server.register_webhook(receiver.url)

    got = good_or_bad(server, receiver, secret, event_type="batch.completed")

    event = unwrap(secret, got)
    assert event.type == "batch.completed"
    assert not isinstance(event, tuple(EVENT_CLASSES.values()))


def test_send_webhook_raises_when_nothing_listens(server: FakeAzureOpenAI) -> None:
    receiver = WebhookReceiver()
    url = receiver.url
    receiver.close()

    with pytest.raises(OSError):
        server.send_webhook(url, "response.completed", "resp_1", secret="whsec_" + base64.b64encode(b"k" * 32).decode())
    [delivery] = server.webhook_deliveries()
    assert delivery.status is None and delivery.error


# -- from another process ---------------------------------------------------------------------


def test_seeding_routes_for_benchmarks(server: FakeAzureOpenAI, http: httpx.Client, receiver: WebhookReceiver) -> None:
    created = create_endpoint(http, receiver.url)  # the real route returns the secret: no seeding needed
    seeded = http.post(
        "/_fake/scenarios",
        json={"prompt": "bench", "files": [{"path": "/mnt/data/x.bin", "size": 10}], "seconds_before_done": 0},
    )
    assert seeded.status_code == 200, seeded.text

    response_id = http.post("/openai/v1/responses", json=create_body("bench")).json()["id"]
    server.wait_for_deliveries(1, response_id=response_id)

    records = http.get("/_fake/webhooks/deliveries").json()["data"]
    assert [(r["endpoint_id"], r["response_id"], r["ok"]) for r in records] == [(created["id"], response_id, True)]
    assert created["signing_secret"] not in json.dumps(records)
    bad = http.post("/_fake/scenarios", json={"prompt": "b", "files": [], "seconds_before_done": -1})
    assert bad.status_code == 400
