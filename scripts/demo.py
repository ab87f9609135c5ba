"""Smoke demo: one prompt through the whole pipeline, the way the host calls the functions (each
invocation goes through the real Python worker library: tests/support/worker_invoker.py).

Settings come from the environment, then from local.settings.json's ``Values`` (as Core Tools
would set them; the environment wins), except storage and the queue names: the demo always uses
Azurite (the one on 127.0.0.1:10000 if ``make start`` runs it, else a throwaway one) and queues of
its own, so a running ``func start`` doesn't take its messages. With no AZURE_OPENAI_ENDPOINT
it uses the project's fake Azure OpenAI. Prints where each file landed, with its size and SHA-256
checked against the blob's bytes; never a setting's value.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import replace
from urllib.parse import unquote

from azure.storage.blob import BlobServiceClient

from scripts import local_settings
from shared.settings import load_settings
from tests.fake_openai import FakeAzureOpenAI, demo_scenario
from tests.support.azurite import port_open, start_azurite
from tests.support.host import FunctionsHost

# Settings the demo sets itself, whatever local.settings.json says (a trailing "__" covers a prefix).
DEMO_OWNS = (
    "AzureWebJobsStorage", "AzureWebJobsStorage__", "ARTIFACTS_STORAGE_CONNECTION",
    "ARTIFACTS_QUEUE", "ARTIFACTS_RUNS_QUEUE", "ARTIFACTS_EVENTS_QUEUE",
)
DEFAULT_PROMPT = (
    "Make a bar chart of quarterly sales (Q1 120, Q2 135, Q3 160, Q4 190) as a PNG, "
    "and save the numbers as a CSV."
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    args = parser.parse_args()

    try:
        taken = local_settings.apply(local_settings.read_values(), os.environ, skip=DEMO_OWNS)
    except local_settings.LocalSettingsError as error:
        print(f"local.settings.json: {error}", file=sys.stderr)
        return 2
    print(local_settings.describe(taken))

    with ExitStack() as stack:
        if not port_open(10000):
            azurite = start_azurite()
            stack.callback(azurite.stop)
            os.environ["AzureWebJobsStorage"] = azurite.connection_string  # noqa: SIM112 - the host's own name
            print(f"started a throwaway Azurite (blob port {azurite.blob_port})")
        else:
            os.environ.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
            print("using the Azurite already running on 127.0.0.1:10000")
        if not os.environ.get("AZURE_OPENAI_ENDPOINT"):
            fake = FakeAzureOpenAI(api_key="demo-key").start()
            stack.callback(fake.stop)
            # A background run that stays in progress for a few polls, as a real one does.
            fake.register(args.prompt, replace(demo_scenario(), polls_before_done=3))
            os.environ.update(AZURE_OPENAI_ENDPOINT=fake.endpoint, AZURE_OPENAI_API_KEY="demo-key")
            print(f"no AZURE_OPENAI_ENDPOINT: using the fake Azure OpenAI at {fake.endpoint}")
        os.environ.setdefault("AZURE_OPENAI_DEPLOYMENT", "gpt-5.6-terra")
        demo = uuid.uuid4().hex[:8]
        os.environ.setdefault("ARTIFACTS_QUEUE", f"demo-{demo}")
        os.environ.setdefault("ARTIFACTS_RUNS_QUEUE", f"demo-runs-{demo}")
        os.environ.setdefault("ARTIFACTS_EVENTS_QUEUE", f"demo-events-{demo}")
        os.environ.setdefault("ARTIFACTS_POLL_MIN_SECONDS", "1")
        os.environ.setdefault("ARTIFACTS_POLL_MAX_SECONDS", "2")
        return _run(args.prompt)


def _run(prompt: str) -> int:
    settings = load_settings()
    connection = settings.storage.connection_string or ""
    host = FunctionsHost(connection)  # the worker loads function_app.py once the settings above are in place

    print(f"\nPOST /api/responses  {prompt[:70]!r}...")
    began = time.monotonic()
    call = host.http("POST", "responses", body=_json({"input": prompt}))
    answer = call.json()
    print(f"-> {call.response.status_code} in {(time.monotonic() - began) * 1000:.0f} ms: {answer}")
    if call.response.status_code != 202:
        return 1
    response_id = answer["response_id"]

    print("\nthe run watcher follows the run (queue messages with visibility delays):")
    seen: list[str] = []

    def event_sent() -> bool:
        progress = host.http("GET", f"responses/{response_id}").json()
        line = f"   {progress['phase']:<10} model status {progress['status']}, files {progress['counts']}"
        if not seen or seen[-1] != line:
            seen.append(line)
            print(f"{line}  (+{time.monotonic() - began:.1f} s)")
        return progress["event_id"] is not None

    host.run_until(event_sent, timeout=300)
    final = host.http("GET", f"responses/{response_id}").json()
    print(f"   {final['output_text'][:200]}")

    blobs = BlobServiceClient.from_connection_string(connection).get_container_client(settings.artifacts_container)
    for artifact in final["artifacts"]:
        if artifact["state"] != "persisted":
            print(f"  {artifact['filename']}: {artifact['state']} {artifact.get('reason', '')}")
            return 1
        blob = blobs.get_blob_client(artifact["blob_name"])
        properties = blob.get_blob_properties()
        data = blob.download_blob().readall()
        metadata = properties.metadata
        verified = hashlib.sha256(data).hexdigest() == metadata["sha256"] and str(len(data)) == metadata["size"]
        print(
            f"  {settings.artifacts_container}/{artifact['blob_name']}\n"
            f"      {len(data)} bytes, {properties.content_settings.content_type}, "
            f"sha256 {metadata['sha256'][:16]}... {'verified' if verified else 'MISMATCH'}, "
            f"filename {unquote(metadata['filename'])!r}"
        )
        if not verified:
            return 1

    event_texts = host.messages(settings.queues.events)
    print(f"\ncompletion event on queue {settings.queues.events!r}:")
    for text in event_texts:
        print(f"   {text[:400]}{'...' if len(text) > 400 else ''}")
    return 0 if len(event_texts) == 1 else 1


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


if __name__ == "__main__":
    sys.exit(main())
