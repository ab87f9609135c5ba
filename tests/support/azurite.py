"""Start a throwaway Azurite (the Azure Storage emulator) on free loopback ports."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
# Azurite's published development key: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_command() -> str:
    """AZURITE_BIN, else the project's node_modules, else whatever is on PATH."""
    for candidate in (os.environ.get("AZURITE_BIN"), str(ROOT / "node_modules" / ".bin" / "azurite")):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("azurite")
    if not found:
        raise RuntimeError("Azurite is not installed: run `npm install` in the project root")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return loopback_connection_string(self.blob_port, self.queue_port, self.table_port)

    def refused_connection_string(self) -> str:
        """The same account with a key Storage refuses (403, as a missing role assignment would)."""
        return self.connection_string.replace(ACCOUNT_KEY, base64.b64encode(b"not the key").decode())

    def stop(self) -> None:
        stop_process(self.process)


def loopback_connection_string(blob_port: int, queue_port: int, table_port: int) -> str:
    """Azurite's well-known account at these loopback ports (Azurite's own, or a proxy's in front)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{ACCOUNT};"
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Ask a child process to end; kill it if it has not within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_azurite(
    location: Path | None = None, ports: tuple[int, int, int] | None = None, extra: Sequence[str] = ()
) -> Azurite:
    """Start Azurite (with ``extra`` options) and return once all three services accept connections."""
    blob, queue, table = ports or (free_port(), free_port(), free_port())
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    process = subprocess.Popen(
        [
            azurite_command(),
            "--silent",
            "--skipApiVersionCheck",  # the newest SDKs send versions Azurite does not know yet
            "--disableTelemetry",
            "--blobHost", "127.0.0.1", "--blobPort", str(blob),
            "--queueHost", "127.0.0.1", "--queuePort", str(queue),
            "--tableHost", "127.0.0.1", "--tablePort", str(table),
            *storage,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    azurite = Azurite(process, blob, queue, table)
    deadline = time.monotonic() + 60
    for port in (blob, queue, table):
        while not port_open(port):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"Azurite exited early: {error.strip()[:2000]}")
            if time.monotonic() > deadline:
                azurite.stop()
                raise RuntimeError("Azurite did not start within 60 s")
            time.sleep(0.05)  # polling for readiness, with a deadline
    return azurite


def port_open(port: int) -> bool:
    """Whether something accepts connections on this loopback port."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
