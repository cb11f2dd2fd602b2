"""Server-sent events from a provider: line endings, reads that split lines, and size limits."""

from collections.abc import AsyncIterator

import pytest

from llero.command.providers.base import ProviderFailure
from llero.command.providers.client import (
    MAX_STREAM_LINE_BYTES,
    Endpoint,
    WireProtocol,
    _server_sent_events,
)

pytestmark = pytest.mark.anyio

ENDPOINT = Endpoint("local", WireProtocol.OPENAI, "http://127.0.0.1:9/v1")


async def _arriving(reads: list[bytes]) -> AsyncIterator[bytes]:
    """Yield a response body in exactly the given reads."""
    for read in reads:
        yield read


async def _batches(reads: list[bytes]) -> list[list[tuple[str, str]]]:
    return [batch async for batch in _server_sent_events(ENDPOINT, _arriving(reads))]


async def test_events_of_one_read_come_together() -> None:
    batches = await _batches([b"data: a\n\ndata: b\n\n", b"data: c\n\n"])

    assert batches == [[("", "a"), ("", "b")], [("", "c")]]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
async def test_every_line_ending_is_read(newline: str) -> None:
    body = f"event: delta{newline}data: one{newline}data: two{newline}{newline}".encode()

    batches = await _batches([body])

    assert batches == [[("delta", "one\ntwo")]]


async def test_crlf_split_across_reads() -> None:
    batches = await _batches([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])

    assert [event for batch in batches for event in batch] == [("", "a"), ("", "b")]


async def test_multibyte_character_split_across_reads() -> None:
    encoded = "data: Lisboa \u00e9 \U0001f31e\n\n".encode()

    batches = await _batches([encoded[:14], encoded[14:17], encoded[17:]])

    assert batches == [[("", "Lisboa \u00e9 \U0001f31e")]]


async def test_comments_are_skipped_and_last_event_kept() -> None:
    batches = await _batches([b": keep-alive\n\ndata: last"])

    assert batches == [[("", "last")]]


async def test_overlong_line_rejected_before_it_ends() -> None:
    reads = [b"data: " + b"x" * (MAX_STREAM_LINE_BYTES // 2)] * 3

    with pytest.raises(ProviderFailure) as raised:
        await _batches(reads)

    assert "too long" in raised.value.message
