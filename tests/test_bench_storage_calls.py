"""The storage-calls benchmark's core on one run of one file: every request is placed, the counts
agree with what the lane saw, and the report renders. Counts the benchmark prints; no timing here."""

from __future__ import annotations

from bench.latency_proxy import parse_head
from bench.storage_calls import Call, Shape, classify, consistency_notes, measure, render
from tests.fake_openai import FakeAzureOpenAI
from tests.support.azurite import Azurite


def test_one_run_of_one_file_is_counted_whole(azurite: Azurite, fake: FakeAzureOpenAI) -> None:
    shape = Shape("1 file", files=1, runs=1)
    measured = measure([(shape, fake)], azurite, drain=False)  # the 60 s safety net is the benchmark's to wait for

    assert measured.unclassified == [], measured.unclassified
    assert consistency_notes(measured) == []
    (lane,) = measured.lanes
    assert lane.runs == 1 and list(lane.report["events"].values()) == [1]

    calls = lane.run_calls()
    everything = sum(calls.values())
    by_caller = {caller: sum(n for c, n in calls.items() if c.caller == caller) for caller in ("app", "host")}
    assert by_caller["app"] > 0 and by_caller["host"] > 0
    assert by_caller["app"] + by_caller["host"] == everything
    # Every request the proxy placed in the lane is a run's, a process's once, or an idle poll.
    found, backing_off, idle = lane.host_polls()
    assert everything + sum(lane.once_per_process().values()) + idle == sum(lane.calls.values())
    assert found >= 3 and backing_off >= 0 and idle > 0  # found: the first look, the file, the completing step

    # The one file is written once, with one Put Blob; the run's one event is one Put Message.
    assert calls[Call("app", "blob", "Put Blob", "artifact blob")] == 1
    assert calls[Call("app", "queue", "Put Message", "event queue")] == 1
    assert calls[Call("app", "queue", "Put Message", "download queue")] == 1
    assert calls[Call("app", "blob", "Put Blob", "run record")] >= 2  # advanced, then completed
    invocations = lane.invocations()
    assert invocations["start_run"] == 1 and invocations["persist_artifact"] == 1
    assert invocations["watch_run"] >= 2  # the look that finds the run ended, the step that completes it
    assert lane.openai["create response"] == 1 and lane.openai["download file"] == 1
    assert lane.openai["get response"] >= 1

    report = render(measured, machine="test machine")
    assert "| 1 file | 1 |" in report and "| app | blob | Put Blob | artifact blob | 1 |" in report


def test_requests_are_placed_by_lane_and_operation() -> None:
    def head(request_line: str, *headers: str) -> bytes:
        return "\r\n".join((request_line, "Host: 127.0.0.1", *headers, "", "")).encode()

    lanes = {"sc0abcde"}
    put = parse_head(head("PUT /devstoreaccount1/sc0abcde-status/resp_1/_settled.1.log HTTP/1.1",
                          "x-ms-blob-type: AppendBlob"))
    assert classify("blob", put, lanes) == ("sc0abcde", Call("app", "blob", "Put Blob (append blob)", "settle log"))
    listing = parse_head(head("GET /devstoreaccount1/sc0abcde-art?restype=container&comp=list&prefix=resp_1/ HTTP/1.1"))
    assert classify("blob", listing, lanes) == ("sc0abcde",
                                                Call("app", "blob", "List Blobs", "artifact blobs (listing)"))
    poll = parse_head(head("GET /devstoreaccount1/sc0abcde-runs/messages?numofmessages=16 HTTP/1.1"))
    assert classify("host-queue", poll, lanes) == ("sc0abcde", Call("host", "queue", "Get Messages", "watcher queue"))
    done = parse_head(head("DELETE /devstoreaccount1/sc0abcde-files/messages/m1?popreceipt=x HTTP/1.1"))
    assert classify("host-queue", done, lanes) == ("sc0abcde",
                                                   Call("host", "queue", "Delete Message", "download queue"))
    other_lane = parse_head(head("GET /devstoreaccount1/sc9zzzzz-runs/messages HTTP/1.1"))
    assert classify("queue", other_lane, lanes) is None
    unknown = parse_head(head("PUT /devstoreaccount1/sc0abcde-art/a/b/c?comp=snapshot HTTP/1.1"))
    assert classify("blob", unknown, lanes) is None
