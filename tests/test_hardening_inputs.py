"""Error text from Azure OpenAI reaches callers: credentials are scrubbed from it, other words are not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.openai_client import ApiKeyAuth, AzureOpenAIClient

JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NvZ25pdGl2ZXNlcnZpY2VzIn0.c2lnbmF0dXJl-_x"


def _client(*secrets: str) -> AzureOpenAIClient:
    return AzureOpenAIClient("https://res.openai.azure.com", ApiKeyAuth("unused"), timeout_seconds=5, secrets=secrets)


@pytest.fixture
def scrub() -> Iterator[AzureOpenAIClient]:
    client = _client("abc")
    yield client
    client.close()


def test_a_short_key_inside_a_word_is_left_alone(scrub: AzureOpenAIClient) -> None:
    for text in ("abcdef", "xabc", "the abc_1 and abc-2 and 9abc", "Unknown parameter 'abcdef'."):
        assert scrub._scrub(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", "***"),
        ("key abc was refused", "key *** was refused"),
        ("key 'abc'.", "key '***'."),
        ("(abc)abc/abc", "(***)***/***"),
        ("abc abcd abc", "*** abcd ***"),
    ],
)
def test_the_key_as_a_token_is_replaced(scrub: AzureOpenAIClient, text: str, expected: str) -> None:
    assert scrub._scrub(text) == expected


def test_a_long_key_is_replaced_wherever_it_appears() -> None:
    key = "0123456789abcdef0123456789abcdef"
    client = _client(key)
    try:
        assert client._scrub(f"key={key}x and {key}_1") == "key=***x and ***_1"
    finally:
        client.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer ***"),
        (f"header authorization: bearer {JWT} was rejected", "header authorization: bearer *** was rejected"),
        (f'{{"Authorization": "Bearer {JWT}"}}', '{"Authorization": "Bearer ***"}'),
        ("Bearer opaque-token_0123456789==, then", "Bearer ***, then"),
        ("api-key: X", "api-key: ***"),
        ("api-key: 0123456789abcdef0123456789abcdef failed", "api-key: *** failed"),
        ("url?api-key=s3cr3t&x=1", "url?api-key=***&x=1"),
        ("API-KEY = s3cr3t.", "API-KEY = ***."),
        ("{'api-key': 's3cr3t'}", "{'api-key': '***'}"),
        ('"api_key":"s3cr3t"', '"api_key":"***"'),
        ("Ocp-Apim-Subscription-Key: s3cr3t", "Ocp-Apim-Subscription-Key: ***"),
    ],
)
def test_credential_values_in_the_text_are_replaced(scrub: AzureOpenAIClient, text: str, expected: str) -> None:
    assert scrub._scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Invalid Bearer token.",
        "Bearer authentication failed: the token has expired",
        "The bearer of this message",
        "Access denied due to invalid subscription key or wrong API endpoint.",
        "The api-key header is missing; pass an api-key or use Entra ID.",
        "Unauthorized. Access token is missing, invalid, audience is incorrect "
        "(https://cognitiveservices.azure.com), or have expired.",
        "Container is expired.",
        "missing api-key:\nPlease retry",
        "Authorization:\nBearer\nrequired",
        "Invalid value for 'tools[0].container': expected an object. See https://example.com/a?b=1&c=2",
        "銷售圖表.png is 12 MB",
        "",
    ],
)
def test_ordinary_text_is_unchanged(scrub: AzureOpenAIClient, text: str) -> None:
    assert scrub._scrub(text) == text


def test_long_text_is_bounded(scrub: AzureOpenAIClient) -> None:
    assert len(scrub._scrub("x" * 10_000)) == 500
    assert len(scrub._scrub("abc " * 10_000)) == 500


def test_a_credential_cut_by_the_bound_is_still_scrubbed() -> None:
    key = "k" * 40
    client = _client(key)
    try:
        for text in ("x" * 480 + " " + key, "x" * 480 + " Bearer " + JWT, "x" * 480 + " api-key: " + key[:30]):
            scrubbed = client._scrub(text)
            assert len(scrubbed) <= 500
            assert "kkkkk" not in scrubbed and "eyJ" not in scrubbed, scrubbed
    finally:
        client.close()
