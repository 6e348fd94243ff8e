"""What the primary remembers for ``previous_response_id``, rebuilt for the shadow.

A Responses request that continues a stored response carries only the new turn; the
primary holds the rest, the shadow holds nothing. So the mirror keeps what it saw of
each response — that request's input items and the primary's output items, plus the id
it continued — and walks the chain back to rebuild the whole history::

    resp_3 ─parent─► resp_2 ─parent─► resp_1 ─parent─► None
    history(resp_3) = items(resp_1) + items(resp_2) + items(resp_3)

Each answered turn is redacted (``REDACT``, as everything stored) and kept twice: in
this process (bounded by count and bytes, least recently used out) and in PostgreSQL
(:class:`~shadowproxy.mirror.history_store.HistoryStore`), where every worker and
replica finds it. The shadow is always sent the redacted history, so its request does
not depend on which replica saw the earlier turns. A chain with a link neither place
holds (answered before shadowproxy started, expired, or the database unreachable) makes
the shadow untranslatable with that reason, and counts a miss: a shadow asked without
its history would be a wrong call, not evidence.

The client can send turn 2 as soon as it has read turn 1, which can be before the mirror
that saw turn 1 has heard it ended, or stored it. A request whose chain is incomplete
here therefore waits (bounded) for the Responses exchanges that were in flight in this
process when it started, then asks the database, again for a few seconds while the
link is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shadowproxy.exchange import ExchangeEnd
from shadowproxy.mirror.assemble import _Decoder
from shadowproxy.mirror.translate_responses import responses_input_items
from shadowproxy.mirror.turns import Untranslatable, show
from shadowproxy.redact import Redactor
from shadowproxy.wire._shared import parse_json
from shadowproxy.wire.responses import ResponsesStream

__all__ = ["ResponseHistory", "SharedHistory", "SharedTurn", "primary_response"]

# How long a turn waits for a link another mirror has not stored yet.
SHARED_WAIT_S = 5.0


class SharedTurn(Protocol):
    @property
    def response_id(self) -> str: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def items(self) -> list[Any]: ...
    @property
    def expires_at(self) -> datetime: ...


class SharedHistory(Protocol):
    """Where every mirror's turns meet (the database; see ``history_store``)."""

    keep: timedelta

    def save(self, response_id: str, parent_id: str | None, items: list[Any]) -> None: ...
    async def chain(self, response_id: str) -> list[Any]: ...


@dataclass(slots=True)
class _Link:
    parent: str | None
    items: list[Any]  # the request's input items, then the primary's output items
    size: int
    expires_at: datetime


@dataclass(slots=True)
class _InFlight:
    parent: str | None
    items: list[Any]
    # Exchanges started before this one and not yet ended: one of them may be the parent.
    before: frozenset[str] = field(default_factory=frozenset)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ResponseHistory:
    def __init__(
        self,
        *,
        max_responses: int = 10_000,
        max_bytes: int = 64 << 20,
        shared: SharedHistory | None = None,
        redactor: Redactor | None = None,
        keep: timedelta = timedelta(hours=24),
        clock: Callable[[], datetime] = _utc_now,
        shared_wait_s: float = SHARED_WAIT_S,
    ) -> None:
        self._max_responses = max_responses
        self._max_bytes = max_bytes
        self._shared = shared
        self._redactor = redactor
        self._keep = shared.keep if shared is not None else keep
        self._clock = clock
        self._shared_wait_s = shared_wait_s
        self._links: OrderedDict[str, _Link] = OrderedDict()
        self._bytes = 0
        self._in_flight: dict[str, _InFlight] = {}
        self._ended = asyncio.Event()
        # Chains that could not be rebuilt, by cause: "unknown" (no mirror stored the
        # link, or it expired), "database" (the shared history could not be read).
        self.misses: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._links)

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- the exchange's life -------------------------------------------------------------

    def started(self, exchange_id: str, request: Any) -> bool:
        """Note a Responses exchange; True when its history must be resolved first
        (:meth:`resolve`): it continues a chain this process does not hold whole."""
        parent = request.get("previous_response_id") if isinstance(request, dict) else None
        parent = parent if isinstance(parent, str) else None
        missing = parent is not None and self._first_missing(parent) is not None
        before = frozenset(self._in_flight) if missing else frozenset()
        self._in_flight[exchange_id] = _InFlight(parent, responses_input_items(request), before)
        return missing and (bool(before) or self._shared is not None)

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
            items = [*flight.items, *output]
            if self._redactor:
                items = self._redactor.json(items)
            self._remember(response_id, flight.parent, items, self._clock() + self._keep)
            if self._shared is not None:
                self._shared.save(response_id, flight.parent, items)
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

    async def resolve(self, exchange_id: str, request: Any, timeout_s: float) -> None:
        """Bring this request's whole chain here: first from exchanges in flight in this
        process, then from the shared history, waiting a little for a link another
        mirror is about to store. A chain still incomplete counts a miss; the
        translation then says what is missing (:meth:`history`)."""
        parent = request.get("previous_response_id") if isinstance(request, dict) else None
        if not isinstance(parent, str):
            return
        with contextlib.suppress(TimeoutError):
            await self.settled(exchange_id, timeout_s)
        missing = self._first_missing(parent)
        if missing is None:
            return
        if self._shared is None:
            self.misses["unknown"] += 1
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout_s, self._shared_wait_s)
        delay = 0.05
        while missing is not None:
            try:
                turns = await self._shared.chain(missing)
            except Exception:
                self.misses["database"] += 1
                return
            for turn in reversed(turns):
                self._remember(turn.response_id, turn.parent_id, turn.items, turn.expires_at,
                               size=None)
            missing = self._first_missing(parent)
            if missing is not None:
                if loop.time() + delay > deadline:
                    self.misses["unknown"] += 1
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    # -- lookups --------------------------------------------------------------------------

    def _link(self, response_id: str) -> _Link | None:
        link = self._links.get(response_id)
        if link is not None and link.expires_at <= self._clock():
            self._forget(response_id)
            return None
        return link

    def _first_missing(self, response_id: str) -> str | None:
        """The first link of the chain from ``response_id`` not held here; None: whole."""
        current: str | None = response_id
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            link = self._link(current)
            if link is None:
                return current
            current = link.parent
        return None

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
            link = self._link(current)
            if link is None:
                if current == first:
                    raise Untranslatable(
                        f"previous_response_id {show(first)}: a response shadowproxy never "
                        "saw (answered before it started) or no longer holds (expired, "
                        "forgotten, or its database was unreachable), so the shadow cannot "
                        "have its history"
                    )
                raise Untranslatable(
                    f"previous_response_id {show(first)}: its history reaches response "
                    f"{show(current)}, which shadowproxy never saw or no longer holds"
                )
            self._links.move_to_end(current)
            segments.append(link.items)
            current = link.parent
        return [item for segment in reversed(segments) for item in segment]

    def _remember(self, response_id: str, parent: str | None, items: list[Any],
                  expires_at: datetime, *, size: int | None = None) -> None:
        if size is None:
            size = len(json.dumps(items, default=str))
        if size > self._max_bytes:
            return
        self._forget(response_id)
        self._links[response_id] = _Link(parent, items, size, expires_at)
        self._bytes += size
        while self._links and (len(self._links) > self._max_responses
                               or self._bytes > self._max_bytes):
            _, evicted = self._links.popitem(last=False)
            self._bytes -= evicted.size

    def _forget(self, response_id: str) -> None:
        old = self._links.pop(response_id, None)
        if old is not None:
            self._bytes -= old.size


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
