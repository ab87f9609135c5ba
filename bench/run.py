"""Benchmarks: memory, throughput, fan-out at cloud latency, requests and CPU per file, the durable
pipeline end to end, per-message overhead and cold start.

    .venv/bin/python -m bench.run [--repeat 3] [--delay-ms 20] [--quick] [--only fanout]

Starts its own Azurites (one on disk for large files, one in memory behind the proxy), the fake
Azure OpenAI and the latency proxy (bench/latency_proxy.py), each in its own process so the
measured process holds only the app (and the host's stand-in, bench/queue_host.py). Fan-out and
the pipeline run behind the proxy, with its delay off and on; requests are counted there, per
upstream. Each figure runs ``--repeat`` times in a fresh
interpreter; the medians are printed and written, with the machine and its load, to
bench/RESULTS.md. Timings are measured here and never asserted in tests; the tests check the same
paths for correctness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.azurite import ACCOUNT, Azurite, free_port, port_open, start_azurite

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    note: str = ""


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def child(mode: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter, so its RSS is its own."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.worker", mode, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.worker {mode} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_fake(api_key: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        # Pages of 100, as the real service serves them (the fake's default of 2 exercises paging in tests).
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--api-key", api_key, "--page-size", "100"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not port_open(port):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the fake did not start")
        time.sleep(0.05)  # polling for readiness, with a deadline
    return process, endpoint


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def start_proxy(upstreams: dict[str, int]) -> tuple[subprocess.Popen[str], dict[str, int]]:
    routes = [arg for name, port in upstreams.items() for arg in ("--route", f"{name}=127.0.0.1:{port}")]
    process = subprocess.Popen([sys.executable, "-m", "bench.latency_proxy", *routes, "--delay-ms", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ports: dict[str, int] = json.loads(process.stdout.readline())
    return process, ports


@dataclass
class BehindProxy:
    """An Azurite (blobs in memory) and the fake Azure OpenAI, each behind the latency proxy."""

    remote: Azurite
    fake: subprocess.Popen[str]
    endpoint: str  # the fake's own address, not through the proxy
    proxy: subprocess.Popen[str]
    ports: dict[str, int]  # the proxy's port for each upstream, and its "control" port

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.ports['control']}"


def start_behind_proxy(running: contextlib.ExitStack) -> BehindProxy:
    """Start an Azurite in memory, the fake and the latency proxy (its delay off) in front of both;
    ``running`` stops each of them."""
    remote = start_azurite()
    running.callback(remote.stop)
    fake, endpoint = start_fake("bench-key")
    running.callback(_stop, fake)
    proxy, ports = start_proxy({"blob": remote.blob_port, "queue": remote.queue_port,
                                "host-queue": remote.queue_port, "openai": int(endpoint.rsplit(":", 1)[1])})
    running.callback(_stop, proxy)
    return BehindProxy(remote, fake, endpoint, proxy, ports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--fanout-files", type=int, default=500)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="the latency proxy's delay when on")
    parser.add_argument("--quick", action="store_true", help="one run each, 100 files, 64 MiB: a first look")
    parser.add_argument("--only", choices=("files", "fanout", "pipeline", "other"), action="append",
                        help="only these groups of figures (repeatable)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.large_mib, args.fanout_files = 1, 64, 100
    groups = set(args.only or ("files", "fanout", "pipeline", "other"))
    load_before = os.getloadavg()
    loads = [load_before[0]]  # the 1-minute load as each group of figures ends
    started = time.monotonic()

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as location, contextlib.ExitStack() as running:
        # Large files go to an Azurite on disk, as Storage keeps them; behind the proxy, Azurite
        # stands for a remote service and keeps its blobs in memory: its own disk work would only
        # take CPU from the app on the cores they share.
        on_disk = start_azurite(Path(location))
        running.callback(on_disk.stop)
        servers = start_behind_proxy(running)
        remote, ports = servers.remote, servers.ports
        direct = {
            **os.environ,
            "AZURE_OPENAI_ENDPOINT": servers.endpoint,
            "AZURE_OPENAI_API_KEY": "bench-key",
            "AZURE_OPENAI_DEPLOYMENT": "bench",
            "AzureWebJobsStorage": on_disk.connection_string,
            "ARTIFACTS_CONTAINER": "bench-artifacts",
            "ARTIFACTS_STATUS_CONTAINER": "bench-status",
            "PYTHONPATH": str(ROOT),
        }
        proxied = {
            **direct,
            "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{ports['openai']}",
            "AzureWebJobsStorage": _through(remote.connection_string, ports["blob"], ports["queue"]),
            "BENCH_HOST_STORAGE": _through(remote.connection_string, ports["blob"], ports["host-queue"]),
            "BENCH_DIRECT_STORAGE": remote.connection_string,
            "BENCH_DIRECT_OPENAI": servers.endpoint,
            "BENCH_PROXY_CONTROL": servers.control,
            "BENCH_SERVER_PIDS": f"azurite:{remote.process.pid},fake:{servers.fake.pid},proxy:{servers.proxy.pid}",
        }

        def delay(ms: float) -> None:
            httpx.put(f"{servers.control}/delay", params={"ms": str(ms)}, timeout=10).raise_for_status()

        if "files" in groups:
            rows += file_rows(direct, args)
        on_disk.stop()  # its own housekeeping would take CPU from what follows
        loads.append(os.getloadavg()[0])
        if "fanout" in groups:
            for ms in (0.0, args.delay_ms):
                delay(ms)
                rows += fanout_rows(proxied, args, ms)
                loads.append(os.getloadavg()[0])
        if "pipeline" in groups:
            delay(args.delay_ms)
            rows += pipeline_rows(proxied, args.repeat, args.delay_ms)
            loads.append(os.getloadavg()[0])
        if "other" in groups:
            rows += other_rows({**direct, "AzureWebJobsStorage": remote.connection_string}, args.repeat)

    minutes = (time.monotonic() - started) / 60
    table = render(rows, args, load_before=load_before, load_after=os.getloadavg(), minutes=minutes, loads=loads)
    print(table)
    args.output.write_text(table, encoding="utf-8")
    print(f"written to {args.output}")
    return 0


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)


def _through(connection_string: str, blob_port: int, queue_port: int) -> str:
    """The same account, its blob and queue endpoints on the proxy's ports."""
    moved = {"BlobEndpoint": blob_port, "QueueEndpoint": queue_port}
    parts = []
    for part in connection_string.split(";"):
        name = part.partition("=")[0]
        parts.append(f"{name}=http://127.0.0.1:{moved[name]}/{ACCOUNT}" if name in moved else part)
    return ";".join(parts)


