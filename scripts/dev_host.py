"""A development host for machines without Azure Functions Core Tools: ``python -m scripts.dev_host``.

It is a development stand-in, NOT the Azure Functions host: it runs the app's functions the way the
host would, from the app's own function metadata, so the API can be tried with curl, but it is
put together from the project's test pieces and is not what runs in Azure. ``make start`` runs it
when ``func`` is not installed (or with ``DEV_HOST=1``).

- **HTTP** (tests/support/http_front.py): ``http://localhost:7071/api/...``, every HTTP function
  at its route and methods as the metadata declares them, under host.json's ``routePrefix``;
  no function key is asked for, as under ``func start`` (one sent is ignored).
- **Queue triggers** (bench/queue_host.py's listeners): on the storage in ``AzureWebJobsStorage``
  (Azurite), with host.json's queue settings (the ``AzureFunctionsJobHost__`` app settings override
  the three the app reads too: ``visibilityTimeout``, ``maxDequeueCount``, ``messageEncoding``):
  ``batchSize``/``newBatchThreshold``, polling backing off to ``maxPollingInterval``, a failed
  message visible again after ``visibilityTimeout``, moved to ``{queue}-poison`` after
  ``maxDequeueCount`` deliveries (where the poison triggers take it); a running message's lease is
  renewed, and one left by a dev host that was killed reappears within a minute.
- **The timer** (``monitor_queues``): at the times its NCRONTAB schedule names, in UTC.
- **Settings**: local.settings.json's ``Values`` (``--local-settings``), the environment winning,
  as Core Tools sets them.

Every invocation goes through :class:`FunctionInvoker`: the one place that hands an invocation to
the real Python worker library (tests/support/worker_invoker.py), with the request the host would
send; the worker builds the trigger's object (``HttpRequest``, ``QueueMessage``, ``TimerRequest``)
and runs the user function on its thread pool. Ctrl-C (or SIGTERM) stops it quietly: running
invocations finish, exit status 0.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueServiceClient

from bench.queue_host import Invocation, QueueSettings, host_queues, listeners
from scripts import local_settings
from shared.errors import ConfigError
from shared.settings import HOST_STORAGE, load_settings
from tests.support.azurite import loopback_connection_string
from tests.support.host import FunctionInfo, FunctionsHost, HttpCall, host_query, load_host_json
from tests.support.http_front import DEFAULT_ROUTE_PREFIX, serve_http
from tests.support.worker_invoker import FunctionFailed, HostHttpRequest, HostQueueMessage, Worker

DEFAULT_PORT = 7071
# How long a received message stays invisible while its function runs (renewed every third of it).
# The host leases for 10 minutes; a minute lets a killed dev host's messages come back soon.
LEASE_SECONDS = 60
BANNER = (
    "==> development host: a stand-in for the Azure Functions host (scripts/dev_host.py), NOT the "
    "Functions host.\n    It runs the app's functions from their metadata for local trying-out; "
    "install Azure Functions Core Tools to run the real host (`func start`)."
)
log = logging.getLogger("dev_host")


class FunctionInvoker:
    """The seam: every function the development host runs is invoked here, and only here.

    Each invocation goes to the worker library, as the host sends it (tests/support/worker_invoker.py):
    an HTTP request, a queue message with its trigger metadata, the timer's payload. ``invoke`` is
    the queue listeners' ``Invoker`` (bench/queue_host.py): a queue function that raises fails its
    delivery.
    """

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def http(self, function: str, request: HostHttpRequest) -> HttpCall:
        answer = self._worker.invoke_http(function, request)
        if answer.error is not None:
            _log_failure(function, answer.error)
        return HttpCall(response=answer.http_response(), error=answer.error)

    def invoke(self, function: str, message: HostQueueMessage) -> Invocation:
        answer = self._worker.invoke_queue(function, message)
        what = f"{function} (message {message.id}, delivery {message.dequeue_count})"
        if answer.error is not None:  # the host logs it; the message comes back after visibilityTimeout
            _log_failure(what, answer.error)
        log.info("%s %s in %.0f ms (delivery %d)", function, "succeeded" if answer.ok else "failed",
                 answer.wall_seconds * 1000, message.dequeue_count)
        return Invocation.of(answer)

    def timer(self, function: str, *, past_due: bool) -> bool:
        answer = self._worker.invoke_timer(function, past_due=past_due)
        if answer.error is not None:
            _log_failure(function, answer.error)
        log.info("%s %s in %.0f ms (timer)", function, "succeeded" if answer.ok else "failed",
                 answer.wall_seconds * 1000)
        return answer.ok


class HttpRoutes:
    """The app's HTTP functions by the route templates and methods of their metadata, as the host routes."""

    def __init__(self, functions: dict[str, FunctionInfo], invoker: FunctionInvoker, route_prefix: str) -> None:
        self.route_prefix = route_prefix.strip("/")
        self._invoker = invoker
        self.routes: list[tuple[str, list[str], str]] = []  # (function, methods, route template)
        for name, info in functions.items():
            trigger = info.binding("httpTrigger")
            if trigger is not None:
                methods = [str(m).upper() for m in trigger.raw.get("methods") or ["GET", "POST"]]
                self.routes.append((name, methods, str(trigger.raw.get("route") or name)))

    def match(self, method: str, route: str) -> tuple[str, dict[str, str]]:
        """The function for ``method`` on ``route`` (the path after the prefix) and its route
        parameters; LookupError when none answers it."""
        given = route.strip("/").split("/")
        for name, methods, template in self.routes:
            if method.upper() not in methods:
                continue
            wanted = template.strip("/").split("/")
            if len(wanted) != len(given):
                continue
            params: dict[str, str] = {}
            for pattern, value in zip(wanted, given, strict=True):
                if pattern.startswith("{") and pattern.endswith("}"):
                    params[pattern[1:-1].split(":")[0]] = unquote(value)
                elif pattern.lower() != unquote(value).lower():
                    break
            else:
                return name, params
        raise LookupError(f"no function answers {method} {route}")

    def http(self, method: str, route: str, *, body: bytes, headers: dict[str, str],
             query_string: str) -> HttpCall:
        function, route_params = self.match(method, route)
        host = headers.get("host") or f"localhost:{DEFAULT_PORT}"
        path = f"/{self.route_prefix}/{route}" if self.route_prefix else f"/{route}"
        request = HostHttpRequest(method=method.upper(), url=f"http://{host}{path}" + (
            f"?{query_string}" if query_string else ""), headers=headers, query=host_query(query_string),
            route_params=route_params, body=body)
        started = time.perf_counter()
        call = self._invoker.http(function, request)
        # The path only: a query may carry a function key.
        log.info("%s %s -> %d (%s, %.0f ms)", method.upper(), path, call.response.status_code, function,
                 (time.perf_counter() - started) * 1000)
        return call

    def urls(self, base: str) -> list[str]:
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        return [f"{name}: [{','.join(methods)}] {base}{prefix}/{template}" for name, methods, template in self.routes]


