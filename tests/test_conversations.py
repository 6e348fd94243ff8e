"""Conversations: each pair's conversation id and turn, and per tag the conversations
with a worse shadow and the turn at which it first happens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.conversations import (
    MAX_CONVERSATION_ID,
    TagConversations,
    conversation_of,
    worse_conversations_by_tag,
)
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from tests.fakes.mirror_rig import mirror_rig
from tests.fakes.providers import SimulatedProvider

SYSTEM = "You are the support desk."


def anthropic_turns(*questions: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for n, question in enumerate(questions):
        if n:
            messages.append({"role": "assistant", "content": f"answer {n}"})
        messages.append({"role": "user", "content": question})
    return {"model": "claude-sonnet-4-6", "max_tokens": 100, "system": SYSTEM,
            "messages": messages}


# ------------------------------------------------------------------------ the id and turn


def test_every_turn_of_a_conversation_shares_its_id_and_counts_user_turns() -> None:
    ids_turns = [conversation_of("anthropic.messages", anthropic_turns(*qs), None)
                 for qs in (["hi"], ["hi", "more"], ["hi", "more", "thanks"])]
    assert len({cid for cid, _ in ids_turns}) == 1
    assert [turn for _, turn in ids_turns] == [1, 2, 3]
    other, _ = conversation_of("anthropic.messages", anthropic_turns("hello"), None)
    assert other != ids_turns[0][0]
    changed_system = {**anthropic_turns("hi"), "system": "You are the sales desk."}
    assert conversation_of("anthropic.messages", changed_system, None)[0] != other


def test_the_header_names_the_conversation_when_sent() -> None:
    body = anthropic_turns("hi", "more")
    assert conversation_of("anthropic.messages", body, " agent-run-7 ") == ("agent-run-7", 2)
    long_id, _ = conversation_of("anthropic.messages", body, "x" * 1000)
    assert long_id == "x" * MAX_CONVERSATION_ID
    assert conversation_of("anthropic.messages", None, "run-1") == ("run-1", None)


def test_tool_results_continue_the_user_turn_they_answer() -> None:
    body = anthropic_turns("find the policy")
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "s",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "found"}]},
    ]
    assert conversation_of("anthropic.messages", body, None)[1] == 1
    chat = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "find it"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "s", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "found"},
        {"role": "user", "content": "thanks"}]}
    chat_id, turn = conversation_of("openai.chat", chat, None)
    assert turn == 2 and chat_id is not None and chat_id.startswith("h:")


def test_responses_input_and_previous_response_id() -> None:
    first = {"model": "gpt-4o", "instructions": SYSTEM, "input": "hi"}
    items = {"model": "gpt-4o", "instructions": SYSTEM, "input": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"},
        {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                         "text": "more"}]}]}
    assert conversation_of("openai.responses", first, None)[0] == conversation_of(
        "openai.responses", items, None)[0]
    assert conversation_of("openai.responses", items, None)[1] == 2
    continued = {"model": "gpt-4o", "previous_response_id": "resp_1", "input": "more"}
    assert conversation_of("openai.responses", continued, None)[0] is None
    assert conversation_of("openai.responses", continued, "run-9")[0] == "run-9"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8))
def test_a_conversation_keeps_its_id_as_it_grows(questions: list[str]) -> None:
    seen = [conversation_of("anthropic.messages", anthropic_turns(*questions[:n]), None)
            for n in range(1, len(questions) + 1)]
    assert len({cid for cid, _ in seen}) == 1
    assert [turn for _, turn in seen] == list(range(1, len(questions) + 1))


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.dictionaries(st.sampled_from(["messages", "system", "input"]),
                                 st.one_of(st.text(), st.lists(st.text()), st.none()))))
def test_any_body_gives_an_answer_never_an_exception(body: Any) -> None:
    for api in ("anthropic.messages", "openai.chat", "openai.responses"):
        conversation_id, turn = conversation_of(api, body, None)
        assert conversation_id is None or conversation_id.startswith("h:")
        assert turn is None or turn >= 0


# ------------------------------------------------------------------- per-tag statistics


def test_worse_conversations_per_tag_and_their_first_worse_turn() -> None:
    rows = [
        # support/a: worse first at turn 2 (turn 3 worse again)
        {"tag": "support", "conversation_id": "a", "turn": 1, "verdict": "equivalent"},
        {"tag": "support", "conversation_id": "a", "turn": 3, "verdict": "worse"},
        {"tag": "support", "conversation_id": "a", "turn": 2, "verdict": "worse"},
        # support/b: never worse
        {"tag": "support", "conversation_id": "b", "turn": 1, "verdict": "better"},
        {"tag": "support", "conversation_id": "b", "turn": 2, "verdict": "unjudged"},
        # support/c: worse at turn 2
        {"tag": "support", "conversation_id": "c", "turn": 2, "verdict": "worse"},
        # billing/d: worse at its first turn
        {"tag": "billing", "conversation_id": "d", "turn": 1, "verdict": "worse"},
        # no conversation: left out
        {"tag": "billing", "conversation_id": None, "turn": 1, "verdict": "worse"},
        # untagged/e: worse, turn unknown
        {"tag": None, "conversation_id": "e", "turn": None, "verdict": "worse"},
    ]
    stats = worse_conversations_by_tag(rows)
    assert stats == {
        "support": TagConversations(conversations=3, with_worse=2,
                                    first_worse_turns={2: 2}),
        "billing": TagConversations(conversations=1, with_worse=1,
                                    first_worse_turns={1: 1}),
        None: TagConversations(conversations=1, with_worse=1, first_worse_turns={}),
    }
    assert stats["support"].worse_share == pytest.approx(2 / 3)
    assert worse_conversations_by_tag([]) == {}


@given(st.lists(st.fixed_dictionaries({
    "tag": st.sampled_from(["a", "b", None]),
    "conversation_id": st.sampled_from(["c1", "c2", "c3", None]),
    "turn": st.one_of(st.none(), st.integers(1, 6)),
    "verdict": st.sampled_from(["equivalent", "better", "worse", "unjudged"]),
}), max_size=40))
def test_worse_counts_never_exceed_conversations(rows: list[dict[str, Any]]) -> None:
    for tag, stats in worse_conversations_by_tag(rows).items():
        ids = {r["conversation_id"] for r in rows if r["tag"] == tag and r["conversation_id"]}
        assert stats.conversations == len(ids)
        assert stats.with_worse <= stats.conversations
        assert sum(stats.first_worse_turns.values()) <= stats.with_worse
        for turn in stats.first_worse_turns:
            assert any(r["turn"] == turn and r["verdict"] == "worse" for r in rows)


# -------------------------------------------------------------------------- end to end


async def test_pairs_carry_conversation_and_turn_into_postgres(
    aiohttp_server: Any, simulator: SimulatedProvider, database_url: str, tmp_path: Path
) -> None:
    async with mirror_rig(aiohttp_server, primary_url=simulator.url,
                          shadow_url=simulator.url) as rig:
        claude = anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key="sk-app",
                                          max_retries=0, timeout=30)
        history: list[Any] = []
        for question in ("Where is my order?", "It was order 42", "Thanks"):
            history.append({"role": "user", "content": question})
            answer = await claude.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                                                  system=SYSTEM, messages=history)
            history.append({"role": "assistant", "content": answer.content[0].text})  # type: ignore[union-attr]
        gpt = openai.AsyncOpenAI(base_url=f"{rig.proxy_url}/v1", api_key="sk-app",
                                 max_retries=0)
        await gpt.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}],
            extra_headers={"x-shadow-conversation": "agent-run-7"})
        records = await rig.wait_records(4)
        await claude.close()
        await gpt.close()
    chats = [r for r in records if r.api == "openai.chat"]
    claude_pairs = sorted((r for r in records if r.api == "anthropic.messages"),
                          key=lambda r: r.turn or 0)
    assert [r.turn for r in claude_pairs] == [1, 2, 3]
    assert len({r.conversation_id for r in claude_pairs}) == 1
    assert (claude_pairs[0].conversation_id or "").startswith("h:")
    assert (chats[0].conversation_id, chats[0].turn) == ("agent-run-7", 1)
    # The header went to neither provider.
    assert all("x-shadow-conversation" not in r.headers for r in simulator.received)

    writer = PairWriter(database_url, Spool(tmp_path, max_bytes=1 << 26))
    await writer.start()
    for record in records:
        writer.submit(record)
    await writer.close(timeout_s=10)
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        stored = await conn.fetch("SELECT conversation_id, turn FROM pairs ORDER BY turn")
    finally:
        await conn.close()
    assert sorted((r["conversation_id"], r["turn"]) for r in stored) == sorted(
        (r.conversation_id, r.turn) for r in records)


async def test_responses_chained_by_previous_response_id_are_one_conversation(
    aiohttp_server: Any, simulator: SimulatedProvider
) -> None:
    async with mirror_rig(aiohttp_server, primary_url=simulator.url,
                          shadow_url=simulator.url) as rig:
        client = openai.AsyncOpenAI(base_url=f"{rig.proxy_url}/v1", api_key="sk-app",
                                    max_retries=0)
        previous = None
        for n, text in enumerate(("My name is Ada.", "I live in Paris.", "Where do I live?")):
            extra = {"previous_response_id": previous} if previous else {}
            answer = await client.responses.create(model="gpt-4.1", input=text,
                                                   instructions="Be kind.", **extra)
            previous = answer.id
            await rig.wait_records(n + 1)  # the next turn's history needs this one's end
        other = await client.responses.create(model="gpt-4.1", input="Another chat")
        records = await rig.wait_records(4)
        await client.close()
    chained = sorted((r for r in records if r.primary.text != other.output_text),
                     key=lambda r: r.turn or 0)
    assert [r.turn for r in chained] == [1, 2, 3]
    assert len({r.conversation_id for r in chained}) == 1
    assert chained[0].conversation_id is not None
    (alone,) = [r for r in records if r not in chained]
    assert alone.conversation_id != chained[0].conversation_id and alone.turn == 1
