"""Which requests are mirrored, and errors in the shape the application's SDK expects."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.proxy.routing import error_body, mirrored_api, speaks_anthropic
from shadowproxy.records import Api
from tests.proxy.test_handler import _free_port


@pytest.mark.parametrize(("method", "path", "api"), [
    ("POST", "/v1/messages", Api.ANTHROPIC_MESSAGES),
    ("POST", "/gateway/v1/messages/?beta=true", Api.ANTHROPIC_MESSAGES),
    ("POST", "/v1/chat/completions", Api.OPENAI_CHAT),
    ("POST", "/openai/deployments/gpt4/chat/completions?api-version=2024-06-01",
     Api.OPENAI_CHAT),
    ("GET", "/v1/messages", None),
    ("POST", "/v1/messages/count_tokens", None),
    ("POST", "/v1/models", None),
    ("POST", "/v1/completions", None),
])
def test_only_messages_and_chat_completions_posts_are_mirrored(
    method: str, path: str, api: Api | None
) -> None:
    assert mirrored_api(method, path) == api


def test_errors_speak_anthropic_for_its_paths_or_its_version_header() -> None:
    assert speaks_anthropic("/v1/messages", {})
    assert speaks_anthropic("/v1/models", {"anthropic-version": "2023-06-01"})
    assert not speaks_anthropic("/v1/chat/completions", {})


def test_error_bodies_have_each_providers_shape() -> None:
    anthropic = json.loads(error_body(True, 413, "too large"))
    assert anthropic["type"] == "error"
    assert anthropic["error"] == {"type": "request_too_large", "message": "too large"}
    openai = json.loads(error_body(False, 502, "primary unreachable"))
    assert openai["error"]["message"] == "primary unreachable"
    assert openai["error"]["type"] == "upstream_error"
    assert set(openai["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(("method", "path", "api"), [
    ("POST", "/v1/responses", Api.OPENAI_RESPONSES),
    ("POST", "/openai/v1/responses/?api-version=preview", Api.OPENAI_RESPONSES),
    ("GET", "/v1/responses/resp_123", None),  # reading a stored response
    ("POST", "/v1/responses/resp_123/cancel", None),
    ("POST", "/v1/responses/input_tokens", None),
    ("DELETE", "/v1/responses/resp_123", None),
    ("POST", "/v1/chat/completions", Api.OPENAI_CHAT),
    ("POST", "/v1/messages", Api.ANTHROPIC_MESSAGES),
])
def test_responses_are_mirrored_and_their_other_endpoints_are_not(
    method: str, path: str, api: Api | None
) -> None:
    assert mirrored_api(method, path) == api


async def test_proxy_errors_on_responses_are_in_openais_shape(aiohttp_server: Any) -> None:
    app = make_proxy_app(primary_url=f"http://127.0.0.1:{_free_port()}", mirror=None,
                         tag_header="x-shadow-tag", max_body_bytes=1 << 20)
    proxy: TestServer = await aiohttp_server(app)
    client = openai.AsyncOpenAI(base_url=f"http://{proxy.host}:{proxy.port}/v1",
                                api_key="sk-test", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.responses.create(model="gpt-4.1", input="Hi")
    assert info.value.status_code == 502
    body: Any = info.value.body
    assert body["message"] == "the upstream provider could not be reached"
    assert body["type"] == "upstream_error"
