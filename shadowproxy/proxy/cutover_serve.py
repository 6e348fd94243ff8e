"""Serving a request from the shadow model when a cutover plan chooses it.

::

    handler ─▶ Cutover.choose(tag, api, body): plan percent, conversation bucket,
               the Messages request (the mirror's own translation)
           ─▶ Cutover.serve: the shadow streams (its key, its provider)
                ├─ fails before its first content (connection, any error status, an
                │  error event, nothing within CUTOVER_TTFB_S) ─▶ fallback: the
                │  handler relays the primary as usual; the pair says why
                └─ content arrives ─▶ the user reads the shadow's answer in the API they
                   called (AnswerShape); a failure now cannot be taken back: the stream
                   ends as the shadow's did, the pair and the guard count it
           ─▶ then the handler asks the primary in the background for the pair

Tags without a plan cost the handler one dictionary lookup (``routed``), nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from shadowproxy.conversations import conversation_of
from shadowproxy.cutover.answer_shapes import (
    STREAM_CONTENT_TYPE,
    AnswerShape,
    AnthropicShape,
    ChatShape,
)
from shadowproxy.cutover.guard import FallbackGuard, Trip
from shadowproxy.cutover.messages_answer import MessageAssembler, is_content
from shadowproxy.cutover.plan import Plan, chosen
from shadowproxy.cutover.shadow_reply import FailureKind, ShadowEvent, ShadowFailed
from shadowproxy.cutover.to_chat import unservable
from shadowproxy.exchange import CAPTURE_LIMIT, ExchangeEnd, ShadowServed
from shadowproxy.mirror.translate import (
    Untranslatable,
    openai_to_messages,
    prepare_messages_request,
)
from shadowproxy.proxy.cutover_watch import GuardRollback, PlanWatch
from shadowproxy.proxy.shadow_client import ShadowClient, ShadowStream
from shadowproxy.records import Api, ServedBy
from shadowproxy.settings import Settings
from shadowproxy.storable import MAX_JSON_DEPTH, json_depth, shallow_enough

__all__ = ["Chosen", "Cutover", "CutoverMetrics", "CutoverSettings", "Served", "cutover_for"]

log = logging.getLogger("shadowproxy.proxy.cutover")
ROUTED_APIS = frozenset({Api.ANTHROPIC_MESSAGES.value, Api.OPENAI_CHAT.value})
SERVED_HEADER = "x-shadowproxy-served-by"


class CutoverMetrics(Protocol):
    def cutover_percent(self, tag: str, percent: int) -> None: ...

    def cutover_served(self, tag: str, served_by: str) -> None: ...

    def cutover_fallback(self, tag: str, cause: str) -> None: ...


@dataclass(frozen=True, slots=True)
class CutoverSettings:
    shadow_model: str = "claude-haiku-4-5"
    default_max_tokens: int = 4096
    server_tools: str = "skip"
    ttfb_s: float = 10.0
    answer_timeout_s: float = 120.0  # the whole answer, for an application not streaming
    guard_window: int = 200
    max_fallback_rate: float = 0.05
    poll_s: float = 2.0


@dataclass(slots=True)
class Chosen:
    """A request the plan sends to the shadow model, translated for it."""

    tag: str
    api: str
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Served:
    """The shadow's part: a response the user got, or None when the primary must answer."""

    response: web.StreamResponse | None
    info: ShadowServed


def _parse(body: bytes) -> Any:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not shallow_enough(body) and json_depth(request) > MAX_JSON_DEPTH:
        return None
    return request


class _Failed(Exception):
    def __init__(self, kind: FailureKind, cause: str) -> None:
        super().__init__(cause)
        self.kind = kind
        self.cause = cause


