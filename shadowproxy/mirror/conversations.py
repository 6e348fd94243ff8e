"""What the primary remembers for ``previous_response_id``, rebuilt for the shadow.

A Responses request that continues a stored response carries only the new turn; the
primary holds the rest, the shadow holds nothing. So the mirror keeps what it saw of
each response — that request's input items and the primary's output items, plus the id
it continued — and walks the chain back to rebuild the whole history::

    resp_3 ─parent─► resp_2 ─parent─► resp_1 ─parent─► None
    history(resp_3) = items(resp_1) + items(resp_2) + items(resp_3)

Bounded by count and bytes, least recently used first out, in the mirror process only
(never stored). A chain that reaches a response this mirror never saw, or forgot, makes
the shadow untranslatable with that reason: a shadow asked without its history would be
a wrong call, not evidence.

The client can send turn 2 as soon as it has read turn 1, which can be before the mirror
has heard that turn 1 ended; a request whose previous response is unknown therefore waits
(bounded) for the Responses exchanges that were in flight when it started.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from shadowproxy.exchange import ExchangeEnd
from shadowproxy.mirror.assemble import _Decoder
from shadowproxy.mirror.translate_responses import responses_input_items
from shadowproxy.mirror.turns import Untranslatable, show
from shadowproxy.wire._shared import parse_json
from shadowproxy.wire.responses import ResponsesStream

__all__ = ["ResponseHistory", "primary_response"]


@dataclass(slots=True)
class _Link:
    parent: str | None
    items: list[Any]  # the request's input items, then the primary's output items
    size: int


@dataclass(slots=True)
class _InFlight:
    parent: str | None
    items: list[Any]
    # Exchanges started before this one and not yet ended: one of them may be the parent.
    before: frozenset[str] = field(default_factory=frozenset)


class ResponseHistory:
    def __init__(self, *, max_responses: int = 10_000, max_bytes: int = 64 << 20) -> None:
        self._max_responses = max_responses
        self._max_bytes = max_bytes
        self._links: OrderedDict[str, _Link] = OrderedDict()
        self._bytes = 0
        self._in_flight: dict[str, _InFlight] = {}
        self._ended = asyncio.Event()

    def __len__(self) -> int:
        return len(self._links)

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- the exchange's life -------------------------------------------------------------

    def started(self, exchange_id: str, request: Any) -> bool:
        """Note a Responses exchange; True when its history must wait for others to end."""
        parent = request.get("previous_response_id") if isinstance(request, dict) else None
        parent = parent if isinstance(parent, str) else None
        before = frozenset(self._in_flight) if parent and parent not in self._links \
            else frozenset()
        self._in_flight[exchange_id] = _InFlight(parent, responses_input_items(request), before)
        return bool(before)

    def ended(self, end: ExchangeEnd) -> None:
        """The primary's answer is complete: remember it under its response id."""
        flight = self._in_flight.pop(end.exchange_id, None)
        try:
            response = primary_response(end) if flight is not None else None
            if flight is None or response is None:
                return
            response_id = response.get("id")
            output = response.get("output")
            if not isinstance(response_id, str) or not isinstance(output, list):
                return
            self._remember(response_id, _Link(flight.parent, [*flight.items, *output], 0))
        finally:
            self._ended.set()
            self._ended = asyncio.Event()

    async def settled(self, exchange_id: str, timeout_s: float) -> None:
        """Wait until this exchange's parent is known or nothing it could be is in flight."""
        flight = self._in_flight.get(exchange_id)
        if flight is None:
            return
        async with asyncio.timeout(timeout_s):
            while flight.parent not in self._links and flight.before & self._in_flight.keys():
                await self._ended.wait()

    # -- lookups --------------------------------------------------------------------------

    def history(self, request: Any) -> list[Any] | None:
        """Earlier items of the conversation ``request`` continues; None when it starts one.

        Raises :class:`Untranslatable` when the chain cannot be rebuilt.
        """
        if not isinstance(request, dict) or request.get("previous_response_id") is None:
            return None
        first = request["previous_response_id"]
        if not isinstance(first, str):
            raise Untranslatable(f"previous_response_id {show(first)} is not a string")
        segments: list[list[Any]] = []
        current: str | None = first
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            link = self._links.get(current)
            if link is None:
                if current == first:
                    raise Untranslatable(
                        f"previous_response_id {show(first)}: a response this mirror never "
                        "saw (answered before it started, through another worker, or "
                        "forgotten), so the shadow cannot have its history"
                    )
                raise Untranslatable(
                    f"previous_response_id {show(first)}: its history reaches response "
                    f"{show(current)}, which this mirror never saw or has forgotten"
                )
            self._links.move_to_end(current)
            segments.append(link.items)
            current = link.parent
        return [item for segment in reversed(segments) for item in segment]

    def _remember(self, response_id: str, link: _Link) -> None:
        link.size = len(json.dumps(link.items, default=str))
        if link.size > self._max_bytes:
            return
        old = self._links.pop(response_id, None)
        if old is not None:
            self._bytes -= old.size
        self._links[response_id] = link
        self._bytes += link.size
        while self._links and (len(self._links) > self._max_responses
                               or self._bytes > self._max_bytes):
            _, evicted = self._links.popitem(last=False)
            self._bytes -= evicted.size


def primary_response(end: ExchangeEnd) -> dict[str, Any] | None:
    """The whole ``response`` object the primary answered (body or terminal event)."""
    if end.status is None or not 200 <= end.status < 300 or end.truncated:
        return None
    decoder = _Decoder(end.headers.get("content-encoding"))
    if "text/event-stream" in end.headers.get("content-type", ""):
        stream = ResponsesStream()
        for _, chunk in end.chunks:
            stream.feed(decoder.feed(chunk))
        stream.finish()
        return stream.response
    obj = parse_json(b"".join(decoder.feed(chunk) for _, chunk in end.chunks))
    return obj if isinstance(obj, dict) and obj.get("object", "response") == "response" \
        else None
