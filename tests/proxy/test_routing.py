"""Which requests are mirrored, and errors in the shape the application's SDK expects."""

from __future__ import annotations

import json

import pytest

from shadowproxy.proxy.routing import error_body, mirrored_api, speaks_anthropic
from shadowproxy.records import Api


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
