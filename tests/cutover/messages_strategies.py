"""Hypothesis strategies for Messages answers and the stream events that carry them,
split the arbitrary ways a real stream splits text and tool input."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import strategies as st

STOP_REASONS = ["end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal",
                "pause_turn", "model_context_window_exceeded"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
text_blocks = st.builds(lambda t: {"type": "text", "text": t}, st.text(min_size=1, max_size=40))
tool_blocks = st.builds(
    lambda name, arguments, u: {"type": "tool_use", "id": f"toolu_01{u.hex[:22]}",
                                "name": name, "input": arguments},
    st.from_regex(r"[a-z][a-z_]{0,9}", fullmatch=True),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    st.uuids(),
)
thinking_blocks = st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "sig1"},
                            st.text(min_size=1, max_size=20))
usages = st.fixed_dictionaries({
    "input_tokens": st.integers(0, 10**6),
    "cache_creation_input_tokens": st.integers(0, 10**5),
    "cache_read_input_tokens": st.integers(0, 10**5),
    "output_tokens": st.integers(0, 10**5),
})


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "id": f"msg_01{draw(st.uuids()).hex[:22]}",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": draw(st.lists(st.one_of(text_blocks, tool_blocks, thinking_blocks),
                                 max_size=5)),
        "stop_reason": draw(st.sampled_from(STOP_REASONS)),
        "stop_sequence": None,
        "usage": draw(usages),
    }


def _pieces(draw: st.DrawFn, text: str) -> list[str]:
    if not text:
        return []
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=4))))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@st.composite
def streams(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """A message and the events of its stream, pings anywhere."""
    message = draw(messages())
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**message["usage"], "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start",
                                                                   "message": start})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(draw, block["text"])]
        elif kind == "tool_use":
            opening = {**block, "input": {}}
            raw = json.dumps(block["input"]) + draw(st.sampled_from(["", "  "]))
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in ["", *_pieces(draw, raw)]]
            if not block["input"] and draw(st.booleans()):
                deltas = []  # an empty input may come whole in content_block_start
        else:
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p}
                      for p in _pieces(draw, block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": opening}))
        for delta in deltas:
            if draw(st.booleans()) and draw(st.booleans()):
                events.append(("ping", {"type": "ping"}))
            events.append(("content_block_delta", {"type": "content_block_delta",
                                                   "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]},
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    return message, events
