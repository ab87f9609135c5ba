"""The queue message schema: round-trips, and refuses anything that could aim elsewhere."""

from __future__ import annotations

import json

import pytest

from shared.errors import InvalidMessage
from shared.storage.messages import ArtifactMessage

GOOD = ArtifactMessage(
    response_id="resp_1",
    container_id="cntr_1",
    file_id="cfile_1",
    filename="銷售 圖表.png",
    blob_name="resp_1/cfile_1/銷售 圖表.png",
    mime_type="image/png",
    size=12,
)


def test_round_trip() -> None:
    assert ArtifactMessage.from_json(GOOD.to_json()) == GOOD
    assert ArtifactMessage.from_json(GOOD.to_json().encode("utf-8")) == GOOD


def test_only_the_ids_are_required() -> None:
    minimal = ArtifactMessage.from_json('{"response_id": "resp_1", "container_id": "cntr_1", "file_id": "cfile_1"}')
    assert minimal.filename == "cfile_1"
    assert minimal.blob_name == "resp_1/cfile_1/cfile_1"
    named = ArtifactMessage.from_json(
        '{"response_id": "resp_1", "container_id": "cntr_1", "file_id": "cfile_1", "filename": "../a b.png"}'
    )
    assert named.blob_name == "resp_1/cfile_1/a b.png"


def _with(**changes: object) -> str:
    data = json.loads(GOOD.to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        _with(v=2),
        _with(response_id="../resp"),
        _with(container_id="cntr_1?x=1"),
        _with(file_id="cfile_1#frag"),
        _with(file_id="x" * 200),
        _with(blob_name="other/cfile_1/a.png"),
        _with(blob_name="resp_1/cfile_1/../../x.png"),
        _with(blob_name="resp_1/cfile_1/"),
        _with(filename=""),
        _with(response_id=None),
        _with(container_id=None),
        _with(filename=5),
        _with(size=-1),
        _with(size=True),
        _with(mime_type=["image/png"]),
        "x" * 100_000,
    ],
)
def test_refused(body: str) -> None:
    with pytest.raises(InvalidMessage):
        ArtifactMessage.from_json(body)


def test_a_hand_written_long_name_is_read_as_the_stored_name() -> None:
    """One name: the message's filename is the blob name's leaf, extension kept."""
    long_csv = "y" * 300 + ".csv"
    message = ArtifactMessage.from_json(json.dumps(
        {"response_id": "resp_1", "container_id": "cntr_1", "file_id": "cfile_1", "filename": "/mnt/data/" + long_csv}
    ))
    assert message.filename == "y" * 196 + ".csv"
    assert message.blob_name == "resp_1/cfile_1/" + message.filename


def test_a_generated_image_message_has_no_container() -> None:
    image = ArtifactMessage(response_id="resp_1", container_id=None, file_id="ig_1", filename="ig_1.png",
                            blob_name="resp_1/ig_1/ig_1.png", mime_type="image/png", size=9,
                            source="image_generation")
    data = json.loads(image.to_json())
    assert data["source"] == "image_generation" and data["container_id"] is None
    assert ArtifactMessage.from_json(image.to_json()) == image
    minimal = ArtifactMessage.from_json('{"response_id": "resp_1", "file_id": "ig_1", "source": "image_generation"}')
    assert minimal.container_id is None and minimal.blob_name == "resp_1/ig_1/ig_1"
    # A message from before sources existed is a container file's.
    assert ArtifactMessage.from_json(_with()).source == "container"
    assert json.loads(GOOD.to_json())["source"] == "container"


@pytest.mark.parametrize(
    "body",
    [
        '{"response_id": "resp_1", "file_id": "ig_1", "source": "image_generation", "container_id": "cntr_1"}',
        '{"response_id": "resp_1", "file_id": "f_1", "source": "elsewhere", "container_id": "cntr_1"}',
        '{"response_id": "resp_1", "file_id": "f_1", "source": "container"}',
    ],
)
def test_a_source_and_its_container_must_agree(body: str) -> None:
    with pytest.raises(InvalidMessage):
        ArtifactMessage.from_json(body)