class Cutover:
    def __init__(self, settings: CutoverSettings, *, client: Callable[[], ShadowClient],
                 load_client: Callable[[], None] = lambda: None,
                 metrics: CutoverMetrics | None = None, dsn: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._make_client = client
        self._load_client = load_client
        # Opened when a plan first routes traffic: no shadow connections (nor, for Bedrock
        # and Vertex, the SDK) in a worker that never serves from the shadow.
        self._client: ShadowClient | None = None
        self._opening: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._clock = clock
        self.guard = FallbackGuard(settings.guard_window, settings.max_fallback_rate)
        # tag → percent, only tags with a plan above 0%: the handler's one lookup.
        self.routed: dict[str, int] = {}
        self.plans: dict[str, Plan] = {}
        # Tags this worker's guard rolled back, by the plan (started_at) it rolled back:
        # held at 0% here until the shared plan says so or a new plan starts.
        self._held_back: dict[str, datetime] = {}
        self.watch = PlanWatch(dsn, poll_s=settings.poll_s, on_plans=self.apply) \
            if dsn is not None else None
        self._actor = f"guard@{socket.gethostname()}/pid{os.getpid()}"

    # -- plans -----------------------------------------------------------------------

    def apply(self, plans: Sequence[Plan]) -> None:
        """The plans as read from the database (every poll)."""
        seen = {p.tag: p for p in plans}
        for tag, plan in seen.items():
            before = self.plans.get(tag)
            if before is not None and before.started_at != plan.started_at:
                self.guard.reset(tag)  # a new plan: old fallbacks do not count against it
            held = self._held_back.get(tag)
            if held is not None and (held != plan.started_at or plan.percent == 0):
                del self._held_back[tag]
        self.plans = seen
        routed = {tag: p.percent for tag, p in seen.items()
                  if p.percent > 0 and tag not in self._held_back}
        if routed and self._client is None and self._opening is None:
            from shadowproxy.tasks import spawn

            self._opening = spawn(self._open_client(), name="cutover-shadow-client")
        self.routed = routed
        if self._metrics is not None:
            for tag in seen:
                self._metrics.cutover_percent(tag, self.routed.get(tag, 0))

    # -- choosing --------------------------------------------------------------------

    def choose(self, tag: str, api: str, body: bytes, header: str | None) -> Chosen | None:
        """The translated request when this request's conversation is on the shadow."""
        percent = self.routed.get(tag)
        if not percent or api not in ROUTED_APIS or self._client is None:
            return None
        request: Any = None
        conversation = conversation_of(api, None, header)[0] if header else None
        if conversation is None:
            request = _parse(body)
            conversation = conversation_of(api, request, None)[0]
        if not chosen(conversation, percent):
            return None
        if request is None:
            request = _parse(body)
        if not isinstance(request, dict):
            return None
        notes: list[str] = []
        settings = self._settings
        try:
            if api == Api.ANTHROPIC_MESSAGES:
                params = prepare_messages_request(request, model=settings.shadow_model,
                                                  server_tools=settings.server_tools,
                                                  notes=notes)
            elif unservable(request) is not None:
                return None
            else:
                params = openai_to_messages(request, model=settings.shadow_model,
                                            default_max_tokens=settings.default_max_tokens,
                                            server_tools=settings.server_tools)
        except Untranslatable:
            return None  # stays on the current model; the mirror records why (skipped)
        options = request.get("stream_options")
        return Chosen(tag=tag, api=api, params=params, notes=notes,
                      stream=request.get("stream") is True,
                      include_usage=isinstance(options, dict)
                      and options.get("include_usage") is True)

    # -- serving ---------------------------------------------------------------------

    def _shape(self, chosen_request: Chosen) -> AnswerShape:
        if chosen_request.api == Api.OPENAI_CHAT:
            return ChatShape(created=int(self._clock()),
                             include_usage=chosen_request.include_usage)
        return AnthropicShape()

    async def serve(self, request: web.Request, chosen_request: Chosen,
                    headers: dict[str, str],
                    then: Callable[[ShadowServed], None]) -> Served:
        """Answer from the shadow, or say why the primary must (``response`` None).

        ``then`` gets what the shadow did once its answer reached the user (also when the
        user hung up half way): the handler asks the primary then, for the pair.
        """
        assert self._client is not None, "the cutover's lifecycle opens its client"
        answer = ExchangeEnd("", status=None, headers={"content-type": "text/event-stream"})
        info = ShadowServed(served_by=ServedBy.FALLBACK.value, sent_at=time.monotonic(),
                            answer=answer, client_stream=chosen_request.stream,
                            notes=list(chosen_request.notes))
        capture = _Capture(answer)
        stream: ShadowStream | None = None
        events: AsyncIterator[ShadowEvent] | None = None
        first: list[ShadowEvent] = []
        try:
            try:
                async with asyncio.timeout(self._settings.ttfb_s):
                    stream = await self._client.open(chosen_request.params, headers)
                    answer.status = stream.status
                    if stream.request_id:
                        answer.headers["request-id"] = stream.request_id
                    events = aiter(stream)
                    first = await _until_content(events, capture)
            except TimeoutError:
                raise _Failed(FailureKind.TTFB, f"no content within CUTOVER_TTFB_S="
                              f"{self._settings.ttfb_s:g}s") from None
            except ShadowFailed as exc:
                answer.status = exc.status
                raise _Failed(exc.kind, exc.cause) from None
            assert events is not None and stream is not None
            response = await self._answer(request, chosen_request, stream, events, first,
                                          capture, info)
        except _Failed as failed:
            answer.error = failed.cause
            info.reason = f"fallback: {failed.cause}"
            info.timed_out = failed.kind == FailureKind.TTFB
            self._count(chosen_request.tag, ServedBy.FALLBACK, failed.kind)
            return Served(None, info)
        finally:
            answer.ended_at = answer.ended_at or time.monotonic()
            await _close(events, stream)
            if info.served_by == ServedBy.SHADOW:
                then(info)
        return Served(response, info)

    async def _answer(self, request: web.Request, chosen_request: Chosen,
                      stream: ShadowStream, events: AsyncIterator[ShadowEvent],
                      first: list[ShadowEvent], capture: _Capture,
                      info: ShadowServed) -> web.StreamResponse:
        shape = self._shape(chosen_request)
        out = {SERVED_HEADER: ServedBy.SHADOW.value}
        if stream.request_id:
            out[shape.request_id_header] = stream.request_id
        if not chosen_request.stream:
            message = await self._whole(events, first, capture)
            info.served_by = ServedBy.SHADOW.value
            self._count(chosen_request.tag, ServedBy.SHADOW, None)
            return web.Response(body=shape.whole(message), content_type="application/json",
                                headers=out)
        response = web.StreamResponse(status=200, headers={
            **out, "content-type": STREAM_CONTENT_TYPE, "cache-control": "no-cache"})
        info.served_by = ServedBy.SHADOW.value
        broken: str | None = None
        try:
            await response.prepare(request)
            for event in first:
                await response.write(shape.event(event))
            broken = await self._relay(response, events, capture, shape, first)
            if broken is None:
                await response.write_eof()
        except ConnectionError:  # the user hung up: not the shadow's failure
            info.answer.client_disconnected = True
            self._count(chosen_request.tag, ServedBy.SHADOW, None)
            return response
        except asyncio.CancelledError:  # aiohttp cancels a handler whose client left
            info.answer.client_disconnected = True
            self._count(chosen_request.tag, ServedBy.SHADOW, None)
            raise
        if broken is not None:
            info.reason = f"after the first byte: {broken}"
            if request.transport is not None and broken.startswith("the stream broke"):
                request.transport.close()  # cut, as the shadow's stream was
        self._count(chosen_request.tag, ServedBy.SHADOW,
                    FailureKind.AFTER_FIRST_BYTE if broken else None)
        return response

    async def _relay(self, response: web.StreamResponse, events: AsyncIterator[ShadowEvent],
                     capture: _Capture, shape: AnswerShape,
                     first: list[ShadowEvent]) -> str | None:
        """The rest of the stream; what broke it, or None when it ended well."""
        if first and first[-1].name == "message_stop":
            await response.write(shape.end())
            return None
        async for event in events:
            capture.add(event)
            if event.name == "error":
                if event.synthetic:
                    return f"the stream broke: {_error_text(event)}"
                await response.write(shape.event(event))
                return f"the shadow's stream ended with an error: {_error_text(event)}"
            data = shape.event(event)
            if data:
                await response.write(data)
            if event.name == "message_stop":
                await response.write(shape.end())
                return None
        return "the stream broke: it ended before message_stop"

    async def _whole(self, events: AsyncIterator[ShadowEvent], first: list[ShadowEvent],
                     capture: _Capture) -> dict[str, Any]:
        """The assembled message; any failure before it is whole is still a fallback."""
        assembler = MessageAssembler()
        for event in first:
            assembler.on_event(event.name, event.data)
        try:
            async with asyncio.timeout(self._settings.answer_timeout_s):
                while not assembler.stopped and assembler.error is None:
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        break
                    capture.add(event)
                    assembler.on_event(event.name, event.data)
        except TimeoutError:
            raise _Failed(FailureKind.STREAM, "the answer was not complete within "
                          f"SHADOW_TIMEOUT_S={self._settings.answer_timeout_s:g}s") from None
        if assembler.error is not None or not assembler.stopped or assembler.message is None:
            what = (f"{assembler.error.get('type')}: {assembler.error.get('message')}"
                    if assembler.error else "it ended before message_stop")
            raise _Failed(FailureKind.STREAM, f"the stream failed before the answer was "
                          f"complete: {what}")
        return assembler.message

    # -- guard and metrics -------------------------------------------------------------

    def _count(self, tag: str, served_by: ServedBy, failure: FailureKind | None) -> None:
        if self._metrics is not None:
            self._metrics.cutover_served(tag, served_by.value)
            if failure is not None:
                self._metrics.cutover_fallback(tag, failure.value)
        trip = self.guard.record(tag, failure is not None)
        if trip is not None:
            self._trip(trip)

    def _trip(self, trip: Trip) -> None:
        plan = self.plans.get(trip.tag)
        if plan is None:
            return
        self._held_back[trip.tag] = plan.started_at
        self.routed.pop(trip.tag, None)
        if self._metrics is not None:
            self._metrics.cutover_percent(trip.tag, 0)
        log.warning("%s: rolling %s back to 0%% for every worker and replica", trip.reason(),
                    trip.tag)
        if self.watch is not None:
            self.watch.roll_back(GuardRollback(trip.tag, plan.started_at, trip.reason(),
                                               self._actor))

    # -- lifecycle ---------------------------------------------------------------------

    async def lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        """A cleanup_ctx: the shadow client and the plan watch, before the listener
        accepts; the first read is waited for (briefly), so a restarted worker resumes the
        plan at once."""
        from shadowproxy.tasks import cancel_and_wait, spawn

        task = None
        if self.watch is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_s + 3):
                    await self.watch.poll_once()
            task = spawn(self.watch.run(), name="cutover-watch")
        if self._opening is not None:
            await asyncio.wait({self._opening}, timeout=10)
        try:
            yield
        finally:
            await cancel_and_wait(task)
            await cancel_and_wait(self._opening)
            if self._client is not None:
                await self._client.close()

    async def _open_client(self) -> None:
        try:
            await asyncio.to_thread(self._load_client)
            self._client = self._make_client()
        except Exception:  # the plan cannot be served; say so, try again on the next poll
            log.exception("cannot open the shadow client: requests stay on the current model")
        finally:
            self._opening = None


