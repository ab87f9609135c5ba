"""Download links, used over real HTTP against Azurite: what they grant, and what Storage refuses.

Every behaviour is checked both ways a link is signed: with the account key (Azurite's
connection string) and with a user delegation key (an Azurite that takes Entra-shaped tokens).
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from azure.core.pipeline import PipelineResponse
from azure.storage.blob import BlobServiceClient

from shared.clock import utc_now
from shared.errors import ConfigError
from shared.storage.links import (
    CLOCK_SKEW,
    KEY_REUSE,
    MAX_LIFETIME,
    REFRESH_MARGIN,
    DownloadLink,
    LinkSigner,
    link_signer,
)
from shared.storage.naming import content_disposition
from tests.support.azurite import ACCOUNT_KEY, Azurite
from tests.support.azurite_oauth import OBJECT_ID, EntraLikeCredential, OAuthAzurite, start_oauth_azurite

HOUR = timedelta(hours=1)
SIGNERS = ["account key", "user delegation"]


class KeyFetches:
    """Counts Get User Delegation Key calls that Storage answered, seen on the client's pipeline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, response: PipelineResponse[Any, Any]) -> None:
        if "comp=userdelegationkey" in response.http_request.url and response.http_response.status_code == 200:
            with self._lock:
                self.count += 1


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Place:
    """A container, a client that writes to it, and plain HTTP that uses its links."""

    kind: str
    service: BlobServiceClient
    container: str
    http: httpx.Client
    key_fetches: KeyFetches = field(default_factory=KeyFetches)

    def upload(self, data: bytes, name: str | None = None) -> str:
        blob_name = name or f"resp_{uuid.uuid4().hex}/cfile_{uuid.uuid4().hex}/data.bin"
        self.service.get_blob_client(self.container, blob_name).upload_blob(data)
        return blob_name

    def signer(self, lifetime: timedelta = HOUR, clock: Callable[[], datetime] = utc_now) -> LinkSigner:
        return link_signer(self.service, self.container, lifetime, clock=clock)

    def stored(self, blob_name: str) -> bytes:
        return self.service.get_blob_client(self.container, blob_name).download_blob().readall()


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthAzurite]:
    emulator = start_oauth_azurite(tmp_path_factory.mktemp("azurite-oauth"))
    yield emulator
    emulator.stop()


def _place(request: pytest.FixtureRequest, kind: str) -> Iterator[Place]:
    fetches = KeyFetches()
    if kind == "account key":
        azurite: Azurite = request.getfixturevalue("azurite")
        service = BlobServiceClient.from_connection_string(azurite.connection_string, raw_response_hook=fetches)
        http = httpx.Client()
    else:
        oauth: OAuthAzurite = request.getfixturevalue("oauth_azurite")
        service = BlobServiceClient(
            oauth.blob_url,
            credential=EntraLikeCredential(),
            connection_verify=str(oauth.certificate),
            raw_response_hook=fetches,
        )
        http = httpx.Client(verify=oauth.tls())
    container = f"links-{uuid.uuid4().hex[:12]}"
    service.create_container(container)
    with http:
        yield Place(kind, service, container, http, fetches)
    service.delete_container(container)


@pytest.fixture(params=SIGNERS)
def place(request: pytest.FixtureRequest) -> Iterator[Place]:
    yield from _place(request, request.param)


@pytest.fixture
def delegated(request: pytest.FixtureRequest) -> Iterator[Place]:
    yield from _place(request, "user delegation")


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {**query_of(url), **changes}
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="")))


