"""One measurement, in its own interpreter; prints one JSON line. Driven by bench/run.py."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

MiB = 1024 * 1024
KEY = {"api-key": os.environ.get("AZURE_OPENAI_API_KEY", "")}
STORAGE = os.environ.get("AzureWebJobsStorage", "")  # noqa: SIM112 - the host's own name
# Behind the latency proxy, the set-up (seeding the fake, queueing messages) goes around it: only
# what the app and the host do is delayed and counted.
DIRECT_STORAGE = os.environ.get("BENCH_DIRECT_STORAGE", STORAGE)
DIRECT_OPENAI = os.environ.get("BENCH_DIRECT_OPENAI", os.environ.get("AZURE_OPENAI_ENDPOINT", ""))
HOST_STORAGE = os.environ.get("BENCH_HOST_STORAGE", STORAGE)  # the host's own requests (its own route)
PROXY_CONTROL = os.environ.get("BENCH_PROXY_CONTROL")  # the latency proxy's control URL, when there is one


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def seed(files: list[tuple[str, int]]) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    answer = httpx.post(
        f"{DIRECT_OPENAI}/_fake/containers",
        json={"files": [{"path": path, "size": size} for path, size in files]},
        headers=KEY,
        timeout=120,
    )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def message(container: dict[str, Any], file: dict[str, Any]) -> bytes:
    from shared.storage.messages import ArtifactMessage  # noqa: PLC0415

    response_id = f"resp_{uuid.uuid4().hex}"
    name = file["path"].rsplit("/", 1)[1]
    return ArtifactMessage(
        response_id=response_id,
        container_id=container["container_id"],
        file_id=file["file_id"],
        filename=name,
        blob_name=f"{response_id}/{file['file_id']}/{name}",
        size=file.get("bytes"),  # as the fan-out's messages carry the listing's size
    ).to_json().encode()


def raw_download(size: int) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    container = seed([("/mnt/data/big.bin", size)])
    fid = container["files"][0]["file_id"]
    url = f"{os.environ['AZURE_OPENAI_ENDPOINT']}/openai/v1/containers/{container['container_id']}/files/{fid}/content"
    start = time.perf_counter()
    received = 0
    with httpx.Client(timeout=60) as client, client.stream(
        "GET", url, params={"api-version": "preview"}, headers={**KEY, "Accept-Encoding": "identity"}
    ) as answer:
        for chunk in answer.iter_raw(4 * MiB):
            received += len(chunk)
    elapsed = time.perf_counter() - start
    assert received == size
    return {"mib_per_s": size / MiB / elapsed}


def raw_upload(size: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    data = os.urandom(MiB) * (size // MiB)
    service = BlobServiceClient.from_connection_string(
        STORAGE, max_block_size=4 * MiB, max_single_put_size=4 * MiB
    )
    container = service.get_container_client("bench-raw")
    if not container.exists():
        container.create_container()
    start = time.perf_counter()
    container.get_blob_client(uuid.uuid4().hex).upload_blob(io.BytesIO(data), length=len(data), max_concurrency=4)
    elapsed = time.perf_counter() - start
    return {"mib_per_s": size / MiB / elapsed}


def persist(size: int) -> dict[str, Any]:
    from shared.pipeline.persist import persist_message  # noqa: PLC0415
    from shared.runtime import get_runtime  # noqa: PLC0415

    runtime = get_runtime()
    container = seed([("/mnt/data/big.bin", size)])
    body = message(container, container["files"][0])
    warm = seed([("/mnt/data/warm.bin", 64 * 1024)])  # connections and container made before measuring
    persist_message(runtime, message(warm, warm["files"][0]))
    idle = rss_mib()
    start = time.perf_counter()
    stored = persist_message(runtime, body)
    elapsed = time.perf_counter() - start
    assert stored is not None and stored.size == size
    return {"mib_per_s": size / MiB / elapsed, "peak_above_idle_mib": peak_rss_mib() - idle}


def buffered(size: int) -> dict[str, Any]:
    """The naive way, for comparison: read the whole file, then upload it."""
    import httpx  # noqa: PLC0415
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    container = seed([("/mnt/data/big.bin", size)])
    fid = container["files"][0]["file_id"]
    url = f"{os.environ['AZURE_OPENAI_ENDPOINT']}/openai/v1/containers/{container['container_id']}/files/{fid}/content"
    service = BlobServiceClient.from_connection_string(STORAGE)
    blobs = service.get_container_client("bench-raw")
    if not blobs.exists():
        blobs.create_container()
    client = httpx.Client(timeout=60)
    idle = rss_mib()
    start = time.perf_counter()
    data = client.get(url, params={"api-version": "preview"}, headers=KEY).content
    digest = hashlib.sha256(data).hexdigest()
    blobs.get_blob_client(uuid.uuid4().hex).upload_blob(data, metadata={"sha256": digest}, max_concurrency=4)
    elapsed = time.perf_counter() - start
    return {"mib_per_s": size / MiB / elapsed, "peak_above_idle_mib": peak_rss_mib() - idle}


def fanout(count: int, how: str) -> dict[str, Any]:
    """``count`` x 64 KiB through the queue function, as the host delivers them: at host.json's
    concurrency (``how="host"``) or one at a time (``how="one"``)."""
    from bench.queue_host import FunctionWorker, QueueSettings, host_queues, listeners  # noqa: PLC0415
    from tests.support.worker_invoker import HostQueueMessage  # noqa: PLC0415

    host = _app_host()
    settings = QueueSettings.from_host_json()
    settings = settings if how == "host" else settings.one_by_one()
    container = seed([(f"/mnt/data/f{i}.bin", 64 * 1024) for i in range(count + 1)])
    warm, *files = container["files"]
    worker = FunctionWorker(settings.concurrency)
    try:
        # Clients and the container made first, in the worker, as an earlier invocation would have.
        warm_up = HostQueueMessage.made(message(container, warm).decode("utf-8"), message_id="warm-up")
        assert worker.invoke("persist_artifact", warm_up).ok
        _queue_directly(os.environ["ARTIFACTS_QUEUE"], [message(container, file) for file in files])
        listener = listeners(host.functions, host_queues(HOST_STORAGE), settings, worker,
                             only=("persist_artifact",))["persist_artifact"]
        before, app_before = _Snapshot.take(), worker.cpu_seconds()
        listener.start()
        _wait_for(lambda: listener.tally.succeeded + listener.tally.failed >= count, timeout=1200)
        after, app_after = _Snapshot.take(), worker.cpu_seconds()
        listener.stop()
    finally:
        worker.close()
    tally = listener.tally
    assert tally.failed == 0 and tally.succeeded == count
    elapsed = after.wall - before.wall
    return {
        "files_per_s": count / elapsed,
        "concurrency": settings.concurrency,
        "app_cpu_ms_per_file": (tally.user_seconds + tally.system_seconds) / count * 1000,
        "app_system_ms_per_file": tally.system_seconds / count * 1000,
        "app_switches_per_file": tally.switches / count,
        "invocation_ms": tally.invocation_seconds / count * 1000,
        "mean_in_flight": tally.invocation_seconds / elapsed,  # Little's law, over the whole measurement
        "app_process_cpu_ms_per_file": (app_after - app_before) / count * 1000,
        "host_cpu_ms_per_file": (after.cpu - before.cpu) / count * 1000,
        "servers_cpu_ms_per_file": {name: (after.servers[name] - cpu) / count * 1000
                                    for name, cpu in before.servers.items()},
        "per_file": _per_file(after.proxy, count),
    }


class _Snapshot:
    """The clocks, this process's CPU, the servers' CPU and the proxy's counts, at one moment."""

    def __init__(self, wall: float, cpu: float, servers: dict[str, float], proxy: dict[str, Any]) -> None:
        self.wall, self.cpu, self.servers, self.proxy = wall, cpu, servers, proxy

    @classmethod
    def take(cls) -> _Snapshot:
        proxy = _proxy("GET", "/counts")["routes"] if PROXY_CONTROL else {}
        servers = {name: _cpu_of(int(pid)) for name, pid in
                   (item.split(":") for item in os.environ.get("BENCH_SERVER_PIDS", "").split(",") if item)}
        if PROXY_CONTROL:
            _proxy("POST", "/reset")  # what follows is counted from zero
        return cls(time.perf_counter(), _cpu_seconds(), servers, proxy)


