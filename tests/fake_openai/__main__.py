"""Run the fake by hand: ``python -m tests.fake_openai --port 8089 --api-key KEY [--scenario NAME]``.

By default every prompt gets the sales-chart run (a PNG chart, a cited CSV, an uncited summary.md
and a user input file that must not be persisted). ``--scenario`` gives every prompt another run
(``in-progress:5``, ``no-files``, ``failing-file``, ``expired``: see ``--help``), and a prompt that
holds ``fake:NAME`` gets that one. A ``background: true`` run answers ``queued``, then (for an
``in-progress`` one, during its polls) ``in_progress``, then its final object, and sends its signed
``response.*`` webhook to every registered endpoint (plain http is accepted for loopback, so the
local app can take them without a tunnel). Serves until Ctrl-C or SIGTERM, which end it quietly.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from types import FrameType

from tests.fake_openai import scenarios
from tests.fake_openai.server import FakeAzureOpenAI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_openai", description=__doc__.split("\n\n")[0],
        epilog="scenarios (--scenario NAME[:NUMBER], or fake:NAME[:NUMBER] in a prompt):\n" + scenarios.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8089, help="loopback port (0 picks a free one)")
    parser.add_argument("--api-key", default="test-key", help="the key accepted in the api-key header")
    parser.add_argument(
        "--bearer-token",
        action="append",
        default=None,
        help="a bearer token to accept (repeatable; default: test-token)",
    )
    parser.add_argument("--page-size", type=int, default=2, help="container file list page size")
    parser.add_argument("--scenario", default=scenarios.DEFAULT,
                        help=f"the run every prompt gets unless it names another (default: {scenarios.DEFAULT})")
    args = parser.parse_args(argv)
    try:
        scenarios.parse(args.scenario)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fake = FakeAzureOpenAI(
        api_key=args.api_key,
        bearer_tokens=args.bearer_token or ("test-token",),
        page_size=args.page_size,
        port=args.port,
        default_scenario=args.scenario,
    )
    try:
        fake.start()
    except OSError as error:
        taken = error.errno == errno.EADDRINUSE
        print(f"fake Azure OpenAI: port {args.port} is already in use: stop what listens there, or pick another "
              "port" if taken else f"fake Azure OpenAI: cannot listen on port {args.port}: {error.strerror}",
              file=sys.stderr)
        return 1
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, ask_to_stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job of a shell ignores it
        signal.signal(signal.SIGINT, ask_to_stop)
    try:
        # The key itself is not printed: it may be a real-looking secret pasted by hand.
        print(f"Fake Azure OpenAI listening on {fake.endpoint}", flush=True)
        print(f"  AZURE_OPENAI_ENDPOINT={fake.endpoint}", flush=True)
        print("  authenticate with 'api-key: <the --api-key value>' or 'Authorization: Bearer <token>'", flush=True)
        print(f"  every prompt gets the {args.scenario} run, unless it holds fake:NAME "
              f"({', '.join(scenarios.NAMES)}); Ctrl-C stops", flush=True)
        print(
            "  webhooks to the local app: python -m scripts.register_webhook --url http://127.0.0.1:7071"
            " --local-settings local.settings.json",
            flush=True,
        )
        while not stop.wait(0.5):  # woken by the handlers above
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