def file_rows(env: dict[str, str], args: argparse.Namespace) -> list[Row]:
    """One large file: throughput and memory, on loopback (no proxy)."""
    size = str(args.large_mib * MiB)
    print(f"large file: {args.large_mib} MiB, {args.repeat} runs each", flush=True)
    results = {mode: [child(mode, env, size) for _ in range(args.repeat)]
               for mode in ("raw-download", "raw-upload", "persist", "buffered")}
    med = {mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for mode, runs in results.items()}
    raw_limit = min(med["raw-download"]["mib_per_s"], med["raw-upload"]["mib_per_s"])
    mib = args.large_mib
    return [
        Row("raw download, fake -> nowhere (httpx)", med["raw-download"]["mib_per_s"], "MiB/s"),
        Row("raw upload, memory -> Azurite (SDK, 4 MiB blocks, 4 parallel)", med["raw-upload"]["mib_per_s"], "MiB/s"),
        Row(f"persist {mib} MiB (streaming)", med["persist"]["mib_per_s"], "MiB/s",
            f"{med['persist']['mib_per_s'] / raw_limit:.0%} of the raw limit"),
        Row("persist (streaming): peak RSS above idle", med["persist"]["peak_above_idle_mib"], "MiB"),
        Row("buffered (whole file in memory): peak RSS above idle",
            med["buffered"]["peak_above_idle_mib"], "MiB", "for comparison"),
        Row("buffered: throughput", med["buffered"]["mib_per_s"], "MiB/s", "for comparison"),
    ]


