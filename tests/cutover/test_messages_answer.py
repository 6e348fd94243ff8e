"""The message a stream adds up to is the message the stream carried."""

from __future__ import annotations

from typing import Any

from hypothesis import given

from shadowproxy.cutover.messages_answer import MessageAssembler, is_content, sse_event
from tests.cutover.messages_strategies import streams


@given(streams())
def test_the_assembled_message_is_the_streamed_one(
    case: tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]],
) -> None:
    message, events = case
    assembler = MessageAssembler()
    for name, data in events:
        assembler.on_event(name, data)
    assert assembler.stopped and assembler.error is None
    assert assembler.message == message


def test_an_error_event_is_kept_and_unknown_events_are_skipped() -> None:
    assembler = MessageAssembler()
    assembler.on_event("message_start", {"message": {"id": "m", "content": [], "usage": {}}})
    assembler.on_event("surprise", {"type": "surprise"})
    assembler.on_event("error", {"type": "error",
                                 "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert assembler.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert assembler.message is not None and assembler.message["content"] == []


def test_content_starts_at_the_first_delta() -> None:
    assert is_content("content_block_delta")
    assert not any(is_content(e) for e in ("message_start", "ping", "content_block_start"))


def test_an_event_is_framed_as_anthropic_frames_it() -> None:
    assert sse_event("ping", '{"type": "ping"}') == b'event: ping\ndata: {"type": "ping"}\n\n'
