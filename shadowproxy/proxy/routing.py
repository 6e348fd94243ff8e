"""Which requests are mirrored, and in which API's words an error is spoken. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping

from shadowproxy.records import Api

# Headers that describe one hop, never the message (RFC 9110 §7.6.1), plus the ones the
# HTTP stack recomputes for the next hop.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
})
CREDENTIAL_HEADERS = frozenset({
    "authorization", "x-api-key", "api-key", "cookie", "set-cookie", "proxy-authorization",
    "x-goog-api-key",
})


def mirrored_api(method: str, path: str) -> Api | None:
    """The API of a mirrored endpoint (``POST …/v1/messages``, ``POST …/chat/completions``,
    ``POST …/v1/responses``)."""
    if method != "POST":
        return None
    bare = path.split("?", 1)[0].rstrip("/")
    if bare.endswith("/v1/messages"):
        return Api.ANTHROPIC_MESSAGES
    if bare.endswith("/chat/completions"):
        return Api.OPENAI_CHAT
    if bare.endswith("/v1/responses"):
        return Api.OPENAI_RESPONSES
    return None


def speaks_anthropic(path: str, headers: Mapping[str, str]) -> bool:
    """Whether an error for this request should be in Anthropic's shape rather than OpenAI's."""
    bare = path.split("?", 1)[0].rstrip("/")
    return bare.endswith("/v1/messages") or bare.endswith("/v1/complete") or (
        "anthropic-version" in headers or "Anthropic-Version" in headers
    )


_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
    429: "rate_limit_error", 502: "api_error", 504: "timeout_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error", 405: "invalid_request_error",
    413: "invalid_request_error", 502: "upstream_error", 504: "timeout",
}


def error_body(anthropic: bool, status: int, message: str) -> bytes:
    """An error body in the provider's own shape, so SDKs raise their usual typed error."""
    if anthropic:
        err_type = _ANTHROPIC_TYPES.get(status, "api_error")
        doc: dict[str, object] = {
            "type": "error", "error": {"type": err_type, "message": message}, "request_id": None,
        }
    else:
        err_type = _OPENAI_TYPES.get(status, "server_error")
        doc = {"error": {"message": message, "type": err_type, "param": None,
                         "code": f"shadowproxy_{status}"}}
    return json.dumps(doc).encode()
