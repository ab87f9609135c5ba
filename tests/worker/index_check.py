"""Index ``function_app.py`` with the real Azure Functions Python worker, as the host makes it do.

When the Functions host starts, the Python worker receives a ``WorkerInitRequest``: it imports
``function_app.py``, finds the ``FunctionApp`` and builds one ``RpcFunctionMetadata`` per function
(its bindings, and ``raw_bindings``: the JSON the host turns into triggers and bindings). The host
then asks for that metadata with a ``FunctionsMetadataRequest``. A load error here is what stops
an app in Azure ("0 functions loaded", or a host error).

This script drives exactly those two calls of ``azure_functions_runtime`` (the worker library the
host loads for Python 3.13+, pinned in requirements.txt), in a fresh interpreter per scenario, and
checks what the host would receive. It runs in the project's environment (``.venv``, Python 3.13,
made by ``scripts/setup.sh``):

    .venv/bin/python tests/worker/index_check.py [--cloud-env settings.json]

``--cloud-env`` names a JSON object of app settings (the ones infra/ writes, from
``tests/infra/settings_check.py --write-env``); the app is then also loaded with exactly those.

Exit status is non-zero on any load error or mismatch; the last line is ``N passed, N failed``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
# The expected bindings, stated here on purpose rather than imported: the check compares what the
# worker indexes with what the docs promise, so it must not take its answers from the app.
DEFAULT_QUEUE = "artifact-downloads"  # ARTIFACTS_QUEUE
DEFAULT_RUNS_QUEUE = "artifact-runs"  # ARTIFACTS_RUNS_QUEUE
POISON_SUFFIX = "-poison"  # the host's: where a message goes after maxDequeueCount failed deliveries
MONITOR_SCHEDULE = "0 */1 * * * *"  # the queue monitor's timer, as function_app binds it
CONNECTION = "AzureWebJobsStorage"
DIRECTIONS = {"IN": 0, "OUT": 1}  # BindingInfo.Direction in FunctionRpc.proto

# Settings that make the app load with valid settings locally (the cloud form comes from infra/).
LOCAL_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:8089",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4.1",
}


# --------------------------------------------------------------------------------------------
# The child: one worker process, as the host starts it
# --------------------------------------------------------------------------------------------

class _Message:
    """A stand-in for a generated protobuf message: declared fields only, as protobuf enforces.

    The worker receives the generated ``FunctionRpc`` protos from the host-side proxy; they are
    not published as a package, so these classes carry the same field names (FunctionRpc.proto).
    """

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **fields: Any) -> None:
        unknown = sorted(set(fields) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"Protocol message {type(self).__name__} has no field(s) {unknown}")
        for name in self.FIELDS:
            setattr(self, name, fields.get(name))


def _message(name: str, fields: str, **constants: int) -> type[_Message]:
    cls = type(name, (_Message,), {"FIELDS": tuple(fields.split())})
    for constant, value in constants.items():
        setattr(cls, constant, value)
    return cls


def make_protos() -> types.SimpleNamespace:
    binding_info = _message(
        "BindingInfo", "type direction data_type properties",
        out=1, inout=2, undefined=0, string=1, binary=2, stream=3,
    )
    setattr(binding_info, "in", 0)  # a Python keyword, so set by name
    return types.SimpleNamespace(
        BindingInfo=binding_info,
        RpcFunctionMetadata=_message(
            "RpcFunctionMetadata",
            "name directory script_file entry_point bindings is_proxy status language raw_bindings"
            " function_id managed_dependency_enabled retry_options properties",
        ),
        RpcRetryOptions=_message(
            "RpcRetryOptions", "max_retry_count delay_interval minimum_interval maximum_interval retry_strategy",
        ),
        StatusResult=_message("StatusResult", "status result exception logs", Failure=0, Success=1, Cancelled=2),
        RpcException=_message("RpcException", "source stack_trace message is_user_exception type"),
        WorkerInitResponse=_message("WorkerInitResponse", "worker_version capabilities result worker_metadata"),
        WorkerMetadata=_message(
            "WorkerMetadata", "runtime_name runtime_version worker_version worker_bitness custom_properties",
        ),
        FunctionMetadataResponse=_message(
            "FunctionMetadataResponse", "function_metadata_results result use_default_metadata_indexing",
        ),
    )


class _AppLogs(logging.Handler):
    """Collects what the app (not the worker) logs while it is imported."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("azure_functions_runtime"):
            self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def _status_name(protos: types.SimpleNamespace, status: int | None) -> str:
    names = {protos.StatusResult.Failure: "Failure", protos.StatusResult.Success: "Success"}
    return names.get(status, f"unknown({status})")


