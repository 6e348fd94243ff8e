"""Provider wire formats → :class:`~shadowproxy.wire.normalized.Normalized`, with no I/O.

::

    bytes as sent to the client ──► sse.SSEParser ──► anthropic.AnthropicStream ─┐
                                                  ├─► openai.OpenAIStream ────────┤
                                                  └─► responses.ResponsesStream ──┼─► Normalized
    whole HTTP answer ──► anthropic / openai / responses .normalize_body ─────────┘

The mirror runs these on both sides of every exchange, so they are incremental (each
byte is looked at once) and never raise: malformed events are skipped, a broken answer
ends up in ``Normalized.error``. Import the provider modules directly; the helpers they
share live in the private :mod:`._shared`.
"""

from __future__ import annotations

from shadowproxy.wire._shared import StreamNormalizer
from shadowproxy.wire.normalized import Normalized, ToolCall

__all__ = ["Normalized", "StreamNormalizer", "ToolCall"]
