"""Bindings only: each function hands its trigger and bindings to ``shared``.

The queue name is read when the app loads, because bindings are fixed then.
"""

from typing import List  # noqa: UP035 - the worker rejects list[str] in binding annotations

import azure.functions as func

from shared import config
from shared.persist import persist_message
from shared.runtime import check_settings_at_startup, get_runtime
from shared.start_run import start_run
from shared.status_api import response_status

ARTIFACTS_QUEUE = config.queue_name()
STORAGE_CONNECTION = "AzureWebJobsStorage"

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
check_settings_at_startup()


@app.function_name("start_run")
@app.route(route="responses", methods=["POST"])
@app.queue_output(arg_name="messages", queue_name=ARTIFACTS_QUEUE, connection=STORAGE_CONNECTION)
def start_run_http(req: func.HttpRequest, messages: func.Out[List[str]]) -> func.HttpResponse:  # noqa: UP006
    return start_run(req, messages)


@app.function_name("response_status")
@app.route(route="responses/{response_id}", methods=["GET"])
def response_status_http(req: func.HttpRequest) -> func.HttpResponse:
    return response_status(req)


@app.function_name("persist_artifact")
@app.queue_trigger(arg_name="msg", queue_name=ARTIFACTS_QUEUE, connection=STORAGE_CONNECTION)
def persist_artifact_queue(msg: func.QueueMessage) -> None:
    persist_message(get_runtime(), msg.get_body(), message_id=msg.id, dequeue_count=msg.dequeue_count)
