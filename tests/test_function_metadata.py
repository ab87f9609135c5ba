"""What the worker checks when it indexes the app: bindings, names, and type annotations.

The Python worker refuses to load a function whose binding annotation its converter does not
accept (``func.Out[list[str]]`` is refused on Python 3.11; ``func.Out[List[str]]`` is not), so
these checks run the same converters on the real function objects.
"""

from __future__ import annotations

import typing
from typing import Any

import azure.functions as func
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from azure.functions.queue import QueueMessageInConverter, QueueMessageOutConverter

from tests.conftest import AppEnv
from tests.support.host import FunctionsHost


def _bindings(host: FunctionsHost, name: str) -> dict[str, dict[str, Any]]:
    return {b.name: b.raw for b in host.functions[name].bindings}


def test_functions_and_bindings(host: FunctionsHost, app_env: AppEnv) -> None:
    assert set(host.functions) == {"start_run", "response_status", "persist_artifact"}

    start = _bindings(host, "start_run")
    assert start["req"]["type"] == "httpTrigger"
    assert start["req"]["route"] == "responses"
    assert start["req"]["methods"] == ["POST"]
    assert start["req"]["authLevel"] == "FUNCTION"
    assert start["messages"] == {
        "direction": "OUT", "type": "queue", "name": "messages",
        "queueName": app_env.queue, "connection": "AzureWebJobsStorage",
    }
    status = _bindings(host, "response_status")
    assert status["req"]["route"] == "responses/{response_id}"
    assert status["req"]["methods"] == ["GET"]
    assert status["req"]["authLevel"] == "FUNCTION"

    persist = _bindings(host, "persist_artifact")
    assert persist["msg"] == {
        "direction": "IN", "type": "queueTrigger", "name": "msg",
        "queueName": app_env.queue, "connection": "AzureWebJobsStorage",
    }


def test_annotations_pass_the_worker_converters(host: FunctionsHost) -> None:
    for info in host.functions.values():
        hints = typing.get_type_hints(info.call)
        for binding in info.bindings:
            if binding.type == "httpTrigger":
                assert HttpRequestConverter.check_input_type_annotation(hints[binding.name])
            elif binding.type == "http":
                assert HttpResponseConverter.check_output_type_annotation(hints["return"])
            elif binding.type == "queueTrigger":
                assert QueueMessageInConverter.check_input_type_annotation(hints[binding.name])
            elif binding.type == "queue":
                out = hints[binding.name]
                assert typing.get_origin(out) is func.Out
                (inner,) = typing.get_args(out)
                assert QueueMessageOutConverter.check_output_type_annotation(inner), inner
            else:
                raise AssertionError(f"unexpected binding {binding.type}")