async def _index(app_dir: Path) -> dict[str, Any]:
    worker: Any = importlib.import_module("azure_functions_runtime")
    protos = make_protos()
    request = types.SimpleNamespace  # the proxy's WorkerRequest and the host's StreamingMessage
    init = request(
        name="WorkerInitRequest",
        request=request(worker_init_request=request(
            host_version="4.0", capabilities={}, log_categories={}, function_app_directory=str(app_dir),
            worker_directory="", function_app_directory_exists=True,
        )),
        properties={"protos": protos, "host": "127.0.0.1"},
    )
    worker.start_threadpool_executor()
    try:
        init_response = await worker.worker_init_request(init)
        metadata_response = await worker.functions_metadata_request(request(
            name="WorkerMetadataRequest",
            request=request(functions_metadata_request=request(function_app_directory=str(app_dir))),
            properties={},
        ))
    finally:
        worker.stop_threadpool_executor()

    exception = init_response.result.exception
    functions = []
    for meta in metadata_response.function_metadata_results or []:
        functions.append({
            "name": meta.name,
            "entry_point": meta.entry_point,
            "script_file": meta.script_file,
            "language": meta.language,
            "properties": dict(meta.properties or {}),
            "bindings": {
                name: {"type": info.type, "direction": info.direction}
                for name, info in (meta.bindings or {}).items()
            },
            "raw_bindings": [json.loads(raw) for raw in meta.raw_bindings or []],
        })
    return {
        "init_status": _status_name(protos, init_response.result.status),
        "init_error": exception.message if exception is not None else None,
        "metadata_status": _status_name(protos, metadata_response.result.status),
        "functions": functions,
    }


def run_child(app_dir: Path) -> int:
    """Load ``app_dir`` as the worker does and print what the host would receive, as JSON."""
    app_logs = _AppLogs()
    logging.getLogger().addHandler(app_logs)
    # The worker runs with the app's directory as working directory and first on sys.path.
    os.chdir(app_dir)
    sys.path.insert(0, str(app_dir))
    result = asyncio.run(_index(app_dir))
    result["app_logs"] = app_logs.records
    print(json.dumps(result))
    ok = result["init_status"] == "Success" and result["metadata_status"] == "Success" and result["functions"]
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------
# The parent: scenarios and the checks on what the worker reported
# --------------------------------------------------------------------------------------------

# HTTP functions: name -> (route, method). Each has only its trigger and the HTTP response.
HTTP_FUNCTIONS = {
    "start_run": ("responses", "POST"),
    "response_status": ("responses/{response_id}", "GET"),
    "import_response": ("responses/{response_id}/import", "POST"),
    "cancel_response": ("responses/{response_id}/cancel", "POST"),
    "azure_openai_webhook": ("webhooks/azure-openai", "POST"),
}