class _Capture:
    """The shadow's stream for the pair, up to the capture limit."""

    def __init__(self, answer: ExchangeEnd) -> None:
        self._answer = answer
        self._bytes = 0

    def add(self, event: ShadowEvent) -> None:
        if self._bytes + len(event.raw) > CAPTURE_LIMIT:
            self._answer.truncated = True
            return
        self._bytes += len(event.raw)
        self._answer.chunks.append((time.monotonic(), event.raw))


async def _until_content(events: AsyncIterator[ShadowEvent],
                         capture: _Capture) -> list[ShadowEvent]:
    """The events up to and including the first content (or an empty answer's end)."""
    seen: list[ShadowEvent] = []
    async for event in events:
        capture.add(event)
        if event.name == "error":
            kind = FailureKind.STREAM
            error = event.data.get("error") if isinstance(event.data, dict) else None
            if isinstance(error, dict) and error.get("type") in ("overloaded_error",
                                                                 "api_error"):
                kind = FailureKind.SERVER_ERROR
            raise ShadowFailed(f"error before any content: {_error_text(event)}", kind)
        seen.append(event)
        if is_content(event.name) or event.name == "message_stop":
            return seen
    raise ShadowFailed("the stream ended before any content", FailureKind.STREAM)


def _error_text(event: ShadowEvent) -> str:
    error = event.data.get("error") if isinstance(event.data, dict) else None
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('message', '')}"[:300]
    return "unknown error"