def fanout_rows(env: dict[str, str], args: argparse.Namespace, delay_ms: float) -> list[Row]:
    """Files through the queue function, as the host delivers them: one by one, then at its concurrency."""
    files = str(args.fanout_files)
    latency = f"{delay_ms:g} ms"
    print(f"fan-out: {files} x 64 KiB at {latency}, {args.repeat} runs each", flush=True)
    one = [child("fanout", env, files, "one") for _ in range(args.repeat)]
    many = [child("fanout", env, files, "host") for _ in range(args.repeat)]

    def med(results: list[dict[str, Any]], key: str, server: str | None = None) -> float:
        return float(statistics.median(r[key] if server is None else r[key][server] for r in results))

    def requests(route: str) -> tuple[float, str]:
        count = float(statistics.median(r["per_file"].get(route, {}).get("requests", 0.0) for r in many))
        methods = many[len(many) // 2]["per_file"].get(route, {}).get("methods", {})
        return count, ", ".join(f"{name} {n:.2f}" for name, n in methods.items())

    one_rate, rate = med(one, "files_per_s"), med(many, "files_per_s")
    concurrency = many[0]["concurrency"]
    rows = [
        Row(f"fan-out at {latency}: {files} x 64 KiB, one by one", one_rate, "files/s", "through the queue function"),
        Row(f"fan-out at {latency}: {files} x 64 KiB, host.json concurrency (up to {concurrency})", rate, "files/s",
            f"**{rate / one_rate:.1f}x** one by one"),
        Row(f"fan-out at {latency}: invocations running, on average", med(many, "mean_in_flight"), "",
            f"each {med(many, 'invocation_ms'):.0f} ms (one by one: {med(one, 'invocation_ms'):.0f} ms)"),
    ]
    for route, label in (("blob", "Storage blob (the app)"), ("queue", "Storage queue (the app)"),
                         ("openai", "Azure OpenAI (the app)"), ("host-queue", "Storage queue (the host: get, delete)")):
        count, methods = requests(route)
        rows.append(Row(f"requests per file at {latency}: {label}", count, "requests", methods))
    rows += [
        Row(f"app CPU per file at {latency}, host.json concurrency", med(many, "app_cpu_ms_per_file"), "ms",
            f"its invocations' threads; of which kernel {med(many, 'app_system_ms_per_file'):.2f} ms, "
            f"{med(many, 'app_switches_per_file'):.0f} context switches per file"),
        Row(f"app CPU per file at {latency}, one by one", med(one, "app_cpu_ms_per_file"), "ms",
            f"of which kernel {med(one, 'app_system_ms_per_file'):.2f} ms, "
            f"{med(one, 'app_switches_per_file'):.0f} context switches per file"),
        Row(f"app worker process CPU per file at {latency}", med(many, "app_process_cpu_ms_per_file"), "ms",
            "the invocations, and the worker's pipe to the host"),
        Row(f"host stand-in CPU per file at {latency}", med(many, "host_cpu_ms_per_file"), "ms",
            "its queue requests: the Functions host's work, not the app's"),
        Row(f"Azurite CPU per file at {latency}", med(many, "servers_cpu_ms_per_file", "azurite"), "ms"),
        Row(f"fake Azure OpenAI CPU per file at {latency}", med(many, "servers_cpu_ms_per_file", "fake"), "ms"),
        Row(f"latency proxy CPU per file at {latency}", med(many, "servers_cpu_ms_per_file", "proxy"), "ms"),
    ]
    return rows


def other_rows(env: dict[str, str], repeat: int) -> list[Row]:
    overhead = [child("overhead", env) for _ in range(repeat)]
    deps = median_of(max(repeat, 5), lambda: child("import", env, "deps")["ms"])
    app = median_of(max(repeat, 5), lambda: child("import", env, "app")["ms"])
    return [
        Row("per message, without I/O (parse, runtime lookup, names, metadata)",
            statistics.median(r["us_per_message"] for r in overhead), "µs"),
        Row("runtime lookup (clients reused)", statistics.median(r["us_per_runtime_lookup"] for r in overhead), "µs"),
        Row("cold start: import dependencies alone", deps, "ms"),
        Row("cold start: import function_app", app, "ms", f"+{app - deps:.0f} ms for the app itself"),
    ]


def pipeline_rows(env: dict[str, str], repeat: int, delay_ms: float) -> list[Row]:
    """The durable pipeline at cloud latency: the POST's answer time, polls per run, and run end -> event."""
    from shared.pipeline.watcher import poll_delay  # noqa: PLC0415
    from shared.settings import load_settings  # noqa: PLC0415

    latency = f"{delay_ms:g} ms"
    print(f"pipeline at {latency}, {repeat} runs each", flush=True)
    posts = [child("post-latency", env, "50") for _ in range(repeat)]
    per_post = posts[len(posts) // 2]["per_post"]
    requests = ", ".join(f"{route} {c['requests']:.1f}" for route, c in per_post.items() if c["requests"])
    rows = [
        Row(f"POST /api/responses at {latency}, background on: answer time (median of 50)",
            statistics.median(r["median_ms"] for r in posts), "ms", f"requests per POST: {requests}"),
        Row(f"POST /api/responses at {latency}, background on: answer time (p95 of 50)",
            statistics.median(r["p95_ms"] for r in posts), "ms"),
    ]
    # Polls follow the schedule, not the machine: counted with the app's own schedule function.
    settings = load_settings(env)
    elapsed, looks = 0, 0
    while elapsed < 600:
        looks += 1
        elapsed += poll_delay(settings, looks)
    rows.append(Row("watcher looks at a 10-minute run (default schedule 2 s doubling to 30 s)", looks, "GETs"))
    for files in (1, 50, 500):
        runs = [child("end-to-event", env, str(files)) for _ in range(repeat)]
        rows.append(Row(f"run ended -> completion event at {latency}, {files} x 64 KiB",
                        statistics.median(r["seconds"] for r in runs), "s",
                        "from the watcher's look that finds it ended; default schedule, host.json concurrency"))
    whole = runs[len(runs) // 2]["per_file"]  # the 500-file run: the whole pipeline's requests, per file
    for route, label in (("blob", "Storage blob (the app)"), ("queue", "Storage queue (the app)"),
                         ("openai", "Azure OpenAI (the app)"), ("host-queue", "Storage queue (the host)")):
        methods = ", ".join(f"{name} {n:.2f}" for name, n in whole[route]["methods"].items())
        rows.append(Row(f"a 500-file run end to end at {latency}, requests per file: {label}",
                        whole[route]["requests"], "requests", methods))
    return rows


def render(rows: list[Row], args: argparse.Namespace, *, load_before: tuple[float, float, float],
           load_after: tuple[float, float, float], minutes: float, loads: list[float]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Loopback; Azurite (on disk for large files, in memory behind the proxy), the "
        "fake Azure OpenAI and the latency proxy in their own processes.",
        f"Medians of {args.repeat} runs (imports: of at least 5). Command: `make bench` "
        f"(`.venv/bin/python -m bench.run`); took {minutes:.1f} min.",
        f"Load average (1, 5, 15 min) before: {_load(load_before)}; after: {_load(load_after)}; 1-minute load "
        f"as each group ended: {', '.join(f'{load:.2f}' for load in loads)} ({os.cpu_count()} cores, shared: "
        "what else ran is in docs/development.md's performance section).",
        f"Latency: the proxy adds {args.delay_ms:g} ms to every request and every new connection "
        "(\"at 0 ms\": the same path, no delay).",
        "",
        "| figure | median | unit | note |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {r.figure} | {r.value:,.{2 if abs(r.value) < 10 else 1}f} | {r.unit} | {r.note} |" for r in rows]
    return "\n".join(lines) + "\n"


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


if __name__ == "__main__":
    sys.exit(main())