def _per_file(counts: dict[str, Any], files: int) -> dict[str, Any]:
    return {route: {"requests": c["requests"] / files, "connections": c["connections"],
                    "methods": {m: n / files for m, n in sorted(c["methods"].items())}}
            for route, c in counts.items()}


def _proxy(method: str, path: str) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    answer = httpx.request(method, f"{PROXY_CONTROL}{path}", timeout=30)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def _queue_directly(queue_name: str, bodies: list[bytes]) -> None:
    """Set-up: the messages a fan-out would send, queued around the proxy."""
    from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy  # noqa: PLC0415

    queue = QueueServiceClient.from_connection_string(DIRECT_STORAGE).get_queue_client(
        queue_name, message_encode_policy=TextBase64EncodePolicy()
    )
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda body: queue.send_message(body.decode("utf-8")), bodies))


def _wait_for(condition: Callable[[], bool], *, timeout: float, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout} s")
        time.sleep(every)  # polling a condition, with a deadline


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, children included."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def overhead() -> dict[str, Any]:
    """The per-message path without I/O: parse, runtime lookup, names and metadata."""
    from shared.runtime import get_runtime  # noqa: PLC0415
    from shared.storage.messages import ArtifactMessage  # noqa: PLC0415
    from shared.storage.naming import content_disposition, content_type_for, metadata_filename  # noqa: PLC0415

    get_runtime()
    body = message({"container_id": "cntr_1"}, {"file_id": "cfile_1", "path": "/mnt/data/銷售 圖表.png"})
    rounds = 20000
    start = time.perf_counter()
    for _ in range(rounds):
        get_runtime()
        parsed = ArtifactMessage.from_json(body)
        content_type_for(parsed.filename)
        content_disposition(parsed.filename)
        metadata_filename(parsed.filename)
    per_message = (time.perf_counter() - start) / rounds * 1e6
    start = time.perf_counter()
    for _ in range(rounds):
        get_runtime()
    per_lookup = (time.perf_counter() - start) / rounds * 1e6
    return {"us_per_message": per_message, "us_per_runtime_lookup": per_lookup}


