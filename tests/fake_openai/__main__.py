"""Run the fake by hand: ``python -m tests.fake_openai --port 8089 --api-key KEY``.

Every prompt gets the demo scenario (a PNG chart, a cited CSV, an uncited summary.md and
a user input file that must not be persisted). A ``background: true`` run answers
``queued`` and its final object on the first ``GET /openai/v1/responses/{id}``, and sends its
signed ``response.*`` webhook to every registered endpoint (plain http is accepted for loopback,
so ``func start`` can take them without a tunnel). Serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import threading

from tests.fake_openai.server import FakeAzureOpenAI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_openai", description=__doc__)
    parser.add_argument("--port", type=int, default=8089, help="loopback port (0 picks a free one)")
    parser.add_argument("--api-key", default="test-key", help="the key accepted in the api-key header")
    parser.add_argument(
        "--bearer-token",
        action="append",
        default=None,
        help="a bearer token to accept (repeatable; default: test-token)",
    )
    parser.add_argument("--page-size", type=int, default=2, help="container file list page size")
    args = parser.parse_args(argv)

    fake = FakeAzureOpenAI(
        api_key=args.api_key,
        bearer_tokens=args.bearer_token or ("test-token",),
        page_size=args.page_size,
        port=args.port,
    )
    with fake:
        # The key itself is not printed: it may be a real-looking secret pasted by hand.
        print(f"Fake Azure OpenAI listening on {fake.endpoint}", flush=True)
        print(f"  AZURE_OPENAI_ENDPOINT={fake.endpoint}", flush=True)
        print("  authenticate with 'api-key: <the --api-key value>' or 'Authorization: Bearer <token>'", flush=True)
        print("  every prompt gets the demo scenario; Ctrl-C stops", flush=True)
        print(
            "  webhooks to func start: python -m scripts.register_webhook --url http://127.0.0.1:7071"
            " --local-settings local.settings.json",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
