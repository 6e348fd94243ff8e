"""A judge as a real HTTP server: the Messages API and Chat Completions, strict about the
judge protocol and the Messages rules, recording what it was asked.

Enforced (a 4xx in the API's own error shape otherwise): credentials; the
``anthropic-version`` header present and a known version; under ``2026-10-21`` no
``temperature``/``top_p``/``top_k``; never ``temperature`` and ``top_p`` together;
``max_tokens`` and the other required fields (the simulator's own rules); the tool
``verdict`` defined and forced by ``tool_choice``. The answer is a ``tool_use`` block
(a ``tool_calls`` function call for OpenAI) whose winner comes from :attr:`decide`,
given the texts of answer A and answer B as the prompt shows them.

Usage::

    judge = await fake_judge_server()           # fixture factory
    judge.decide = lambda a, b: "A"             # a judge with a position bias
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shadowproxy.simulator import ANTHROPIC_VERSIONS, SAMPLING_FREE_VERSION, anthropic_problem

# The protocol's fences: a marker on the first line, then <answer_A-MARKER> … tags. Read
# here with a parser of the double's own, not the product's read_prompt.
_MARKER = re.compile(r"carry the marker ([0-9a-f]+)\.")


def worse_marked(a: str, b: str) -> str:
    """The default judge: an answer containing WRONG loses; otherwise a tie."""
    bad_a, bad_b = "WRONG" in a, "WRONG" in b
    if bad_a == bad_b:
        return "tie"
    return "B" if bad_a else "A"


@dataclass(slots=True)
class JudgeCall:
    api: str  # "messages" or "openai"
    headers: dict[str, str]
    body: dict[str, Any]
    answer_a: str
    answer_b: str


@dataclass
class FakeJudge:
    url: str = ""
    asked: list[JudgeCall] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # why requests got a 4xx
    decide: Callable[[str, str], str] = worse_marked
    fail_status: int | None = None  # answer every call with this error status
    delay_s: float = 0.0
    output_tokens: int = 40
    in_flight: int = 0
    max_in_flight: int = 0


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status=status)


def _answers(prompt: str) -> tuple[str, str]:
    """What the judge reads as answer A and answer B: between the tags carrying the
    call's marker, as an LLM told about the marker would read them."""
    marker = _MARKER.search(prompt)  # the first: our line precedes all data
    if marker is None:
        return "", ""
    found = {}
    for side in "AB":
        tag = re.escape(f"answer_{side}-{marker[1]}")
        match = re.search(f"<{tag}>\n(.*)\n</{tag}>", prompt, re.DOTALL)
        found[side] = match[1] if match else ""
    return found["A"], found["B"]


def _prompt_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(b.get("text", "") for b in content if isinstance(b, dict))
    return "\n".join(parts)


def messages_problem(headers: Any, body: Any) -> str | None:
    """Why a Messages judge call breaks the rules, or None."""
    if not headers.get("x-api-key") and not headers.get("authorization"):
        return "authentication: no x-api-key"
    version = headers.get("anthropic-version")
    if version is None:
        return "anthropic-version: header is required"
    if version not in ANTHROPIC_VERSIONS:
        return f"anthropic-version: invalid version {version!r}"
    if problem := anthropic_problem(body, version):
        return problem
    if version == SAMPLING_FREE_VERSION and any(k in body for k in ("temperature", "top_p",
                                                                      "top_k")):
        return "sampling parameters are not accepted under 2026-10-21"
    if "temperature" in body and "top_p" in body:
        return "`temperature` and `top_p` cannot both be specified"
    if not any(t.get("name") == "verdict" for t in body.get("tools", [])):
        return "judge protocol: the tool verdict is not defined"
    if body.get("tool_choice") != {"type": "tool", "name": "verdict"}:
        return "judge protocol: tool_choice must force the tool verdict"
    return None


def openai_problem(headers: Any, body: Any) -> str | None:
    if not headers.get("authorization", "").startswith("Bearer "):
        return "authentication: no bearer token"
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return "messages: required"
    if "temperature" in body and "top_p" in body:
        return "temperature and top_p together"
    if body.get("tool_choice") != {"type": "function", "function": {"name": "verdict"}}:
        return "judge protocol: tool_choice must force the function verdict"
    if not any(t.get("function", {}).get("name") == "verdict" for t in body.get("tools", [])):
        return "judge protocol: the function verdict is not defined"
    return None


async def _answer(judge: FakeJudge, api: str, request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body is not JSON")
    headers = {k.lower(): v for k, v in request.headers.items()}
    check = messages_problem if api == "messages" else openai_problem
    if problem := check(headers, body):
        judge.rejected.append(problem)
        status = 401 if problem.startswith("authentication") else 400
        return _error(status, problem)
    prompt = _prompt_text(body["messages"])
    a, b = _answers(prompt)
    judge.asked.append(JudgeCall(api, headers, body, a, b))
    judge.in_flight += 1
    judge.max_in_flight = max(judge.max_in_flight, judge.in_flight)
    try:
        if judge.delay_s:
            await asyncio.sleep(judge.delay_s)  # simulated thinking time, not a sync point
    finally:
        judge.in_flight -= 1
    if judge.fail_status is not None:
        return _error(judge.fail_status, "the judge is overloaded", "overloaded_error")
    winner = judge.decide(a, b)
    verdict = {"winner": winner, "reason": f"{winner} is the better answer."}
    input_tokens = len(prompt) // 4 + 300
    if api == "messages":
        return web.json_response({
            "id": "msg_judge", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "verdict",
                         "input": verdict}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": judge.output_tokens},
        })
    return web.json_response({
        "id": "chatcmpl-judge", "object": "chat.completion", "created": 1_750_000_000,
        "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "verdict", "arguments": json.dumps(verdict)}}]}}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": judge.output_tokens,
                  "total_tokens": input_tokens + judge.output_tokens},
    })


def make_judge_app(judge: FakeJudge) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        return await _answer(judge, "messages", request)

    async def chat(request: web.Request) -> web.Response:
        return await _answer(judge, "openai", request)

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
async def fake_judge(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> FakeJudge:
    judge = FakeJudge()
    server = await aiohttp_server(make_judge_app(judge))
    judge.url = f"http://{server.host}:{server.port}"
    return judge
