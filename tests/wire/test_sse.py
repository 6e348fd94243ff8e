"""The SSE parser sees the client's byte chunks, which can end anywhere."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.wire.sse import SSEEvent, SSEParser

FAST = settings(max_examples=200, deadline=None)


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def split_at(raw: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def test_named_events_and_joined_data_lines() -> None:
    raw = b"event: message_start\ndata: {\"a\":1}\n\ndata: one\ndata: two\n\n"
    assert parse(raw) == [
        SSEEvent(event="message_start", data='{"a":1}'),
        SSEEvent(event=None, data="one\ntwo"),
    ]


def test_one_optional_space_after_the_colon_is_stripped() -> None:
    assert parse(b"data:x\n\ndata:  y\n\n") == [SSEEvent(None, "x"), SSEEvent(None, " y")]


def test_comments_id_retry_and_unknown_fields_are_ignored() -> None:
    raw = b": keep-alive\nid: 7\nretry: 100\nfoo: bar\ndata: hi\n\n: another comment\n\n"
    assert parse(raw) == [SSEEvent(None, "hi")]


def test_event_without_data_is_not_dispatched_and_does_not_leak_its_name() -> None:
    assert parse(b"event: ping\n\ndata: x\n\n") == [SSEEvent(None, "x")]


def test_field_without_colon_is_a_field_with_empty_value() -> None:
    assert parse(b"data\n\n") == [SSEEvent(None, "")]


def test_all_three_line_endings() -> None:
    expected = [SSEEvent("e", "1"), SSEEvent(None, "2")]
    assert parse(b"event: e\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n") == expected
    assert parse(b"event: e\rdata: 1\r\rdata: 2\r\r") == expected


def test_crlf_split_across_chunks_is_one_line_break() -> None:
    # Were the "\n" taken as a second line ending, "data: a" would be dispatched alone.
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent(None, "a\nb")]


def test_multibyte_character_split_across_chunks() -> None:
    raw = "data: héllo 🙂\n\n".encode()
    cut = raw.index("🙂".encode()) + 2
    assert parse(raw[:cut], raw[cut:]) == [SSEEvent(None, "héllo 🙂")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert parse(b"data: a\xff\xfeb\n\n") == [SSEEvent(None, "a\ufffd\ufffdb")]


def test_leading_byte_order_mark_is_dropped() -> None:
    assert parse(b"\xef\xbb\xbfevent: x\ndata: y\n\n") == [SSEEvent("x", "y")]


def test_close_flushes_an_event_missing_its_blank_line() -> None:
    assert parse(b"data: partial") == [SSEEvent(None, "partial")]
    assert parse(b"event: e\ndata: last\n") == [SSEEvent("e", "last")]


def test_feed_returns_events_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\ndata: b") == [SSEEvent(None, "a")]
    assert parser.close() == [SSEEvent(None, "b")]


def test_long_line_in_many_tiny_chunks() -> None:
    value = "x" * 20_000
    raw = f"data: {value}\n\n".encode()
    assert parse(*(raw[i : i + 3] for i in range(0, len(raw), 3))) == [SSEEvent(None, value)]


line_text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]))


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A stream of random events with comments, one line-ending style, maybe a BOM."""
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines: list[str] = []
    expected: list[SSEEvent] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append(":" + draw(line_text))
        name = draw(st.none() | line_text)
        data = draw(st.lists(line_text, max_size=3))
        if name is not None:
            lines.append(f"event: {name}")
        lines.extend(f"data: {value}" for value in data)
        lines.append("")
        if data:
            expected.append(SSEEvent(event=name or None, data="\n".join(data)))
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + "".join(line + eol for line in lines)).encode(), expected


@FAST
@given(event_streams(), st.data())
def test_any_chunking_gives_the_same_events(
    stream: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    cuts = data.draw(st.sets(st.integers(1, max(1, len(raw) - 1))))
    assert parse(raw) == expected
    assert parse(*split_at(raw, cuts)) == expected


@FAST
@given(event_streams())
def test_single_byte_chunks_give_the_same_events(stream: tuple[bytes, list[SSEEvent]]) -> None:
    raw, expected = stream
    assert parse(*(raw[i : i + 1] for i in range(len(raw)))) == expected


@FAST
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_garbage_bytes_never_raise(chunks: list[bytes]) -> None:
    for event in parse(*chunks):
        assert isinstance(event.data, str)
