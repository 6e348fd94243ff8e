"""Shared HTTP plumbing: receiving, recording, JSON replies and paced streams."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from shadowproxy.simulator.answers import CONFIG, RECEIVED, IdSource, ReceivedRequest, _dumps


async def _receive(request: web.Request) -> tuple[Any, IdSource]:
    """Read and parse the body, recording the request when the app records.

    Also returns the source of the answer's ids, seeded with the request when the
    simulator is deterministic.
    """
    body = await request.read()
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):  # a provider answers 400 to a poison body too
        parsed = None
    config = request.app[CONFIG]
    seeded = config.deterministic
    ids = IdSource.for_request(request.method, request.path, body) if seeded else IdSource()
    if config.record:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request.app[RECEIVED].append(
            ReceivedRequest(
                request.method, request.path, request.query_string, headers, body, parsed
            )
        )
    return parsed, ids


def _json_response(
    request: web.Request, payload: Any, *, status: int = 200, headers: Mapping[str, str]
) -> web.Response:
    data = _dumps(payload).encode()
    out = {"content-type": "application/json", **headers}
    if request.app[CONFIG].gzip and "gzip" in request.headers.get("accept-encoding", ""):
        data = gzip.compress(data, compresslevel=5, mtime=0)
        out["content-encoding"] = "gzip"
        out["vary"] = "accept-encoding"
    return web.Response(body=data, status=status, headers=out)


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _stream(
    request: web.Request,
    events: list[bytes],
    interval_s: float,
    headers: Mapping[str, str],
    *,
    content_type: str = "text/event-stream; charset=utf-8",
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "content-type": content_type,
            "cache-control": "no-cache",
            **headers,
        }
    )
    try:
        await response.prepare(request)
        if interval_s <= 0:
            # Unpaced: one write, because benchmarks push thousands of streams a second.
            await response.write(b"".join(events))
        else:
            for n, event in enumerate(events):
                if n:
                    await asyncio.sleep(interval_s)
                await response.write(event)
        await response.write_eof()
    except ConnectionError:
        pass  # the client hung up; a real provider just stops too
    return response


def _has_bearer(headers: Mapping[str, str]) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())
