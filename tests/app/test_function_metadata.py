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
from azure.functions.timer import TimerRequestConverter

from tests.conftest import AppEnv
from tests.support.host import FunctionsHost


def _bindings(host: FunctionsHost, name: str) -> dict[str, dict[str, Any]]:
    return {b.name: b.raw for b in host.functions[name].bindings}


HTTP_ROUTES = {
    "start_run": ("responses", "POST"),
    "response_status": ("responses/{response_id}", "GET"),
    "import_response": ("responses/{response_id}/import", "POST"),
    "cancel_response": ("responses/{response_id}/cancel", "POST"),
    "azure_openai_webhook": ("webhooks/azure-openai", "POST"),
}


def test_functions_and_bindings(host: FunctionsHost, app_env: AppEnv) -> None:
    queue_triggers = {
        "watch_run": app_env.runs_queue,
        "persist_artifact": app_env.queue,
        "record_failed_artifact": f"{app_env.queue}-poison",
        "give_up_run": f"{app_env.runs_queue}-poison",
    }
    assert set(host.functions) == set(HTTP_ROUTES) | set(queue_triggers) | {"monitor_queues"}
    assert _bindings(host, "monitor_queues") == {
        "timer": {"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": "0 */1 * * * *",
                  "runOnStartup": False, "useMonitor": False},
    }

    for name, (route, method) in HTTP_ROUTES.items():
        bindings = _bindings(host, name)
        assert set(bindings) == {"req", "$return"}  # no output binding: the app sends its own messages
        assert bindings["req"]["type"] == "httpTrigger"
        assert bindings["req"]["route"] == route
        assert bindings["req"]["methods"] == [method]
        assert bindings["req"]["authLevel"] == "FUNCTION"

    for name, queue in queue_triggers.items():
        assert _bindings(host, name) == {
            "msg": {
                "direction": "IN", "type": "queueTrigger", "name": "msg",
                "queueName": queue, "connection": "AzureWebJobsStorage",
            }
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
            elif binding.type == "timerTrigger":
                assert TimerRequestConverter.check_input_type_annotation(hints[binding.name])
            elif binding.type == "queue":
                out = hints[binding.name]
                assert typing.get_origin(out) is func.Out
                (inner,) = typing.get_args(out)
                assert QueueMessageOutConverter.check_output_type_annotation(inner), inner
            else:
                raise AssertionError(f"unexpected binding {binding.type}")

