import json
from pathlib import Path

import pytest

from shadowproxy.mirror.assemble import side_from_normalized
from shadowproxy.pricing import Price, PriceFileError, PriceTable
from shadowproxy.wire import anthropic as anthropic_wire
from shadowproxy.wire import openai as openai_wire
from shadowproxy.wire.anthropic import AnthropicStream


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


@pytest.mark.parametrize(
    ("model", "base_input", "base_output"),
    [
        ("claude-haiku-4-5", 1.0, 5.0),
        ("claude-haiku-4-5-20251001", 1.0, 5.0),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", 1.0, 5.0),  # Bedrock
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 1.0, 5.0),  # Bedrock profile
        ("claude-haiku-4-5@20251001", 1.0, 5.0),  # Vertex
        ("claude-sonnet-4-5-20250929", 3.0, 15.0),
        ("claude-sonnet-4-20250514", 3.0, 15.0),
        ("claude-opus-4-1-20250805", 15.0, 75.0),
        ("claude-opus-4-5", 5.0, 25.0),
        ("claude-3-5-haiku-latest", 0.8, 4.0),
        ("anthropic/claude-3.5-haiku", 0.8, 4.0),  # OpenRouter spelling
        ("claude-3-haiku-20240307", 0.25, 1.25),
        ("gpt-4o", 2.5, 10.0),
        ("gpt-4o-2024-08-06", 2.5, 10.0),
        ("GPT-4o", 2.5, 10.0),
        ("gpt-4o-mini", 0.15, 0.6),  # longest base wins over gpt-4o
        ("gpt-4o-mini-2024-07-18", 0.15, 0.6),
        ("gpt-4.1-2025-04-14", 2.0, 8.0),
        ("gpt-4.1-mini", 0.4, 1.6),
        ("gpt-4.1-nano", 0.1, 0.4),
        ("o3-2025-04-16", 2.0, 8.0),
        ("o4-mini", 1.1, 4.4),
        ("gpt-5-2025-08-07", 1.25, 10.0),
        ("gpt-5-mini", 0.25, 2.0),
        ("gpt-5-nano", 0.05, 0.4),
    ],
)
def test_lookup_resolves_dated_and_provider_ids(
    table: PriceTable, model: str, base_input: float, base_output: float
) -> None:
    price = table.lookup(model)
    assert price is not None
    assert (price.input, price.output) == (base_input, base_output)


@pytest.mark.parametrize(
    "model",
    [None, "", "my-finetune", "o3-pro", "o3-mini", "gpt-4o-realtime-preview", "gpt-5-pro",
     "claude-haiku-4-5-turbo", "llama-3.1-70b"],
)
def test_unknown_model_has_no_price_rather_than_a_neighbours(
    table: PriceTable, model: str | None
) -> None:
    assert table.lookup(model) is None
    assert table.cost(model, 1000, 1000) is None


def test_cache_prices_follow_provider_conventions(table: PriceTable) -> None:
    haiku = table.lookup("claude-haiku-4-5")
    assert haiku == Price(1.0, 5.0, cache_write=1.25, cache_read=0.1, cache_write_1h=2.0,
                          input_includes_cache=False)
    gpt = table.lookup("gpt-4o")
    assert gpt is not None
    assert gpt.cache_read == 1.25 and gpt.input_includes_cache


def test_anthropic_cost_bills_cache_writes_and_reads_on_top_of_input(
    table: PriceTable,
) -> None:
    cost = table.cost("claude-haiku-4-5-20251001", input_tokens=1000, output_tokens=500,
                      cache_creation_input_tokens=2000, cache_read_input_tokens=10_000)
    # 1000 x $1 + 500 x $5 + 2000 x $1.25 + 10000 x $0.10, per million tokens
    assert cost == pytest.approx(0.007)


def test_openai_cost_bills_cached_part_of_prompt_at_cached_price(table: PriceTable) -> None:
    cost = table.cost("gpt-4o-2024-08-06", input_tokens=1000, output_tokens=100,
                      cache_read_input_tokens=400)
    # 600 uncached x $2.50 + 400 cached x $1.25 + 100 x $10, per million tokens
    assert cost == pytest.approx(0.003)
    assert table.cost("gpt-4o", 1000, 100) == pytest.approx(0.0035)


def test_cost_is_unknown_without_token_counts(table: PriceTable) -> None:
    assert table.cost("claude-haiku-4-5", None, 10) is None
    assert table.cost("claude-haiku-4-5", 10, None) is None
    assert table.cost("claude-haiku-4-5", 0, 0) == 0.0


def test_cache_tokens_without_a_cache_price_make_the_cost_unknown() -> None:
    no_cache = PriceTable({"plain": Price(1.0, 2.0)})
    assert no_cache.cost("plain", 100, 100) == pytest.approx(0.0003)
    assert no_cache.cost("plain", 100, 100, cache_read_input_tokens=50) is None
    assert no_cache.cost("plain", 100, 100, cache_creation_input_tokens=50) is None


