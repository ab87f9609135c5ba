"""What the worker reports when it indexes the app: functions, bindings, names.

The host stand-in starts the real worker library on the app (tests/support/worker_invoker.py),
which refuses to load a function whose binding annotation its converter does not accept; the
functions here are the ones it reported to the host.
"""

from __future__ import annotations

import ast
from typing import Any

from tests.conftest import AppEnv
from tests.support.host import ROOT, FunctionsHost


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


def test_the_worker_loaded_every_function_the_app_declares(host: FunctionsHost) -> None:
    """Each function passed the worker's own checks (its converters on each binding's annotation)
    and was loaded, as the host loads it, under the name the app gives it."""
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    declared = {decorator.args[0].value for node in tree.body if isinstance(node, ast.FunctionDef)
                for decorator in node.decorator_list
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "app.function_name"
                and isinstance(decorator.args[0], ast.Constant)}
    assert set(host.worker.functions) == declared == set(host.functions)
    assert all(registered.function_id for registered in host.worker.functions.values())


def test_the_queue_monitor_runs_when_its_timer_fires(host: FunctionsHost) -> None:
    """The timer's payload, as the host sends it, through the worker to ``func.TimerRequest``."""
    assert host.timer("monitor_queues").error is None
    assert host.timer("monitor_queues", past_due=True).error is None