def _app_host() -> Any:
    """The app under the tests' host stand-in (for its function metadata and HTTP calls), on
    queues of its own (a measurement never picks up another's messages)."""
    tag = uuid.uuid4().hex[:8]
    for name, prefix in (("ARTIFACTS_QUEUE", "bench-downloads"), ("ARTIFACTS_RUNS_QUEUE", "bench-runs"),
                         ("ARTIFACTS_EVENTS_QUEUE", "bench-events")):
        os.environ[name] = f"{prefix}-{tag}"
    from tests.support.host import FunctionsHost  # noqa: PLC0415

    return FunctionsHost(HOST_STORAGE)  # the worker loads function_app.py under these settings


def post_latency(count: int) -> dict[str, Any]:
    """POST /api/responses with background on: the caller's wait, per request (ms)."""
    host = _app_host()
    host.http("POST", "responses", body=b'{"input": "warm-up"}')  # connections and queues made
    times: list[float] = []
    _Snapshot.take()
    for _ in range(count):
        start = time.perf_counter()
        call = host.http("POST", "responses", body=json.dumps({"input": f"bench {uuid.uuid4().hex}"}).encode())
        times.append((time.perf_counter() - start) * 1000)
        assert call.response.status_code == 202
    after = _Snapshot.take()
    times.sort()
    return {
        "median_ms": times[len(times) // 2],
        "p95_ms": times[int(len(times) * 0.95) - 1],
        "per_post": _per_file(after.proxy, count),
    }


def end_to_event(files: int) -> dict[str, Any]:
    """A run of ``files`` x 64 KiB through every queue function at the host's concurrency: from
    the watcher's look that finds the run ended to its completion event on the queue."""
    import httpx  # noqa: PLC0415
    from azure.storage.queue import QueueServiceClient  # noqa: PLC0415

    from bench.queue_host import FunctionWorker, QueueSettings, host_queues, listeners  # noqa: PLC0415

    host = _app_host()  # answers the POST; the queue functions run in a worker process of their own
    prompt = f"bench {uuid.uuid4().hex}"
    spec = {"prompt": prompt, "files": [{"path": f"/mnt/data/f{i}.bin", "size": 64 * 1024} for i in range(files)]}
    httpx.post(f"{DIRECT_OPENAI}/_fake/scenarios", json=spec, headers=KEY, timeout=60).raise_for_status()
    events = QueueServiceClient.from_connection_string(DIRECT_STORAGE).get_queue_client(
        os.environ["ARTIFACTS_EVENTS_QUEUE"]
    )
    worker = FunctionWorker(QueueSettings.from_host_json().concurrency)
    running = listeners(host.functions, host_queues(HOST_STORAGE), QueueSettings.from_host_json(), worker)
    for listener in running.values():
        listener.start()
    try:
        _Snapshot.take()
        response_id = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode()).json()["response_id"]

        def event_sent() -> bool:
            with contextlib.suppress(ResourceNotFoundError):
                return bool(events.peek_messages(max_messages=1))
            return False

        _wait_for(event_sent, timeout=600, every=0.02)
        sent = time.monotonic()
    finally:
        for listener in running.values():
            listener.stop()
        worker.close()
    # The fake ends a background run at its first GET: the watcher's look that found it ended.
    counts = _proxy("GET", "/counts")["routes"]  # everything since the POST, the POST included
    looks = [at for at, route, method, path in _proxy("GET", "/log")["requests"]
             if route == "openai" and method == "GET" and path.endswith(f"/responses/{response_id}")]
    event = json.loads(base64.b64decode(events.peek_messages(max_messages=1)[0].content))["data"]  # a CloudEvent
    assert event["counts"]["persisted"] == files, event["counts"]
    return {"seconds": sent - looks[0], "looks": len(looks), "per_file": _per_file(counts, files),
            **_event_timings(response_id, looks[0])}


