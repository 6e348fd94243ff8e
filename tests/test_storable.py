"""The bounds on one exchange's worst input (pure functions): depth, text PostgreSQL
can store, reason length, and a decompression bomb's cap."""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.mirror.assemble import primary_side
from shadowproxy.storable import (
    MAX_JSON_DEPTH,
    MAX_REASON_CHARS,
    TOO_DEEP,
    TooDeep,
    bounded,
    cut_depth,
    json_depth,
    parse_json,
    repair_json,
    repair_text,
)

PROPERTY = settings(max_examples=200, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=40,
)


def nest(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@PROPERTY
@given(json_values, st.integers(1, 8))
def test_cut_depth_bounds_depth_and_keeps_what_fits(value: Any, limit: int) -> None:
    cut = cut_depth(value, limit)
    assert json_depth(cut) <= limit
    if json_depth(value) <= limit:
        assert cut == value
    json.dumps(cut)  # still a JSON value


def test_a_deep_value_is_cut_with_a_marker_at_the_limit() -> None:
    cut = cut_depth(nest(5000))
    assert json_depth(cut) == MAX_JSON_DEPTH
    assert TOO_DEEP in json.dumps(cut)


def test_parse_json_refuses_what_python_cannot_parse_and_what_is_too_deep() -> None:
    for body in (b"[" * 100_000, json.dumps(nest(MAX_JSON_DEPTH + 1)).encode()):
        try:
            parse_json(body)
        except TooDeep as exc:
            assert "limit 64" in str(exc)
        else:
            raise AssertionError("accepted")
    assert parse_json(json.dumps(nest(MAX_JSON_DEPTH)).encode()) == nest(MAX_JSON_DEPTH)


@PROPERTY
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                      blacklist_categories=()), max_size=50))
def test_repaired_text_always_encodes_and_valid_text_is_unchanged(text: str) -> None:
    repaired = repair_text(text)
    repaired.encode("utf-8")
    assert "\x00" not in repaired
    assert repair_text(repaired) == repaired
    if "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert repaired == text


@PROPERTY
@given(st.text(max_size=20), st.text(max_size=20))
def test_an_emoji_split_in_two_halves_comes_out_whole(before: str, after: str) -> None:
    high, low = "\ud83d", "\ude00"
    assert repair_text(before + high + low + after) == repair_text(before + "\U0001f600" + after)


def test_repair_json_reaches_keys_and_nested_strings() -> None:
    assert repair_json({"a\ud800": [{"b": "x\x00\udfff"}]}) == {"a\ufffd": [{"b": "x\ufffd\ufffd"}]}


@PROPERTY
@given(st.text(max_size=2000), st.integers(60, 1000))
def test_bounded_reasons_fit(reason: str, limit: int) -> None:
    short = bounded(reason, limit)
    assert len(short) <= limit
    if len(reason) <= limit:
        assert short == reason
    else:
        assert f"{len(reason)} chars in all" in short
    assert len(bounded(reason)) <= MAX_REASON_CHARS


def test_a_gzip_bomb_inflates_only_to_the_capture_limit() -> None:
    bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    start = ExchangeStart("0" * 32, "openai.chat", "/v1/chat/completions", None, b"{}", {},
                          received_at=0.0, sent_at=0.0)
    for content_type in ("application/json", "text/event-stream"):
        end = ExchangeEnd("0" * 32, 200, {"content-encoding": "gzip",
                                          "content-type": content_type},
                          chunks=[(0.1, bomb[i:i + 8192]) for i in range(0, len(bomb), 8192)],
                          ended_at=0.2)
        side = primary_side(start, end)
        assert side.error is not None and "truncated" in side.error