async def _close(events: AsyncIterator[ShadowEvent] | None, stream: ShadowStream | None) -> None:
    with contextlib.suppress(Exception):
        if events is not None and hasattr(events, "aclose"):
            await events.aclose()
    with contextlib.suppress(Exception):
        if stream is not None:
            await stream.aclose()


def cutover_for(settings: Settings, metrics: CutoverMetrics | None) -> Cutover:
    """The worker's cutover: its plans from ``DATABASE_URL``, its shadow client."""
    assert settings.database_url is not None
    from shadowproxy.proxy.shadow_client import load_client_code, make_client
    from shadowproxy.store.urls import asyncpg_dsn

    return Cutover(
        CutoverSettings(
            shadow_model=settings.shadow_model,
            default_max_tokens=settings.shadow_default_max_tokens,
            server_tools=settings.shadow_server_tools, ttfb_s=settings.cutover_ttfb_s,
            answer_timeout_s=settings.shadow_timeout_s,
            guard_window=settings.cutover_guard_window,
            max_fallback_rate=settings.cutover_max_fallback_rate,
            poll_s=settings.cutover_poll_s),
        client=lambda: make_client(settings), load_client=lambda: load_client_code(settings),
        metrics=metrics,
        dsn=asyncpg_dsn(settings.database_url.get_secret_value()))
