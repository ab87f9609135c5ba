"""Benchmarks: memory, throughput, fan-out, per-message overhead and cold start.

    .venv/bin/python -m bench.run [--repeat 3] [--large-mib 1024]

Starts its own Azurite (on disk) and the fake Azure OpenAI (each in its own process, so the
measured process holds only the app), runs each figure ``--repeat`` times, prints a table of
medians and writes it, with the machine's description, to bench/RESULTS.md. Timings are
measured here and never asserted in tests; the tests check the same paths for correctness.
"""

from __future__ import annotations

import argparse
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

from tests.support.azurite import free_port, port_open, start_azurite

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
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--api-key", api_key],
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--fanout-files", type=int, default=200)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as location:
        azurite = start_azurite(Path(location))
        fake, endpoint = start_fake("bench-key")
        try:
            env = {
                **os.environ,
                "AZURE_OPENAI_ENDPOINT": endpoint,
                "AZURE_OPENAI_API_KEY": "bench-key",
                "AZURE_OPENAI_DEPLOYMENT": "bench",
                "AzureWebJobsStorage": azurite.connection_string,
                "ARTIFACTS_CONTAINER": "bench-artifacts",
                "PYTHONPATH": str(ROOT),
            }
            size = str(args.large_mib * MiB)
            print(f"large file: {args.large_mib} MiB, {args.repeat} runs each")

            results = {mode: [child(mode, env, size) for _ in range(args.repeat)]
                       for mode in ("raw-download", "raw-upload", "persist", "buffered")}
            med = {mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for mode, runs in results.items()}
            raw_limit = min(med["raw-download"]["mib_per_s"], med["raw-upload"]["mib_per_s"])
            rows += [
                Row("raw download, fake -> nowhere (httpx)", med["raw-download"]["mib_per_s"], "MiB/s"),
                Row("raw upload, memory -> Azurite (SDK, 4 MiB blocks, 4 parallel)",
                    med["raw-upload"]["mib_per_s"], "MiB/s"),
                Row("persist (streaming)", med["persist"]["mib_per_s"], "MiB/s",
                    f"{med['persist']['mib_per_s'] / raw_limit:.0%} of the raw limit"),
                Row("persist (streaming): peak RSS above idle", med["persist"]["peak_above_idle_mib"], "MiB"),
                Row("buffered (whole file in memory): peak RSS above idle",
                    med["buffered"]["peak_above_idle_mib"], "MiB", "for comparison"),
                Row("buffered: throughput", med["buffered"]["mib_per_s"], "MiB/s", "for comparison"),
            ]

            files = str(args.fanout_files)
            fan: dict[int, list[dict[str, Any]]] = {1: [], 24: []}
            servers_cpu: list[float] = []
            for workers in (1, 24):
                for _ in range(args.repeat):
                    before = _cpu_of(azurite.process.pid) + _cpu_of(fake.pid)
                    fan[workers].append(child("fanout", env, files, str(workers)))
                    if workers == 24:
                        used = _cpu_of(azurite.process.pid) + _cpu_of(fake.pid) - before
                        servers_cpu.append(used / int(files) * 1000)
            one = statistics.median(r["files_per_s"] for r in fan[1])
            many = statistics.median(r["files_per_s"] for r in fan[24])
            app_cpu = statistics.median(r["app_cpu_ms_per_file"] for r in fan[24])
            # Includes the seeding of the fake, so it is an upper bound for the servers' share.
            server_cpu = statistics.median(servers_cpu)
            ceiling = (os.cpu_count() or 1) * 1000 / (app_cpu + server_cpu)
            rows += [
                Row(f"fan-out: {files} x 64 KiB, one by one", one, "files/s"),
                Row(f"fan-out: {files} x 64 KiB, 24 concurrent (batchSize 16 + newBatchThreshold 8)", many,
                    "files/s", f"{many / one:.1f}x one by one"),
                Row("fan-out: app CPU per file", app_cpu, "ms"),
                Row("fan-out: Azurite + fake CPU per file (upper bound)", server_cpu, "ms"),
                Row("fan-out: CPU ceiling on this machine", ceiling, "files/s",
                    "all cores busy: the app, Azurite and the fake share them"),
            ]

            overhead = [child("overhead", env) for _ in range(args.repeat)]
            rows.append(Row("per message, without I/O (parse, runtime lookup, names, metadata)",
                            statistics.median(r["us_per_message"] for r in overhead), "µs"))
            rows.append(Row("runtime lookup (clients reused)",
                            statistics.median(r["us_per_runtime_lookup"] for r in overhead), "µs"))

            rows += pipeline_rows(env, args.repeat)

            deps = median_of(max(args.repeat, 5), lambda: child("import", env, "deps")["ms"])
            app = median_of(max(args.repeat, 5), lambda: child("import", env, "app")["ms"])
            rows += [
                Row("cold start: import dependencies alone", deps, "ms"),
                Row("cold start: import function_app", app, "ms", f"+{app - deps:.0f} ms for the app itself"),
            ]
        finally:
            fake.terminate()
            fake.wait(timeout=10)
            azurite.stop()

    table = render(rows, args)
    print(table)
    args.output.write_text(table, encoding="utf-8")
    print(f"written to {args.output}")
    return 0


def pipeline_rows(env: dict[str, str], repeat: int) -> list[Row]:
    """The durable pipeline: the POST's answer time, polls per run, and run end -> event."""
    from shared.config import load_settings  # noqa: PLC0415
    from shared.watcher import poll_delay  # noqa: PLC0415

    run_env = {**env, "ARTIFACTS_STATUS_CONTAINER": "bench-status"}
    posts = [child("post-latency", run_env, "50") for _ in range(repeat)]
    rows = [
        Row("POST /api/responses, background on: answer time (median of 50)",
            statistics.median(r["median_ms"] for r in posts), "ms"),
        Row("POST /api/responses, background on: answer time (p95 of 50)",
            statistics.median(r["p95_ms"] for r in posts), "ms"),
    ]
    # Polls follow the schedule, not the machine: counted with the app's own schedule function.
    settings = load_settings(run_env)
    elapsed, looks = 0, 0
    while elapsed < 600:
        looks += 1
        elapsed += poll_delay(settings, looks)
    rows.append(Row("watcher looks at a 10-minute run (default schedule 2 s doubling to 30 s)", looks, "GETs"))
    for files in (1, 50, 500):
        seconds = statistics.median(child("end-to-event", run_env, str(files))["seconds"] for _ in range(repeat))
        rows.append(Row(f"run ended -> completion event, {files} x 64 KiB", seconds, "s",
                        "default schedule; 24 invocations in flight"))
    return rows


def render(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Loopback; Azurite (on disk) and the fake Azure OpenAI in their own processes.",
        f"Medians of {args.repeat} runs (imports: of at least 5). Command: `.venv/bin/python -m bench.run`.",
        "",
        "| figure | median | unit | note |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {r.figure} | {r.value:,.1f} | {r.unit} | {r.note} |" for r in rows]
    return "\n".join(lines) + "\n"


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, children included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
