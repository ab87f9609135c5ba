"""Smoke demo: one prompt through both functions, the way the host calls them.

Uses the Azurite on 127.0.0.1:10000 if one is running (``make start``), else a throwaway one;
uses AZURE_OPENAI_ENDPOINT if set, else the project's fake Azure OpenAI. Prints where each
file landed, with its size and SHA-256 checked against the blob's bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import uuid
from contextlib import ExitStack
from urllib.parse import unquote

from azure.storage.blob import BlobServiceClient

from shared.config import load_settings
from tests.fake_openai import FakeAzureOpenAI
from tests.support.azurite import port_open, start_azurite
from tests.support.host import FunctionsHost

DEFAULT_PROMPT = (
    "Make a bar chart of quarterly sales (Q1 120, Q2 135, Q3 160, Q4 190) as a PNG, "
    "and save the numbers as a CSV."
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    args = parser.parse_args()

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
            os.environ.update(AZURE_OPENAI_ENDPOINT=fake.endpoint, AZURE_OPENAI_API_KEY="demo-key")
            print(f"no AZURE_OPENAI_ENDPOINT: using the fake Azure OpenAI at {fake.endpoint}")
        os.environ.setdefault("AZURE_OPENAI_DEPLOYMENT", "gpt-4.1")
        os.environ.setdefault("ARTIFACTS_QUEUE", f"demo-{uuid.uuid4().hex[:8]}")
        return _run(args.prompt)


def _run(prompt: str) -> int:
    settings = load_settings()
    import function_app  # noqa: PLC0415 - loaded once the settings above are in place

    importlib.reload(function_app)
    connection = settings.storage.connection_string or ""
    host = FunctionsHost(function_app.app, connection)

    print(f"\nPOST /api/responses  {prompt[:70]!r}...")
    call = host.http("POST", "responses", body=_json({"input": prompt}))
    answer = call.json()
    print(f"-> {call.response.status_code}")
    if call.response.status_code != 202:
        print(answer)
        return 1
    print(f"   response {answer['response_id']} ({answer['status']}), {len(answer['artifacts'])} artifact(s) queued")
    print(f"   {answer['output_text'][:200]}")

    deliveries = host.deliver("persist_artifact")
    failed = [d for d in deliveries if d.error is not None]
    print(f"\nqueue function: {len(deliveries)} message(s), {len(failed)} failed")

    blobs = BlobServiceClient.from_connection_string(connection).get_container_client(settings.artifacts_container)
    for artifact in answer["artifacts"]:
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
    return 1 if failed else 0


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


if __name__ == "__main__":
    sys.exit(main())
