"""A token credential for tests: hands out the token the fake accepts and records the scopes asked for."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken


class RecordingCredential:
    """A TokenCredential that hands out the token the fake accepts and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("test-token", int(time.time()) + 3600)
