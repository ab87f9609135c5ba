"""Smoke demo: one prompt through the whole pipeline: through the running app when there is one, else
in this process, the way the host calls the functions (each invocation through the real Python
worker library: tests/support/worker_invoker.py).

**The running app**: when the app answers on http://localhost:7071 (``make start``: ``func start``
or the development host; ``--app URL`` for another), the prompt is POSTed to it, its status API is
followed until the completion event, and every file is fetched through its download link and
checked against the size and SHA-256 the status reports. The app's own settings, queues and Azure
OpenAI (or fake) are used; nothing is read from local.settings.json.

**In this process** (nothing answers, or ``--in-process``): settings come from the environment,
then from local.settings.json's ``Values`` (as Core Tools would set them; the environment wins),
except storage and the queue names: the demo always uses Azurite (the one on 127.0.0.1:10000 if
``make start`` runs it, else a throwaway one) and queues of its own, so a running app doesn't take
its messages. With no AZURE_OPENAI_ENDPOINT it uses the project's fake Azure OpenAI. Prints where
each file landed, with its size and SHA-256 checked against the blob's bytes; never a setting's
value. Bad settings are one line and exit status 2.
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
from typing import Any
from urllib.parse import unquote

import httpx
from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueServiceClient

from scripts import local_settings
from shared.errors import ConfigError
from shared.settings import load_settings
from tests.fake_openai import FakeAzureOpenAI, FakeImage, demo_scenario, png_bytes
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


RUNNING_APP = "http://localhost:7071"  # where `make start` serves the app (func start or the development host)
WAIT_SECONDS = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--app", help=f"the running app's base URL (default: {RUNNING_APP}, when it answers)")
    where.add_argument("--in-process", action="store_true", help="run the functions in this process, "
                       "even when an app is running")
    args = parser.parse_args(argv)

    if not args.in_process:
        base = (args.app or RUNNING_APP).rstrip("/")
        if running_app(base):
            print(f"the app answers at {base}: the prompt goes through it (its settings, queues and Azure OpenAI)")
            return through_app(base, args.prompt)
        if args.app:
            print(f"make demo: no app answers at {base}", file=sys.stderr)
            return 2
    try:
        taken = local_settings.apply(local_settings.read_values(), os.environ, skip=DEMO_OWNS)
        check_settings()
    except (local_settings.LocalSettingsError, ConfigError) as error:
        print(f"make demo: {error}", file=sys.stderr)
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
            # A background run that stays in progress for a few polls, as a real one does, and that
            # also generates an image (the image_generation tool, with its deployment's header).
            scenario = replace(demo_scenario(), polls_before_done=3)
            scenario.images.append(FakeImage(png_bytes(64, 48)))
            fake.register(args.prompt, scenario)
            os.environ.update(AZURE_OPENAI_ENDPOINT=fake.endpoint, AZURE_OPENAI_API_KEY="demo-key")
            os.environ.setdefault("AZURE_OPENAI_IMAGE_DEPLOYMENT", "gpt-image-demo")
            print(f"no AZURE_OPENAI_ENDPOINT: using the fake Azure OpenAI at {fake.endpoint}")
        os.environ.setdefault("AZURE_OPENAI_DEPLOYMENT", "gpt-5.6-terra")
        demo = uuid.uuid4().hex[:8]
        os.environ.setdefault("ARTIFACTS_QUEUE", f"demo-{demo}")
        os.environ.setdefault("ARTIFACTS_RUNS_QUEUE", f"demo-runs-{demo}")
        os.environ.setdefault("ARTIFACTS_EVENTS_QUEUE", f"demo-events-{demo}")
        os.environ.setdefault("ARTIFACTS_INPUT_CONTAINER", f"demo-inputs-{demo}")
        os.environ.setdefault("ARTIFACTS_POLL_MIN_SECONDS", "1")
        os.environ.setdefault("ARTIFACTS_POLL_MAX_SECONDS", "2")
        return _run(args.prompt)


def check_settings() -> None:
    """The settings as the in-process demo will run with them, checked before anything starts:
    ConfigError (one line naming each problem) when the app would refuse them."""
    planned = dict(os.environ)
    planned.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    if not planned.get("AZURE_OPENAI_ENDPOINT"):  # the fake will be started, on loopback, with a key
        planned.update(AZURE_OPENAI_ENDPOINT="http://127.0.0.1:8089", AZURE_OPENAI_API_KEY="demo-key")
    planned.setdefault("AZURE_OPENAI_DEPLOYMENT", "gpt-5.6-terra")
    settings = load_settings(planned)
    for connection in {settings.storage.connection_string, settings.queue_storage.connection_string} - {None}:
        try:
            QueueServiceClient.from_connection_string(str(connection))
        except ValueError:
            raise ConfigError(["the storage connection string (AzureWebJobsStorage or ARTIFACTS_STORAGE_CONNECTION) "
                               "is malformed"]) from None


def running_app(base: str) -> bool:
    """Whether this app answers at ``base``: a JSON answer from its status route (an unknown id's 404)."""
    try:
        answer = httpx.get(f"{base}/api/responses/demo_probe", timeout=5)
        document = answer.json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(document, dict) and ("error" in document or "response_id" in document)


def through_app(base: str, prompt: str) -> int:
    """POST the prompt to the running app, follow its status API to the event, fetch every file
    through its download link and check it against the status's size and SHA-256."""
    with httpx.Client(timeout=60) as http:
        print(f"\nPOST {base}/api/responses  {prompt[:70]!r}...")
        began = time.monotonic()
        answer = http.post(f"{base}/api/responses", json={"input": prompt})
        body = _json_of(answer)
        print(f"-> {answer.status_code} in {(time.monotonic() - began) * 1000:.0f} ms: {body}")
        if answer.status_code != 202:
            return 1
        print("\nthe app's run watcher follows the run:")
        seen = ""
        while True:
            progress = _json_of(http.get(str(body["status_url"])))
            line = f"   {progress['phase']:<10} model status {progress['status']}, files {progress['counts']}"
            if line != seen:
                seen = line
                print(f"{line}  (+{time.monotonic() - began:.1f} s)")
            if progress.get("event_id"):
                break
            if time.monotonic() - began > WAIT_SECONDS:
                print(f"no completion event after {WAIT_SECONDS} s", file=sys.stderr)
                return 1
            time.sleep(1)
        print(f"   {str(progress.get('output_text') or '')[:200]}")
        verified = all([_fetch(http, artifact) for artifact in progress["artifacts"]])
        print(f"\ncompletion event {progress['event_id']} sent on the app's events queue")
        return 0 if verified else 1


def _fetch(http: httpx.Client, artifact: dict[str, Any]) -> bool:
    if artifact["state"] != "persisted":
        print(f"  {artifact['filename']}: {artifact['state']} {artifact.get('code', '')} {artifact.get('reason', '')}")
        return False
    if not artifact.get("url"):
        print(f"  {artifact['blob_name']}: persisted, {artifact['size']} bytes (no download link: a SAS-only "
              "connection string)")
        return True
    data = http.get(artifact["url"]).content
    verified = bool(hashlib.sha256(data).hexdigest() == artifact["sha256"] and len(data) == artifact["size"])
    print(f"  {artifact['blob_name']}\n      {len(data)} bytes through its download link, sha256 "
          f"{artifact['sha256'][:16]}... {'verified' if verified else 'MISMATCH'}")
    return verified


def _json_of(answer: httpx.Response) -> dict[str, Any]:
    try:
        document = answer.json()
    except ValueError:
        document = None
    return document if isinstance(document, dict) else {"status": answer.status_code, "body": answer.text[:300]}


def _run(prompt: str) -> int:
    settings = load_settings()
    connection = settings.storage.connection_string or ""
    host = FunctionsHost(connection)  # the worker loads function_app.py once the settings above are in place

    body: dict[str, Any] = {"input": prompt}
    if settings.input_container:
        # A file in from Blob: streamed into Azure OpenAI's files API, mounted for the code interpreter.
        inputs = BlobServiceClient.from_connection_string(connection).get_container_client(settings.input_container)
        if not inputs.exists():
            inputs.create_container()
        inputs.upload_blob("sales.csv", DEMO_INPUT, overwrite=True, content_settings=ContentSettings("text/csv"))
        body["input_blobs"] = ["sales.csv"]
        print(f"input blob {settings.input_container}/sales.csv ({len(DEMO_INPUT)} bytes) named in input_blobs")
    if settings.image_deployment:
        body["image_generation"] = True  # a generated image too: stored like a container file
        print(f"image_generation on (deployment {settings.image_deployment})")
    print(f"\nPOST /api/responses  {prompt[:70]!r}...")
    began = time.monotonic()
    call = host.http("POST", "responses", body=_json(body))
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
    for entry in final.get("inputs", []):
        print(f"  input {entry['name']}: uploaded as {entry['file_id']} ({entry['bytes']} bytes), "
              f"{'deleted after the run' if entry['deleted'] else 'NOT deleted'}")

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
    for text in event_texts:  # a CloudEvent (structured JSON): its data is the run's outcome
        envelope = json.loads(text)
        print(f"   CloudEvent {envelope['type']} id {envelope['id']} subject {envelope['subject']} "
              f"source {envelope['source']}")
        print(f"   data {json.dumps(envelope['data'])[:400]}...")
    return 0 if len(event_texts) == 1 else 1


DEMO_INPUT = b"month,sales\njan,120\nfeb,135\nmar,160\n"


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


if __name__ == "__main__":
    sys.exit(main())
