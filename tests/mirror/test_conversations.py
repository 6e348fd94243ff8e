"""What the mirror remembers of Responses answers so previous_response_id can be honoured."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest

from shadowproxy.exchange import ExchangeEnd
from shadowproxy.mirror.conversations import ResponseHistory, primary_response
from shadowproxy.mirror.translate import Untranslatable
from shadowproxy.tasks import spawn


def answer(response_id: str, text: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "status": "completed", "model": "gpt-4.1",
            "output": [{"id": f"msg_{response_id}", "type": "message", "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2}}


def json_end(exchange_id: str, response: dict[str, Any], *, gzipped: bool = False,
             status: int = 200) -> ExchangeEnd:
    body = json.dumps(response).encode()
    headers = {"content-type": "application/json"}
    if gzipped:
        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    return ExchangeEnd(exchange_id, status=status, headers=headers, chunks=[(0.0, body)])


def sse_end(exchange_id: str, response: dict[str, Any]) -> ExchangeEnd:
    events = [{"type": "response.created", "sequence_number": 0,
               "response": {**response, "status": "in_progress", "output": []}},
              {"type": "response.completed", "sequence_number": 1, "response": response}]
    raw = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    return ExchangeEnd(exchange_id, status=200, headers={"content-type": "text/event-stream"},
                       chunks=[(0.0, raw[:17]), (0.0, raw[17:])])


def turn(text: str, previous: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4.1", "input": text}
    if previous:
        body["previous_response_id"] = previous
    return body


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def texts(items: list[Any]) -> list[str]:
    return [i["content"] if isinstance(i["content"], str) else i["content"][0]["text"]
            for i in items]


def test_three_turns_rebuild_the_whole_history_from_json_and_streams() -> None:
    history = ResponseHistory()
    assert not history.started("x1", turn("one"))
    history.ended(json_end("x1", answer("resp_1", "A1"), gzipped=True))
    assert not history.started("x2", turn("two", "resp_1"))
    history.ended(sse_end("x2", answer("resp_2", "A2")))
    third = turn("three", "resp_2")
    assert history.history(third) == [
        user("one"), *answer("resp_1", "A1")["output"],
        user("two"), *answer("resp_2", "A2")["output"],
    ]
    assert history.history(turn("fresh")) is None


def test_a_response_never_seen_is_untranslatable_with_the_reason() -> None:
    with pytest.raises(Untranslatable, match="'resp_old': a response shadowproxy never saw"):
        ResponseHistory().history(turn("x", "resp_old"))


def test_failed_or_error_answers_are_not_remembered() -> None:
    history = ResponseHistory()
    history.started("x1", turn("one"))
    history.ended(json_end("x1", {"error": {"message": "no"}}, status=400))
    history.started("x2", turn("two"))
    history.ended(ExchangeEnd("x2", status=None, headers={}, error="upstream unreachable"))
    assert len(history) == 0


def test_least_recently_used_goes_first_and_a_broken_chain_says_where() -> None:
    history = ResponseHistory(max_responses=2)
    for n, previous in ((1, None), (2, "resp_1"), (3, "resp_2")):
        history.started(f"x{n}", turn(f"t{n}", previous))
        history.ended(json_end(f"x{n}", answer(f"resp_{n}", f"A{n}")))
    assert len(history) == 2  # resp_1 is gone
    with pytest.raises(Untranslatable, match="reaches response 'resp_1'"):
        history.history(turn("t4", "resp_3"))


def test_memory_is_bounded_in_bytes() -> None:
    history = ResponseHistory(max_bytes=2_000)
    for n in range(10):
        history.started(f"x{n}", turn("q" * 300))
        history.ended(json_end(f"x{n}", answer(f"resp_{n}", "a" * 300)))
    assert 0 < history.bytes <= 2_000
    assert history.history(turn("next", "resp_9")) is not None
    with pytest.raises(Untranslatable):
        history.history(turn("next", "resp_0"))


async def test_a_turn_that_arrives_before_its_previous_answer_ended_waits_for_it() -> None:
    """The client may send turn 2 as soon as it read turn 1, before the mirror heard the end."""
    history = ResponseHistory()
    history.started("x1", turn("one"))
    assert history.started("x2", turn("two", "resp_1"))
    waiter = spawn(history.settled("x2", timeout_s=30), name="settled")
    await asyncio.sleep(0)
    assert not waiter.done()
    history.ended(json_end("x1", answer("resp_1", "A1")))
    await asyncio.wait_for(waiter, 30)
    assert texts(history.history(turn("two", "resp_1")) or []) == ["one", "A1"]


async def test_waiting_ends_when_nothing_in_flight_could_be_the_parent() -> None:
    history = ResponseHistory()
    history.started("x1", turn("unrelated"))
    assert history.started("x2", turn("two", "resp_elsewhere"))
    waiter = spawn(history.settled("x2", timeout_s=30), name="settled")
    history.ended(json_end("x1", answer("resp_1", "A1")))
    await asyncio.wait_for(waiter, 30)
    with pytest.raises(Untranslatable, match="never saw"):
        history.history(turn("two", "resp_elsewhere"))


def test_primary_response_ignores_truncated_and_non_response_bodies() -> None:
    end = json_end("x", answer("resp_1", "A"))
    end.truncated = True
    assert primary_response(end) is None
    assert primary_response(json_end("x", {"object": "list", "data": []})) is None
    assert primary_response(sse_end("x", answer("resp_1", "A")))["id"] == "resp_1"  # type: ignore[index]
