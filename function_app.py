"""Bindings only: each function hands its trigger to ``shared``.

Queue names are read when the app loads, because bindings are fixed then. No function uses a
queue output binding: the app sends its messages itself (``shared.storage.queues``), with delays, and
knows whether each send succeeded before it answers.
"""

import azure.functions as func

from shared import settings
from shared.api.import_cancel import cancel_response, import_response
from shared.api.start import start_run
from shared.api.status import response_status
from shared.api.webhooks import receive_webhook
from shared.pipeline.persist import handle_artifact_message, record_poisoned_artifact
from shared.pipeline.queue_monitor import MONITOR_SCHEDULE, report_queue_depths
from shared.pipeline.watcher import give_up_poisoned_run, handle_watch_message
from shared.runtime import check_settings_at_startup, get_runtime
from shared.telemetry import configure_from_environment

QUEUES = settings.queue_names()
STORAGE_CONNECTION = "AzureWebJobsStorage"

configure_from_environment()  # before the first invocation, as the Functions OpenTelemetry docs ask
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
check_settings_at_startup()


@app.function_name("start_run")
@app.route(route="responses", methods=["POST"])
def start_run_http(req: func.HttpRequest) -> func.HttpResponse:
    return start_run(req)


@app.function_name("response_status")
@app.route(route="responses/{response_id}", methods=["GET"])
def response_status_http(req: func.HttpRequest) -> func.HttpResponse:
    return response_status(req)


@app.function_name("import_response")
@app.route(route="responses/{response_id}/import", methods=["POST"])
def import_response_http(req: func.HttpRequest) -> func.HttpResponse:
    return import_response(req)


@app.function_name("cancel_response")
@app.route(route="responses/{response_id}/cancel", methods=["POST"])
def cancel_response_http(req: func.HttpRequest) -> func.HttpResponse:
    return cancel_response(req)


@app.function_name("azure_openai_webhook")
@app.route(route="webhooks/azure-openai", methods=["POST"])
def azure_openai_webhook_http(req: func.HttpRequest) -> func.HttpResponse:
    return receive_webhook(req)


@app.function_name("watch_run")
@app.queue_trigger(arg_name="msg", queue_name=QUEUES.runs, connection=STORAGE_CONNECTION)
def watch_run_queue(msg: func.QueueMessage) -> None:
    handle_watch_message(get_runtime(), msg.get_body(), message_id=msg.id, dequeue_count=msg.dequeue_count or 1)


@app.function_name("persist_artifact")
@app.queue_trigger(arg_name="msg", queue_name=QUEUES.artifacts, connection=STORAGE_CONNECTION)
def persist_artifact_queue(msg: func.QueueMessage) -> None:
    handle_artifact_message(get_runtime(), msg.get_body(), message_id=msg.id, dequeue_count=msg.dequeue_count)


@app.function_name("record_failed_artifact")
@app.queue_trigger(arg_name="msg", queue_name=QUEUES.poison(QUEUES.artifacts), connection=STORAGE_CONNECTION)
def record_failed_artifact_queue(msg: func.QueueMessage) -> None:
    record_poisoned_artifact(get_runtime(), msg.get_body(), message_id=msg.id)


@app.function_name("give_up_run")
@app.queue_trigger(arg_name="msg", queue_name=QUEUES.poison(QUEUES.runs), connection=STORAGE_CONNECTION)
def give_up_run_queue(msg: func.QueueMessage) -> None:
    give_up_poisoned_run(get_runtime(), msg.get_body(), message_id=msg.id)


@app.function_name("monitor_queues")
@app.timer_trigger(arg_name="timer", schedule=MONITOR_SCHEDULE, run_on_startup=False, use_monitor=False)
def monitor_queues_timer(timer: func.TimerRequest) -> None:
    report_queue_depths(get_runtime())