def test_override_replaces_a_price_and_adds_a_model(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        '[models.gpt-4o]\ninput = 2\n\n'
        '[models."acme-large"]\ninput = 4\noutput = 12\ncache_read = 1\n'
        "input_includes_cache = true\n"
    )
    table = PriceTable.load(override)
    gpt = table.lookup("gpt-4o-2024-08-06")
    assert gpt is not None
    assert gpt.input == 2.0
    # Fields the override leaves out keep the built-in values.
    assert (gpt.output, gpt.cache_read, gpt.input_includes_cache) == (10.0, 1.25, True)
    assert table.cost("acme-large-2025-01-01", 1000, 1000) == pytest.approx(0.016)
    assert table.lookup("claude-haiku-4-5") == PriceTable.load().lookup("claude-haiku-4-5")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[models.x\ninput = 1", "not valid TOML"),
        ("[models.gpt-4o]\ninput = 'cheap'", "models.gpt-4o.input: must be a non-negative"),
        ("[models.gpt-4o]\ninput = -1", "must be a non-negative number"),
        ("[models.gpt-4o]\nouput = 3", "unknown field 'ouput'"),
        ("[models.acme]\ninput = 1", "models.acme: missing 'output'"),
        ("[models.acme]\ninput = 1\noutput = 2\ninput_includes_cache = 'yes'",
         "input_includes_cache: must be true or false"),
        ("[gpt-4o]\ninput = 1", "unknown top-level key 'gpt-4o'"),
        ("models = 3", "'models' must be a table"),
    ],
)
def test_bad_override_file_is_one_line_naming_file_and_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(content)
    with pytest.raises(PriceFileError) as caught:
        PriceTable.load(override)
    message = str(caught.value)
    assert str(override) in message
    assert problem in message
    assert "\n" not in message


def test_missing_override_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PriceFileError, match=r"nope\.toml: cannot read"):
        PriceTable.load(missing)


# --------------------------------------------------------------------- prompt caching
# A worked example, computed by hand (USD per million tokens from prices.toml):
#
#   usage: 1,000 uncached input, 3,000 cache writes of which 2,000 with the 1-hour TTL
#          (cache_creation: 1,000 at 5 minutes, 2,000 at 1 hour), 10,000 cache reads,
#          500 output.
#   claude-sonnet-4-5 (input 3, output 15):
#     1,000 x 3            =  3,000
#     1,000 x 3.75 (1.25x) =  3,750
#     2,000 x 6    (2x)    = 12,000
#    10,000 x 0.3  (0.1x)  =  3,000
#       500 x 15           =  7,500
#                            29,250 per million -> $0.029250
#   claude-haiku-4-5 (input 1, output 5), the same usage:
#     1,000 + 1,250 + 4,000 + 1,000 + 2,500 = 9,750 per million -> $0.009750
#   gpt-4o (input 2.5, cached input 1.25, output 10): prompt_tokens 12,000 of which
#   cached_tokens 10,000, completion_tokens 500:
#     2,000 x 2.5 + 10,000 x 1.25 + 500 x 10 = 5,000 + 12,500 + 5,000 = 22,500
#                                            -> $0.022500
#   Ignoring the cache (all 14,000 prompt tokens at the input price) would have said
#   Sonnet $0.0495 and Haiku $0.0165: the saving the report projects would be wrong.

CACHED_MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 1000, "output_tokens": 500,
              "cache_creation_input_tokens": 3000,
              "cache_creation": {"ephemeral_5m_input_tokens": 1000,
                                 "ephemeral_1h_input_tokens": 2000},
              "cache_read_input_tokens": 10000},
}


@pytest.mark.parametrize(("model", "expected"), [("claude-sonnet-4-5", 0.029250),
                                                 ("claude-haiku-4-5-20251001", 0.009750)])
def test_worked_example_anthropic_cache_writes_by_ttl_and_reads(
    table: PriceTable, model: str, expected: float
) -> None:
    body = json.dumps({**CACHED_MESSAGE, "model": model}).encode()
    side = side_from_normalized(anthropic_wire.normalize_body(200, body, {}), status=200,
                                prices=table)
    assert side.cost_usd == pytest.approx(expected, abs=1e-12)
    assert side.cache_creation_input_tokens == 3000 and side.cache_read_input_tokens == 10000


def test_worked_example_streamed_usage_prices_the_same(table: PriceTable) -> None:
    start = {**CACHED_MESSAGE, "content": [], "usage": {**CACHED_MESSAGE["usage"],
                                                         "output_tokens": 1}}
    stream = AnthropicStream()
    for name, data in [
        ("message_start", {"type": "message_start", "message": start}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 500}}),
        ("message_stop", {"type": "message_stop"}),
    ]:
        stream.feed(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
    side = side_from_normalized(stream.finish(), status=200, prices=table)
    assert side.cost_usd == pytest.approx(0.029250, abs=1e-12)


def test_worked_example_openai_cached_input(table: PriceTable) -> None:
    completion = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12000, "completion_tokens": 500, "total_tokens": 12500,
                  "prompt_tokens_details": {"cached_tokens": 10000}},
    }
    norm = openai_wire.normalize_body(200, json.dumps(completion).encode(), {})
    side = side_from_normalized(norm, status=200, prices=table)
    assert side.cost_usd == pytest.approx(0.022500, abs=1e-12)


def test_one_hour_writes_without_a_one_hour_price_are_unknown_not_guessed() -> None:
    price = Price(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)
    assert price.cost(0, 0, 1000, 0, cache_creation_1h_input_tokens=0) == pytest.approx(
        0.00125)
    assert price.cost(0, 0, 1000, 0, cache_creation_1h_input_tokens=400) is None


def test_price_files_may_set_the_one_hour_write_price(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text("[models.claude-haiku-4-5]\ncache_write_1h = 3.0\n")
    price = PriceTable.load(override).lookup("claude-haiku-4-5")
    assert price is not None and price.cache_write_1h == 3.0 and price.cache_write == 1.25
