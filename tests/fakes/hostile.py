"""A primary that answers in OpenAI's Chat Completions wire format, with the worst
answers found against the mirror, chosen per request by an ``x-hostile`` header:

==================  ===================================================================
``split-emoji``     an SSE stream whose two deltas carry the two UTF-16 halves of 😀
                    as separate ``\\ud83d`` / ``\\ude00`` JSON escapes
``lone-surrogate``  a JSON answer whose text holds a lone ``\\udfff`` escape
``deep-answer``     a tool call whose arguments nest ``x-hostile-depth`` levels deep
``gzip-bomb``       ``Content-Encoding: gzip``: ~200 KB that inflate to 200 MB
(none)              an ordinary answer, ``Answer to: <last user text>``
==================  ===================================================================

The bodies are written as raw JSON text on purpose: a library serialiser would never
produce a lone surrogate escape, and a real provider may.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.providers import ServerFactory

BOMB_INFLATED_BYTES = 200 << 20


@functools.cache
def gzip_bomb() -> bytes:
    """A valid gzip body of a JSON-looking answer padded with 200 MB of spaces."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    parts = [z.compress(b'{"id":"chatcmpl-bomb","object":"chat.completion","choices":[')]
    parts += [z.compress(block) for _ in range(BOMB_INFLATED_BYTES >> 20)]
    parts.append(z.compress(b"]}"))
    parts.append(z.flush())
    return b"".join(parts)


def _completion(content_json: str, *, tool_calls_json: str | None = None) -> bytes:
    message = f'{{"role":"assistant","content":{content_json}'
    finish = "stop"
    if tool_calls_json is not None:
        message += f',"tool_calls":{tool_calls_json}'
        finish = "tool_calls"
    message += "}"
    return (
        '{"id":"chatcmpl-hostile","object":"chat.completion","created":1750000000,'
        '"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":' + message
        + f',"logprobs":null,"finish_reason":"{finish}"}}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}'
    ).encode()


def _chunk(delta_json: str, finish: str | None = None) -> bytes:
    finish_json = "null" if finish is None else f'"{finish}"'
    return (
        'data: {"id":"chatcmpl-hostile","object":"chat.completion.chunk",'
        '"created":1750000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,'
        f'"delta":{delta_json},"logprobs":null,"finish_reason":{finish_json}}}]}}\n\n'
    ).encode()


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    hostile = request.headers.get("x-hostile", "")
    if hostile == "split-emoji":
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ('{"role":"assistant","content":""}', '{"content":"smile "}',
                      '{"content":"\\ud83d"}', '{"content":"\\ude00"}'):
            await response.write(_chunk(piece))
        await response.write(_chunk("{}", "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    if hostile == "lone-surrogate":
        return web.Response(body=_completion('"lone \\udfff half"'),
                            content_type="application/json")
    if hostile == "deep-answer":
        depth = int(request.headers.get("x-hostile-depth", "600"))
        arguments = json.dumps("[" * depth + "]" * depth)
        calls = ('[{"id":"call_1","type":"function","function":{"name":"f","arguments":'
                 + arguments + "}}]")
        return web.Response(body=_completion("null", tool_calls_json=calls),
                            content_type="application/json")
    if hostile == "gzip-bomb":
        return web.Response(body=gzip_bomb(), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
    try:
        prompt = str(json.loads(body)["messages"][-1]["content"])[:60]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return web.Response(status=400, content_type="application/json", body=(
            b'{"error":{"message":"We could not parse the JSON body of your request.",'
            b'"type":"invalid_request_error","param":null,"code":null}}'))
    return web.Response(body=_completion(json.dumps(f"Answer to: {prompt}")),
                        content_type="application/json")


@pytest.fixture
async def hostile_primary(aiohttp_server: ServerFactory) -> AsyncIterator[str]:
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/chat/completions", chat)
    server: TestServer = await aiohttp_server(app)
    yield f"http://{server.host}:{server.port}"