def expected_bindings(artifacts_queue: str, runs_queue: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per function, per binding name: the raw binding the host must receive.

    No function has an output binding: the app sends its queue messages itself.
    """
    expected: dict[str, dict[str, dict[str, Any]]] = {
        name: {
            "req": {"name": "req", "type": "httpTrigger", "direction": "IN",
                    "methods": [method], "route": route, "authLevel": "FUNCTION"},
            "$return": {"name": "$return", "type": "http", "direction": "OUT"},
        }
        for name, (route, method) in HTTP_FUNCTIONS.items()
    }
    queue_triggers = {
        "watch_run": runs_queue,
        "persist_artifact": artifacts_queue,
        "record_failed_artifact": artifacts_queue + POISON_SUFFIX,
        "give_up_run": runs_queue + POISON_SUFFIX,
    }
    for name, queue in queue_triggers.items():
        expected[name] = {
            "msg": {"name": "msg", "type": "queueTrigger", "direction": "IN",
                    "queueName": queue, "connection": CONNECTION},
        }
    expected["monitor_queues"] = {
        "timer": {"name": "timer", "type": "timerTrigger", "direction": "IN", "schedule": MONITOR_SCHEDULE,
                  "runOnStartup": False, "useMonitor": False},
    }
    return expected


def index_in_worker(app_dir: Path, env: dict[str, str]) -> tuple[int, dict[str, Any] | None, str]:
    """Run one worker process on ``app_dir``; returns (exit status, its report, its stderr)."""
    child_env = {k: v for k, v in os.environ.items() if not _is_app_setting(k)}
    child_env.update(env)
    child_env["FUNCTIONS_WORKER_RUNTIME"] = "python"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(app_dir)],
        env=child_env, capture_output=True, text=True, timeout=300, check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else None
    return done.returncode, report, done.stderr


def _is_app_setting(name: str) -> bool:
    return name.startswith(("AZURE_", "ARTIFACTS_", "AzureWebJobs", "APPLICATIONINSIGHTS_"))


def check_loaded(
    report: dict[str, Any] | None, status: int, stderr: str, artifacts_queue: str, runs_queue: str
) -> list[str]:
    """Everything wrong with one successful-load report, as messages (empty: all good)."""
    if report is None:
        return [f"the worker printed no report (exit {status}): {stderr.strip()[-2000:]}"]
    problems: list[str] = []
    if status != 0 or report["init_status"] != "Success":
        problems.append(f"worker init failed (exit {status}): {report['init_error']}")
        return problems
    expected = expected_bindings(artifacts_queue, runs_queue)
    got = {f["name"]: f for f in report["functions"]}
    if set(got) != set(expected):
        problems.append(f"functions: expected {sorted(expected)}, the worker reported {sorted(got)}")
    for name, bindings in expected.items():
        function = got.get(name)
        if function is None:
            continue
        raw = {b["name"]: b for b in function["raw_bindings"]}
        if raw != bindings:
            problems.append(f"{name}: raw bindings {json.dumps(raw, sort_keys=True)}"
                            f" != expected {json.dumps(bindings, sort_keys=True)}")
        if set(function["bindings"]) != set(bindings):
            problems.append(f"{name}: binding infos {sorted(function['bindings'])} != {sorted(bindings)}")
        for binding, info in function["bindings"].items():
            want = bindings.get(binding)
            if want and (info["type"], info["direction"]) != (want["type"], DIRECTIONS[want["direction"]]):
                problems.append(f"{name}.{binding}: binding info {info} != {want['type']} {want['direction']}")
        if function["entry_point"] != name or not str(function["script_file"]).endswith("function_app.py"):
            problems.append(f"{name}: entry point {function['entry_point']!r}, script {function['script_file']!r}")
        if function["language"] != "python" or function["properties"].get("worker_indexed") != "True":
            problems.append(f"{name}: language {function['language']!r}, properties {function['properties']}")
    return problems


def copy_app(dest: Path) -> Path:
    """A copy of the deployable app (what the deployment package holds) to break on purpose."""
    shutil.copy2(ROOT / "function_app.py", dest / "function_app.py")
    shutil.copy2(ROOT / "host.json", dest / "host.json")
    shutil.copytree(ROOT / "shared", dest / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def scenarios(cloud_env: dict[str, str] | None) -> list[tuple[str, Callable[[], list[str]]]]:
    def loads(env: dict[str, str], *, clean_settings: bool) -> Callable[[], list[str]]:
        # The queue names the triggers must bind to, as the app reads them (blank means the default).
        artifacts_queue = env.get("ARTIFACTS_QUEUE", "").strip() or DEFAULT_QUEUE
        runs_queue = env.get("ARTIFACTS_RUNS_QUEUE", "").strip() or DEFAULT_RUNS_QUEUE

        def run() -> list[str]:
            status, report, stderr = index_in_worker(ROOT, env)
            problems = check_loaded(report, status, stderr, artifacts_queue, runs_queue)
            if clean_settings and report is not None and report.get("app_logs"):
                problems.append(f"the app logged while loading (bad settings?): {report['app_logs']}")
            return problems
        return run

    def fails_on(breakage: Callable[[str], str], *expected_error: str) -> Callable[[], list[str]]:
        """The broken copy must fail the load (no function reported to the host), with an error
        holding every ``expected_error`` part."""
        def run() -> list[str]:
            with tempfile.TemporaryDirectory() as tmp:
                app_dir = copy_app(Path(tmp))
                source = app_dir / "function_app.py"
                original = source.read_text(encoding="utf-8")
                broken = breakage(original)
                if broken == original:
                    return ["the breakage did not apply: function_app.py changed shape, update this check"]
                source.write_text(broken, encoding="utf-8")
                status, report, stderr = index_in_worker(app_dir, LOCAL_ENV)
            if report is None:
                return [f"the worker printed no report (exit {status}): {stderr.strip()[-2000:]}"]
            if status == 0 or report["init_status"] != "Failure":
                return [f"a broken app was reported as loaded (exit {status}, {report['init_status']})"]
            if not all(part in (report["init_error"] or "") for part in expected_error):
                return [f"the load error does not name the cause: {report['init_error']!r}"]
            if report["functions"]:
                names = [function["name"] for function in report["functions"]]
                return [f"the load failed, yet the worker reported functions: {names}"]
            return []
        return run

    renamed = {
        "ARTIFACTS_QUEUE": "renamed-artifact-queue",
        "ARTIFACTS_RUNS_QUEUE": "renamed-runs-queue",
        "ARTIFACTS_EVENTS_QUEUE": "renamed-events-queue",  # no binding: the app only sends to it
    }
    found: list[tuple[str, Callable[[], list[str]]]] = [
        ("loads with local settings; default queue names",
         loads(LOCAL_ENV, clean_settings=True)),
        ("ARTIFACTS_QUEUE and ARTIFACTS_RUNS_QUEUE rename their triggers and the poison-queue triggers",
         loads({**LOCAL_ENV, **renamed}, clean_settings=True)),
        ("loads with no settings at all (bad settings are logged, never fatal)",
         loads({}, clean_settings=False)),
        ("a missing module fails the load",
         fails_on(lambda src: "import module_that_is_not_installed\n" + src, "module_that_is_not_installed")),
        ("an exception at import fails the load",
         fails_on(lambda src: "raise RuntimeError('boom at import')\n" + src, "boom at import")),
        # The worker checks each parameter's annotation against its binding's converter while it
        # indexes the app: one mismatch fails the whole load (no function reaches the host).
        ("a binding annotation the worker's converter refuses fails the load (queue trigger as func.HttpRequest)",
         fails_on(lambda src: src.replace("def watch_run_queue(msg: func.QueueMessage)",
                                          "def watch_run_queue(msg: func.HttpRequest)"),
                  "cannot load the watch_run function", "msg", "queueTrigger",
                  "Python type annotation HttpRequest")),
    ]
    if cloud_env is not None:
        found.insert(0, ("loads with the app settings infra/ writes (identity-based, no keys)",
                         loads(cloud_env, clean_settings=True)))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cloud-env", type=Path, help="JSON object of the app settings infra/ writes")
    args = parser.parse_args()
    if args.child is not None:
        return run_child(args.child.resolve())

    cloud_env = json.loads(args.cloud_env.read_text(encoding="utf-8")) if args.cloud_env else None
    worker_version = importlib.import_module("azure_functions_runtime.version").VERSION
    functions_version = importlib.import_module("azure.functions").__version__
    print(f"azure-functions-runtime {worker_version}, azure-functions {functions_version}, "
          f"Python {sys.version.split()[0]}")
    passed = failed = 0
    for name, check in scenarios(cloud_env):
        problems = check()
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for problem in problems:
                print(f"     {problem}")
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
