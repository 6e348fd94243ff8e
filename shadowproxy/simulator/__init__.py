"""Simulated Anthropic and OpenAI providers for the tests, the offline demo and benchmarks.

Answers are pure functions of the request, so a test knows the truth without asking:
the text is ``Answer to: <first 60 characters of the last user turn>`` whatever the API
or model, so an OpenAI primary and a Claude shadow agree unless told otherwise. The
simulator enforces the wire rules of WIRE.md (auth, ``anthropic-version``, sampling
parameters, required fields, event order, padded stream JSON): a double that ignored
them would let a real bug through.

Scripting, per request:

=============================  ==========================================================
``#tool`` in the prompt        call the first tool (``{"query": <prompt>}``) if tools exist
``#json``                      the text is a JSON object
``#disagree``                  claude-haiku* models answer something else entirely
``#error=529``                 claude-haiku* models answer with that error status
``#slow=2000``                 claude-haiku* models wait that many ms first
``#midstream-error``           claude-haiku* streams fail after a few deltas
``#refusal``                   claude-haiku* stop part way with ``stop_reason: refusal``
``x-sim-delay-ms: N``          wait N ms before answering
``x-sim-chunk-ms: N``          N ms between stream events
``x-sim-chunks: N``            text split into N deltas
``x-sim-error: S``             answer with status S in the API's error shape
``x-sim-error-attempts: K``    ... only while the SDK's ``x-stainless-retry-count`` < K
``x-sim-midstream-error: 1``   the stream fails after a few deltas (after HTTP 200)
=============================  ==========================================================

The headers reach only the primary (the proxy never forwards them to the shadow); the
prompt tags are for the shadow, so they apply only to ``claude-haiku*`` models.

Messages features of 2026 (``simulator/features.py``), for every model: the rules of
``output_config`` and thinking are enforced (400 as the API would); a JSON schema, in
``output_config.format`` or OpenAI's ``response_format``, is answered with the same
instance of it; ``cache_control`` breakpoints write the prompt cache on first sight
and read it afterwards (usage with the TTL breakdown); a ``web_search_*`` tool makes
Claude search first (``server_tool_use``, ``web_search_tool_result``, cited text);
``GET /v1/models/{id}`` answers from ``app[MODEL_CATALOGUE]`` with ``lifecycle``,
``retires_at`` and ``max_tokens``.

Claude on Vertex AI (``/projects/P/locations/R/publishers/anthropic/models/M:rawPredict``
and ``:streamRawPredict``) and on Amazon Bedrock (``/model/M/invoke`` and
``/model/M/invoke-with-response-stream``) give the same answers, with each platform's
auth, body rules and, for Bedrock's stream, AWS event-stream framing.

OpenAI's Responses API (``/v1/responses``) answers the same way, with typed stream events
and stored responses for ``previous_response_id``.

A Messages request that forces the tool ``verdict`` is a judge call: the simulator grades
both answers against what it would itself answer (``judge.py``), with
``judge_position_bias`` as the chance of answering "A" regardless. For a known truth,
``shadow_worse_rate`` (per ``#tag=NAME`` in the prompt) and ``shadow_paraphrase_rate``
make ``claude-haiku*`` answers subtly wrong or paraphrased (``variants.py``).

``SimulatorConfig(deterministic=True)`` derives ids, request ids and ``created`` from the
request, so the same request gets the same bytes: what a relay test compares against.
"""

from __future__ import annotations

from shadowproxy.simulator.answers import (
    ANTHROPIC_VERSIONS,
    CONFIG,
    DISAGREEMENT,
    MODEL_ALIASES,
    RECEIVED,
    SAMPLING_FREE_VERSION,
    SAMPLING_PARAMETERS,
    SHADOW_MODEL_PREFIX,
    Answer,
    Controls,
    IdSource,
    Prompt,
    ReceivedRequest,
    SimulatorConfig,
    ToolUse,
    anthropic_prompt,
    compose_answer,
    is_shadow_model,
    openai_prompt,
    read_controls,
    split_text,
)
from shadowproxy.simulator.anthropic import (
    StreamEvent,
    Turn,
    anthropic_error_type,
    anthropic_events,
    anthropic_message,
    anthropic_problem,
    anthropic_stream,
    handle_messages,
    messages_turn,
)
from shadowproxy.simulator.app import handle_echo, handle_models, handle_unknown, main, make_app
from shadowproxy.simulator.cloud import (
    BEDROCK_VERSION,
    VERTEX_VERSION,
    bedrock_frame,
    cloud_model_name,
    cloud_problem,
    event_stream_message,
    handle_bedrock,
    handle_vertex,
)
from shadowproxy.simulator.openai import (
    handle_chat_completions,
    openai_chunks,
    openai_completion,
    openai_problem,
)

__all__ = [
    "ANTHROPIC_VERSIONS",
    "BEDROCK_VERSION",
    "CONFIG",
    "DISAGREEMENT",
    "MODEL_ALIASES",
    "RECEIVED",
    "SAMPLING_FREE_VERSION",
    "SAMPLING_PARAMETERS",
    "SHADOW_MODEL_PREFIX",
    "VERTEX_VERSION",
    "Answer",
    "Controls",
    "IdSource",
    "Prompt",
    "ReceivedRequest",
    "SimulatorConfig",
    "StreamEvent",
    "ToolUse",
    "Turn",
    "anthropic_error_type",
    "anthropic_events",
    "anthropic_message",
    "anthropic_problem",
    "anthropic_prompt",
    "anthropic_stream",
    "bedrock_frame",
    "cloud_model_name",
    "cloud_problem",
    "compose_answer",
    "event_stream_message",
    "handle_bedrock",
    "handle_chat_completions",
    "handle_echo",
    "handle_messages",
    "handle_models",
    "handle_unknown",
    "handle_vertex",
    "is_shadow_model",
    "main",
    "make_app",
    "messages_turn",
    "openai_chunks",
    "openai_completion",
    "openai_problem",
    "openai_prompt",
    "read_controls",
    "split_text",
]