# --- the timer ---------------------------------------------------------------------------------------

_FIELDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))  # second minute hour day month day-of-week
_FIELD_PART = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?$")


class Schedule:
    """An NCRONTAB expression as the Functions timer trigger reads it: six fields, the first seconds
    (``0 */5 * * * *``: every five minutes); ``*``, numbers, ranges ``a-b``, steps ``/n`` and lists."""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != len(_FIELDS):
            raise ValueError(f"{expression!r}: an NCRONTAB schedule has six fields (second minute hour day month "
                             "day-of-week)")
        self.expression = expression
        self._allowed = [_field_values(text, low, high, expression) for text, (low, high) in zip(fields, _FIELDS,
                                                                                                   strict=True)]

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` the schedule names."""
        seconds, minutes, hours, days, months, weekdays = self._allowed
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        minute = start.replace(second=0)
        for _ in range(366 * 24 * 60):  # a year of minutes: any schedule with a time in it fires within one
            if (minute.month in months and minute.day in days and (minute.isoweekday() % 7) in weekdays
                    and minute.hour in hours and minute.minute in minutes):
                first = start.second if minute == start.replace(second=0) else 0
                second = next((s for s in sorted(seconds) if s >= first), None)
                if second is not None:
                    return minute.replace(second=second)
            minute += timedelta(minutes=1)
        raise ValueError(f"{self.expression!r} names no time within a year")


def _field_values(text: str, low: int, high: int, expression: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = _FIELD_PART.match(part)
        if match is None:
            raise ValueError(f"{expression!r}: {part!r} is not *, a number, a range or a step")
        span, step = match.group(1), int(match.group(2) or 1)
        first, last = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        if not low <= first <= last <= high or step < 1:
            raise ValueError(f"{expression!r}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


class TimerListener:
    """Runs one timer-triggered function at the times of its schedule, on a thread, until ``stop()``."""

    def __init__(self, function: str, binding: dict[str, Any], invoker: FunctionInvoker) -> None:
        self.function = function
        self.schedule = Schedule(str(binding.get("schedule", "")))
        self._run_on_startup = bool(binding.get("runOnStartup"))
        self._invoker = invoker
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer-{function}", daemon=True)

    def start(self) -> TimerListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        if self._run_on_startup:
            self._invoker.timer(self.function, past_due=False)
        while True:
            due = self.schedule.next_after(datetime.now(UTC))
            if self._stopping.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
                return
            self._invoker.timer(self.function, past_due=False)


# --- running it ----------------------------------------------------------------------------------------


def storage_connection(environ: Mapping[str, str]) -> str:
    """The host storage's connection string (``UseDevelopmentStorage=true`` expanded to Azurite's
    well-known account); ValueError saying what to set when there is none."""
    value = environ.get(HOST_STORAGE.name, "").strip()
    if not value:
        raise ValueError(f"{HOST_STORAGE.name} is not set: the development host needs a connection string for the "
                         "queues (UseDevelopmentStorage=true for Azurite, as local.settings.json.example has it)")
    if local_settings.is_development_storage(value):
        return loopback_connection_string(10000, 10001, 10002)
    return value


def _storage_answers(connection: str) -> bool:
    try:
        service = QueueServiceClient.from_connection_string(connection, retry_total=0, connection_timeout=3)
        service.get_service_properties(timeout=5)
    except (AzureError, ValueError):
        return False
    return True


def _queue_endpoint(connection: str) -> str:
    fields = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    endpoint = fields.get("QueueEndpoint", "")
    return urlsplit(endpoint).netloc or "the account in AzureWebJobsStorage"


def route_prefix() -> str:
    value = load_host_json().get("extensions", {}).get("http", {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)
    return str(value)


class _Stop:
    """Set by Ctrl-C or SIGTERM; a second one while stopping ends the process at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            os._exit(0)
        self.event.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.dev_host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port on 127.0.0.1 (default 7071)")
    parser.add_argument("--local-settings", type=Path, default=local_settings.LOCAL_SETTINGS,
                        help="the settings file whose Values are read (default: local.settings.json)")
    parser.add_argument("--log-level", default="INFO", help="the app's and the host's log level (default INFO)")
    args = parser.parse_args(argv)

    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("azure", "httpx", "httpcore", "urllib3"):  # one line per Storage or HTTP request otherwise
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))

    print(BANNER, flush=True)
    try:
        connection = prepare_settings(args.local_settings)
    except (local_settings.LocalSettingsError, ValueError) as error:
        print(f"dev host: {error}", file=sys.stderr)
        return 2
    stop = _Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return serve(connection, args.port, stop.event)


def prepare_settings(settings_file: Path) -> str:
    """local.settings.json's values into the environment (the environment wins), the settings
    checked as the app loads them, the storage probed; the host storage's connection string.
    LocalSettingsError or ValueError (one line each) when the host cannot start."""
    taken = local_settings.apply(local_settings.read_values(settings_file), os.environ)
    print(f"==> {local_settings.describe(taken)}", flush=True)
    connection = storage_connection(os.environ)
    try:
        load_settings()
    except ConfigError as error:  # as `func start` does: served anyway, every answer names the problem
        print(f"==> warning: {error} (the HTTP functions answer 500 configuration_error until it is fixed)",
              flush=True)
    if not _storage_answers(connection):
        print(f"==> warning: no storage answers at {_queue_endpoint(connection)} (is Azurite running? "
              "`make start` starts it); the queue triggers keep polling", flush=True)
    return connection


def serve(connection: str, port: int, stop: threading.Event) -> int:
    """Load the app, serve HTTP on ``port``, start its queue listeners and timers; run until ``stop``."""
    # The worker imports function_app.py now that local.settings.json's values are in the environment,
    # and reports the app's function metadata as it reports it to the host.
    host = FunctionsHost(connection)
    invoker = FunctionInvoker(host.worker)
    routes = HttpRoutes(host.functions, invoker, route_prefix())
    with ExitStack() as running:
        try:
            base = running.enter_context(serve_http(routes, port=port, function_key=None,
                                                    route_prefix=routes.route_prefix))
        except OSError as error:
            reason = ("is already in use (another `make start` or `func start`?): stop it, or pick another port"
                      if error.errno == errno.EADDRINUSE else f"cannot be had: {error.strerror}")
            print(f"dev host: port {port} {reason}", file=sys.stderr)
            return 1
        queue_listeners = listeners(host.functions, host_queues(connection), QueueSettings.from_host(), invoker,
                                    lease_seconds=LEASE_SECONDS)
        for listener in queue_listeners.values():
            running.callback(listener.stop)
            listener.start()
        for name, info in host.functions.items():
            binding = info.binding("timerTrigger")
            if binding is not None:
                running.callback(TimerListener(name, binding.raw, invoker).start().stop)
        local = base.replace("127.0.0.1", "localhost")
        print("\n".join(["==> functions:", *(f"    {line}" for line in describe_functions(host.functions, routes,
                                                                                             local))]), flush=True)
        print(f"==> the app answers at {local}/{routes.route_prefix}/ (no function key needed locally); "
              "Ctrl-C stops", flush=True)
        while not stop.wait(0.5):
            pass
        print("==> stopping: letting running invocations finish (Ctrl-C again ends at once)", flush=True)
    print("==> stopped", flush=True)
    return 0


def describe_functions(functions: dict[str, FunctionInfo], routes: HttpRoutes, base: str) -> list[str]:
    """One line per function, as ``func start`` lists them: the HTTP ones with their URLs."""
    lines = routes.urls(base)
    for name, info in functions.items():
        queue, timer = info.binding("queueTrigger"), info.binding("timerTrigger")
        if queue is not None:
            lines.append(f"{name}: queue {queue.raw['queueName']}")
        elif timer is not None:
            lines.append(f"{name}: timer {timer.raw['schedule']} (UTC)")
    return lines


def _log_failure(what: str, error: FunctionFailed) -> None:
    """A function's exception as the host logs it: its message and the worker's stack trace."""
    log.warning("%s raised %s\n%s", what, error.message, error.stack_trace.rstrip())


if __name__ == "__main__":
    sys.exit(main())