def _event_timings(response_id: str, ended: float) -> dict[str, float]:
    """From the proxy's log (one clock, requests as they arrive): run end -> the event's send, and
    the last artifact blob's write -> the event's send."""
    log = _proxy("GET", "/log")["requests"]
    artifacts = f"/{os.environ.get('ARTIFACTS_CONTAINER', 'artifacts')}/{response_id}/"
    events_queue = f"/{os.environ['ARTIFACTS_EVENTS_QUEUE']}/messages"
    blobs = [at for at, route, method, path in log if route == "blob" and method == "PUT" and artifacts in path]
    sent = [at for at, route, method, path in log if route == "queue" and method == "POST" and events_queue in path]
    return {"end_to_event": sent[0] - ended, "last_blob_to_event": sent[0] - max(blobs)}


def import_time(what: str) -> dict[str, Any]:
    code = {
        "deps": "import azure.functions, azure.storage.blob, httpx, tenacity",
        "app": "import function_app",
    }[what]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)
    return {"ms": (time.perf_counter() - start) * 1000}


def main() -> None:
    mode, *args = sys.argv[1:]
    handlers: dict[str, Any] = {
        "raw-download": lambda: raw_download(int(args[0])),
        "raw-upload": lambda: raw_upload(int(args[0])),
        "persist": lambda: persist(int(args[0])),
        "buffered": lambda: buffered(int(args[0])),
        "fanout": lambda: fanout(int(args[0]), args[1]),
        "overhead": overhead,
        "post-latency": lambda: post_latency(int(args[0])),
        "end-to-event": lambda: end_to_event(int(args[0])),
        "import": lambda: import_time(args[0]),
    }
    print(json.dumps(handlers[mode]()))


if __name__ == "__main__":
    main()
