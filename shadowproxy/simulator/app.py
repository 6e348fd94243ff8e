"""The forwarded-only endpoints, the routes, and the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from shadowproxy.simulator.answers import CONFIG, RECEIVED, SimulatorConfig
from shadowproxy.simulator.anthropic import handle_messages
from shadowproxy.simulator.cloud import handle_bedrock, handle_vertex
from shadowproxy.simulator.features import (
    MODEL_CATALOGUE,
    PROMPT_CACHE,
    default_catalogue,
    model_info,
)
from shadowproxy.simulator.openai import _openai_error, handle_chat_completions
from shadowproxy.simulator.plumbing import _json_response, _receive
from shadowproxy.simulator.responses import STORED_RESPONSES, handle_responses

_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o")
_ANTHROPIC_MODELS = ("claude-haiku-4-5-20251001", "claude-sonnet-4-6")


async def handle_models(request: web.Request) -> web.Response:
    _, ids = await _receive(request)
    if "anthropic-version" in request.headers:
        data: list[dict[str, Any]] = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-10-01T00:00:00Z"}
            for m in _ANTHROPIC_MODELS
        ]
        listing: dict[str, Any] = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"],
            "last_id": data[-1]["id"],
        }
        return _json_response(request, listing, headers={"request-id": ids.new("req_sim")})
    data = [
        {"id": m, "object": "model", "created": 1721172741, "owned_by": "system"}
        for m in _OPENAI_MODELS
    ]
    return _json_response(
        request, {"object": "list", "data": data}, headers={"x-request-id": ids.new("req_")}
    )


async def handle_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one model's ``ModelInfo``, lifecycle fields included."""
    _, ids = await _receive(request)
    model_id = request.match_info["model_id"]
    entry = request.app[MODEL_CATALOGUE].get(model_id)
    request_id = ids.new("req_sim")
    if entry is None:
        error = {"type": "error", "request_id": request_id,
                 "error": {"type": "not_found_error", "message": f"model: {model_id}"}}
        return _json_response(request, error, status=404, headers={"request-id": request_id})
    return _json_response(request, model_info(model_id, entry),
                          headers={"request-id": request_id})


async def handle_echo(request: web.Request) -> web.Response:
    """Describes the request it got, so passthrough tests see what arrived upstream."""
    _, ids = await _receive(request)
    body = await request.read()
    description = {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "query": {k: request.query.getall(k) for k in request.query},
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body_length": len(body),
    }
    return _json_response(request, description, headers={"x-request-id": ids.new("req_")})


async def handle_unknown(request: web.Request) -> web.Response:
    _, ids = await _receive(request)
    message = f"Invalid URL ({request.method} {request.path})"
    return _openai_error(request, ids, 404, message, code="unknown_url")


def make_app(config: SimulatorConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CONFIG] = config or SimulatorConfig()
    app[RECEIVED] = []
    app[PROMPT_CACHE] = set()
    app[MODEL_CATALOGUE] = default_catalogue()
    app[STORED_RESPONSES] = {}
    app.router.add_post("/v1/messages", handle_messages)
    app.router.add_post("/v1/chat/completions", handle_chat_completions)
    app.router.add_post("/v1/responses", handle_responses)
    app.router.add_get("/v1/models", handle_models)
    app.router.add_get("/v1/models/{model_id}", handle_model)
    app.router.add_post(
        "/projects/{project}/locations/{region}/publishers/anthropic/models/{target}",
        handle_vertex,
    )
    app.router.add_post(
        r"/model/{model}/{action:invoke|invoke-with-response-stream}", handle_bedrock
    )
    app.router.add_route("*", "/echo/{tail:.*}", handle_echo)
    app.router.add_route("*", "/{tail:.*}", handle_unknown)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shadowproxy.simulator",
        description="Simulated Anthropic and OpenAI providers (deterministic answers).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--shadow-latency-ms", type=float, default=None)
    parser.add_argument("--chunk-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = SimulatorConfig(
        latency_s=args.latency_ms / 1000,
        chunk_interval_s=args.chunk_ms / 1000,
        shadow_latency_s=None if args.shadow_latency_ms is None else args.shadow_latency_ms / 1000,
        # Benchmarks send far too many requests to keep them all.
        record=False,
    )
    web.run_app(make_app(config), host=args.host, port=args.port, access_log=None)
