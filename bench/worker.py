"""One measurement, in its own interpreter; prints one JSON line. Driven by bench/run.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MiB = 1024 * 1024
KEY = {"api-key": os.environ.get("AZURE_OPENAI_API_KEY", "")}
STORAGE = os.environ.get("AzureWebJobsStorage", "")  # noqa: SIM112 - the host's own name


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def seed(files: list[tuple[str, int]]) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    answer = httpx.post(
        f"{os.environ['AZURE_OPENAI_ENDPOINT']}/_fake/containers",
        json={"files": [{"path": path, "size": size} for path, size in files]},
        headers=KEY,
        timeout=120,
    )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def message(container: dict[str, Any], file: dict[str, Any]) -> bytes:
    from shared.messages import ArtifactMessage  # noqa: PLC0415

    response_id = f"resp_{uuid.uuid4().hex}"
    name = file["path"].rsplit("/", 1)[1]
    return ArtifactMessage(
        response_id=response_id,
        container_id=container["container_id"],
        file_id=file["file_id"],
        filename=name,
        blob_name=f"{response_id}/{file['file_id']}/{name}",
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
    from shared.persist import persist_message  # noqa: PLC0415
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


def fanout(count: int, workers: int) -> dict[str, Any]:
    from shared.persist import persist_message  # noqa: PLC0415
    from shared.runtime import get_runtime  # noqa: PLC0415

    runtime = get_runtime()
    container = seed([(f"/mnt/data/f{i}.bin", 64 * 1024) for i in range(count)])
    bodies = [message(container, file) for file in container["files"]]
    persist_message(runtime, message(container, container["files"][0]))  # warm-up, not counted
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        stored = list(pool.map(lambda body: persist_message(runtime, body), bodies))
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    assert all(s is not None and s.size == 64 * 1024 for s in stored)
    return {"files_per_s": count / elapsed, "app_cpu_ms_per_file": cpu / count * 1000}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def overhead() -> dict[str, Any]:
    """The per-message path without I/O: parse, runtime lookup, names and metadata."""
    from shared.messages import ArtifactMessage  # noqa: PLC0415
    from shared.naming import content_disposition, content_type_for, metadata_filename  # noqa: PLC0415
    from shared.runtime import get_runtime  # noqa: PLC0415

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
    """The app under a host stand-in that moves messages through Azurite as the host does, on
    queues of its own (a measurement never picks up another's messages)."""
    tag = uuid.uuid4().hex[:8]
    for name, prefix in (("ARTIFACTS_QUEUE", "bench-downloads"), ("ARTIFACTS_RUNS_QUEUE", "bench-runs"),
                         ("ARTIFACTS_EVENTS_QUEUE", "bench-events")):
        os.environ[name] = f"{prefix}-{tag}"
    import function_app  # noqa: PLC0415
    from tests.support.host import FunctionsHost  # noqa: PLC0415

    return FunctionsHost(function_app.app, STORAGE)


def post_latency(count: int) -> dict[str, Any]:
    """POST /api/responses with background on: the caller's wait, per request (ms)."""
    host = _app_host()
    host.http("POST", "responses", body=b'{"input": "warm-up"}')  # connections and queues made
    times: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        call = host.http("POST", "responses", body=json.dumps({"input": f"bench {uuid.uuid4().hex}"}).encode())
        times.append((time.perf_counter() - start) * 1000)
        assert call.response.status_code == 202
    times.sort()
    return {"median_ms": times[len(times) // 2], "p95_ms": times[int(len(times) * 0.95) - 1]}


def end_to_event(files: int) -> dict[str, Any]:
    """From the run's end to its completion event, ``files`` x 64 KiB, the host's concurrency."""
    import httpx  # noqa: PLC0415

    host = _app_host()
    prompt = f"bench {uuid.uuid4().hex}"
    spec = {"prompt": prompt, "files": [{"path": f"/mnt/data/f{i}.bin", "size": 64 * 1024} for i in range(files)]}
    httpx.post(f"{os.environ['AZURE_OPENAI_ENDPOINT']}/_fake/scenarios", json=spec, headers=KEY, timeout=60)
    call = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode())
    response_id = call.json()["response_id"]
    # The fake's run ends at its first GET: the watcher's first look is the run's end.
    ended: list[float] = []

    def done() -> bool:
        progress = host.http("GET", f"responses/{response_id}").json()
        if not ended and progress["phase"] != "running":
            ended.append(time.perf_counter())
        return bool(progress["event_id"])

    host.run_until(done, timeout=600, workers=24)
    elapsed = time.perf_counter() - ended[0]
    events = host.messages(os.environ["ARTIFACTS_EVENTS_QUEUE"])
    assert len(events) == 1 and json.loads(events[0])["counts"]["persisted"] == files
    return {"seconds": elapsed}


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
        "fanout": lambda: fanout(int(args[0]), int(args[1])),
        "overhead": overhead,
        "post-latency": lambda: post_latency(int(args[0])),
        "end-to-event": lambda: end_to_event(int(args[0])),
        "import": lambda: import_time(args[0]),
    }
    print(json.dumps(handlers[mode]()))


if __name__ == "__main__":
    main()
