"""How soon the completion event follows: run end -> event, and last blob -> event.

    .venv/bin/python -m bench.event_latency --label "after" [--repeat 3] [--files 1 50 500]

A run of N x 64 KiB goes through every queue function at host.json's concurrency (the worker's
``end-to-event``, the same path as bench/run.py's pipeline figures), with the latency proxy at
0 ms and at 20 ms. Both times are read from the proxy's log, one clock: from the watcher's GET
that finds the run ended, and from the last artifact blob's write, to the event's send. The
watcher's default schedule (checks 2 s after the fan-out, growing 1.5x to 30 s) and host.json's
``maxPollingInterval`` (2 s) apply. The section ``--label`` of bench/RESULTS-event-latency.md is
written (others are kept), so the same script measures the code before and after a change.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.run import ROOT, _through, child, machine, start_behind_proxy

OUTPUT = ROOT / "bench" / "RESULTS-event-latency.md"
TITLE = "# Event latency: run end -> event, last blob -> event"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="the section to write, e.g. 'after (commit)'")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, nargs="+", default=[1, 50, 500])
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.monotonic()
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-events-"), contextlib.ExitStack() as running:
        servers = start_behind_proxy(running)
        remote, ports = servers.remote, servers.ports
        env = {
            **os.environ,
            "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{ports['openai']}",
            "AZURE_OPENAI_API_KEY": "bench-key",
            "AZURE_OPENAI_DEPLOYMENT": "bench",
            "AzureWebJobsStorage": _through(remote.connection_string, ports["blob"], ports["queue"]),
            "ARTIFACTS_CONTAINER": "bench-artifacts",
            "ARTIFACTS_STATUS_CONTAINER": "bench-status",
            "PYTHONPATH": str(ROOT),
            "BENCH_HOST_STORAGE": _through(remote.connection_string, ports["blob"], ports["host-queue"]),
            "BENCH_DIRECT_STORAGE": remote.connection_string,
            "BENCH_DIRECT_OPENAI": servers.endpoint,
            "BENCH_PROXY_CONTROL": servers.control,
        }
        for name in ("ARTIFACTS_POLL_MIN_SECONDS", "ARTIFACTS_POLL_MAX_SECONDS"):
            env.pop(name, None)  # the default schedule
        for delay in args.delays_ms:
            httpx.put(f"{servers.control}/delay", params={"ms": str(delay)}, timeout=10).raise_for_status()
            for files in args.files:
                runs = [child("end-to-event", env, str(files)) for _ in range(args.repeat)]
                end = statistics.median(r["end_to_event"] for r in runs)
                last = statistics.median(r["last_blob_to_event"] for r in runs)
                spread = ", ".join(f"{r['last_blob_to_event']:.2f}" for r in runs)
                blob = statistics.median(r["per_file"]["blob"]["requests"] for r in runs)
                queue = statistics.median(r["per_file"]["queue"]["requests"] for r in runs)
                print(f"{args.label}: {delay:g} ms, {files} files: end->event {end:.2f} s, "
                      f"last blob->event {last:.2f} s", flush=True)
                lines.append(f"| {delay:g} ms | {files} | {end:.2f} | {last:.2f} | {spread} | {blob:.2f} | "
                             f"{queue:.2f} |")
    minutes = (time.monotonic() - started) / 60
    section = "\n".join([
        f"## {args.label}",
        "",
        f"Machine: {machine()}; load (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {', '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.repeat}; took {minutes:.1f} min.",
        "",
        "| latency | files x 64 KiB | run end -> event (s) | last blob -> event (s) | last blob -> event, each run | "
        "blob requests per file (app) | queue requests per file (app) |",
        "|---|---:|---:|---:|---|---:|---:|",
        *lines,
        "",
    ])
    write_section(args.output, args.label, section)
    print(f"written to {args.output}")
    return 0


def write_section(path: Path, label: str, section: str) -> None:
    """Replace the ``## label`` section of the results file (or add it), keeping the others."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"{TITLE}\n\n{(__doc__ or '').strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(label)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