def sas_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_link_downloads_the_blob_as_an_attachment(place: Place) -> None:
    data = b"\x89PNG\r\n" + bytes(range(256)) * 40
    blob_name = place.upload(data)
    clock = ManualClock(utc_now().replace(microsecond=123456))

    link = place.signer(clock=clock).sign(blob_name, "squares.png")

    response = place.http.get(link.url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-disposition"] == content_disposition("squares.png")
    query = query_of(link.url)
    assert query["sp"] == "r"
    assert parse_time(query["se"]) == link.expires_at == clock.now.replace(microsecond=0) + HOUR
    assert link.url.startswith(place.service.get_blob_client(place.container, blob_name).url + "?")
    if place.kind == "user delegation":
        assert query["skoid"] == OBJECT_ID
        assert query["spr"] == "https"  # the account is on HTTPS: the link works on nothing else
        assert place.key_fetches.count == 1
    else:
        assert "skoid" not in query
        assert place.key_fetches.count == 0


NAMES = [
    "销售图表.png",
    "naïve résumé 📈.pdf",
    'report"; filename="evil.exe',
    "back\\slash.txt",
    "line\r\nSet-Cookie: a=b.txt",
    "tab\there\x00\x7f.csv",
    "it's 100% ok;.txt",
]


@pytest.mark.parametrize("name", NAMES)
def test_any_file_name_gives_one_valid_header(place: Place, name: str) -> None:
    blob_name = place.upload(b"x")

    response = place.http.get(place.signer().sign(blob_name, name).url)

    assert response.status_code == 200
    header = response.headers["content-disposition"]
    assert header.isascii() and header.isprintable()  # nothing that could end or split the header
    parsed = Message()
    parsed["Content-Disposition"] = header
    # typeshed says str values; an RFC 2231/5987 parameter comes back as (charset, language, value)
    params: list[tuple[str, object]] = list(parsed.get_params(header="content-disposition") or [])
    assert len(params) == 3  # the name added no parameter of its own
    (disposition, _), (plain_key, fallback), (extended_key, extended) = params
    assert (disposition, plain_key, extended_key) == ("attachment", "filename", "filename")
    assert isinstance(fallback, str) and fallback.isascii() and fallback.isprintable()
    assert not set(fallback) & set('"\\')
    assert isinstance(extended, tuple) and extended[0] == "UTF-8"
    # RFC 5987's filename* gives the exact name
    assert collapse_rfc2231_value(cast(tuple[str, str, str], extended)) == name


def _flip_signature(url: str) -> str:
    signature = bytearray(base64.b64decode(query_of(url)["sig"]))
    signature[0] ^= 0x01
    return with_query(url, sig=base64.b64encode(bytes(signature)).decode())


def _later_expiry(url: str) -> str:
    return with_query(url, se=sas_time(parse_time(query_of(url)["se"]) + timedelta(days=1)))


TAMPERINGS: dict[str, Callable[[str, str], str]] = {
    "signature": lambda url, _other: _flip_signature(url),
    "blob name": lambda url, other: urlunsplit(urlsplit(url)._replace(path=urlsplit(other).path)),
    "expiry": lambda url, _other: _later_expiry(url),
    "permissions": lambda url, _other: with_query(url, sp="rw"),
    "disposition": lambda url, _other: with_query(url, rscd="inline"),
}


@pytest.mark.parametrize("tampered", TAMPERINGS)
def test_a_changed_link_is_refused(place: Place, tampered: str) -> None:
    blob_name = place.upload(b"secret chart")
    other_name = place.upload(b"another run's file")  # exists, so a refusal is not a 404
    signer = place.signer()
    link = signer.sign(blob_name, "chart.png")
    assert place.http.get(link.url).status_code == 200

    changed = TAMPERINGS[tampered](link.url, signer.sign(other_name, "other.png").url)

    assert changed != link.url
    response = place.http.get(changed)
    assert response.status_code == 403
    assert b"secret chart" not in response.content and b"another run" not in response.content


def test_an_expired_link_is_refused(place: Place) -> None:
    blob_name = place.upload(b"old chart")
    two_hours_ago = utc_now() - 2 * HOUR

    link = place.signer(clock=lambda: two_hours_ago).sign(blob_name, "chart.png")

    assert link.expires_at < utc_now()
    response = place.http.get(link.url)
    assert response.status_code == 403
    assert b"old chart" not in response.content
    assert place.http.get(place.signer().sign(blob_name, "chart.png").url).status_code == 200


def test_a_link_only_reads(place: Place) -> None:
    blob_name = place.upload(b"original")
    url = place.signer().sign(blob_name, "data.bin").url

    overwrite = place.http.put(url, content=b"replaced", headers={"x-ms-blob-type": "BlockBlob"})
    delete = place.http.delete(url)
    metadata = place.http.put(with_query(url, comp="metadata"), headers={"x-ms-meta-owner": "someone"})

    assert (overwrite.status_code, delete.status_code, metadata.status_code) == (403, 403, 403)
    assert place.stored(blob_name) == b"original"
    assert place.service.get_blob_client(place.container, blob_name).get_blob_properties().metadata == {}


def test_one_delegation_key_serves_many_links_at_once(delegated: Place) -> None:
    blob_names = [delegated.upload(f"file {n}".encode()) for n in range(4)]
    signer = delegated.signer()
    threads = 16
    start = threading.Barrier(threads)
    links: list[DownloadLink] = []
    lock = threading.Lock()

    def sign(index: int) -> None:
        start.wait(timeout=30)
        link = signer.sign(blob_names[index % len(blob_names)], f"file-{index}.txt")
        with lock:
            links.append(link)

    workers = [threading.Thread(target=sign, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert len(links) == threads
    assert delegated.key_fetches.count == 1
    assert len({query_of(link.url)["ske"] for link in links}) == 1
    for index, link in enumerate(links[: len(blob_names)]):
        response = delegated.http.get(link.url)
        assert response.status_code == 200, index
        assert response.content.startswith(b"file ")


def test_a_delegation_key_signs_for_an_hour_so_a_revocation_lasts_at_most_that(delegated: Place) -> None:
    """After ``revoke-delegation-keys`` the links signed with the old key fail; new links must not
    be signed with it for long: every key is replaced an hour after it was fetched."""
    blob_name = delegated.upload(b"chart")
    clock = ManualClock(utc_now().replace(microsecond=0))
    signer = delegated.signer(lifetime=HOUR, clock=clock)

    first = signer.sign(blob_name, "chart.png")
    key_start, key_expiry = (parse_time(query_of(first.url)[name]) for name in ("skt", "ske"))
    assert delegated.http.get(first.url).status_code == 200
    assert key_start == clock.now - CLOCK_SKEW
    assert key_expiry - clock.now == HOUR + KEY_REUSE + REFRESH_MARGIN  # covers every link it may sign

    clock.now += KEY_REUSE - timedelta(seconds=1)  # the last moment the key is used
    last = signer.sign(blob_name, "chart.png")
    assert delegated.key_fetches.count == 1
    assert query_of(last.url)["ske"] == sas_time(key_expiry)
    assert last.expires_at == clock.now + HOUR  # a whole link, inside the key's life

    clock.now += timedelta(seconds=1)
    renewed = signer.sign(blob_name, "chart.png")
    assert delegated.key_fetches.count == 2
    assert parse_time(query_of(renewed.url)["skt"]) == clock.now - CLOCK_SKEW
    assert renewed.expires_at == clock.now + HOUR
    for link in (first, last, renewed):
        assert parse_time(query_of(link.url)["se"]) <= parse_time(query_of(link.url)["ske"])


def test_week_long_links_end_with_their_key(delegated: Place) -> None:
    blob_name = delegated.upload(b"chart")
    clock = ManualClock(utc_now().replace(microsecond=0))
    signer = delegated.signer(lifetime=MAX_LIFETIME, clock=clock)

    first = signer.sign(blob_name, "chart.png")
    key_expiry = parse_time(query_of(first.url)["ske"])
    assert delegated.http.get(first.url).status_code == 200
    assert first.expires_at == key_expiry  # Storage caps the key at 7 days: no link outlives it

    clock.now += KEY_REUSE - timedelta(seconds=1)
    reused = signer.sign(blob_name, "chart.png")
    assert delegated.key_fetches.count == 1  # not a key per link, however long the links
    assert reused.expires_at == key_expiry

    clock.now += timedelta(seconds=1)
    renewed = signer.sign(blob_name, "chart.png")
    assert delegated.key_fetches.count == 2
    assert renewed.expires_at == parse_time(query_of(renewed.url)["ske"]) > key_expiry


def test_the_signer_follows_the_client_credential(azurite: Azurite, oauth_azurite: OAuthAzurite) -> None:
    by_key = link_signer(BlobServiceClient.from_connection_string(azurite.connection_string), "artifacts", HOUR)
    by_identity = link_signer(
        BlobServiceClient(oauth_azurite.blob_url, credential=EntraLikeCredential()), "artifacts", HOUR
    )
    sas_only = BlobServiceClient.from_connection_string(
        f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/devstoreaccount1;SharedAccessSignature=sv=2024-11-04&sig=x"
    )

    assert not by_key.user_delegation
    assert by_identity.user_delegation
    with pytest.raises(ConfigError, match="download links"):
        link_signer(sas_only, "artifacts", HOUR)


@pytest.mark.parametrize("lifetime", [timedelta(0), -HOUR, MAX_LIFETIME + timedelta(seconds=1)])
def test_a_lifetime_out_of_bounds_is_refused(azurite: Azurite, lifetime: timedelta) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        link_signer(BlobServiceClient.from_connection_string(azurite.connection_string), "artifacts", lifetime)


def test_no_secret_in_reprs_or_logs(place: Place, caplog: pytest.LogCaptureFixture) -> None:
    blob_name = place.upload(b"x")
    caplog.set_level("DEBUG")
    signer = place.signer()

    link = signer.sign(blob_name, "x.bin")

    signature = query_of(link.url)["sig"]
    shown = repr(signer) + repr(link) + str(link) + caplog.text
    assert signature not in shown and quote(signature, safe="") not in shown
    assert ACCOUNT_KEY not in shown
    assert place.container in repr(signer)
    assert place.http.get(link.url).status_code == 200


def test_certificate_is_the_emulators_own(oauth_azurite: OAuthAzurite) -> None:
    """The HTTPS in these tests is verified, not switched off."""
    assert Path(oauth_azurite.certificate).exists()
    with httpx.Client() as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get(oauth_azurite.blob_url)
