"""Which requests are mirrored, and the shape of the proxy's own errors (routing.py)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from shadowproxy.records import Api
from shadowproxy.routing import mirrored_api
from shadowproxy.server import make_proxy_app
from tests.test_proxy import _free_port


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
