"""The user's path: forward every request to ``PRIMARY_URL`` and return its answer unchanged.

Nothing here parses a body or waits on the mirror: a mirrored exchange is reported to the
:class:`MirrorLink` as raw bytes plus monotonic timestamps, through calls that return
immediately. Failures the proxy itself causes (upstream unreachable or slow, body too
large, an open-proxy attempt) are answered in the provider's own error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from shadowproxy.exchange import CAPTURE_LIMIT, ExchangeEnd, ExchangeStart, ShadowServed
from shadowproxy.proxy.routing import (
    CREDENTIAL_HEADERS,
    HOP_BY_HOP,
    error_body,
    mirrored_api,
    speaks_anthropic,
)
from shadowproxy.records import Api
from shadowproxy.tasks import spawn

if TYPE_CHECKING:
    from shadowproxy.proxy.cutover_serve import Cutover

log = logging.getLogger("shadowproxy.proxy.handler")

# Answers up to this size with a Content-Length are read whole and sent in one write;
# anything else (SSE, chunked, large downloads) is relayed chunk by chunk as it arrives.
_WHOLE_BODY_LIMIT = 1 << 20
# Headers the shadow may see: they change model behaviour, they are not credentials.
_SHADOW_HEADERS = ("anthropic-beta", "anthropic-version")
_SKIP_AUTO = frozenset({"User-Agent", "Accept-Encoding", "Content-Type"})


class MirrorLink(Protocol):
    """Where the proxy reports mirrored exchanges. Both calls return at once."""

    def start(self, start: ExchangeStart) -> bool: ...

    def end(self, end: ExchangeEnd) -> None: ...


class Proxy:
    def __init__(
        self,
        *,
        primary_url: str,
        session: aiohttp.ClientSession,
        mirror: MirrorLink | None,
        tag_header: str,
        max_body_bytes: int,
        sample_rate: float = 1.0,
        replay_rate: float = 0.0,
        observe: Callable[[str, int, float, float], None] | None = None,
        on_refused: Callable[[], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        capture_budget_bytes: int = 256 << 20,
        conversation_header: str = "x-shadow-conversation",
        body_timeout_s: float = 60.0,
        cutover: Cutover | None = None,
    ) -> None:
        base = URL(primary_url)
        self._origin = str(base.origin())
        self._base_path = base.raw_path.rstrip("/")
        self._session = session
        self._mirror = mirror
        self._tag_header = tag_header.lower()
        self._conversation_header = conversation_header.lower()
        self._max_body = max_body_bytes
        self._sample_rate = sample_rate
        self._replay_rate = replay_rate
        self._observe = observe
        self._on_refused = on_refused
        self._on_lost = on_lost
        # Bytes held for the mirror by all exchanges in flight (request bodies and
        # captured answers): memory bounded in total, not only per exchange.
        self._capture_budget = capture_budget_bytes
        self.captured_bytes = 0
        self._body_timeout_s = body_timeout_s
        self._cutover = cutover
        # The primary asked after the shadow served (cutover), for the pair.
        self._background: set[asyncio.Task[None]] = set()

    def upstream_url(self, raw_path: str) -> URL:
        return URL(self._origin + self._base_path + raw_path, encoded=True)

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        anthropic = speaks_anthropic(request.path, request.headers)
        return web.Response(
            status=status, body=error_body(anthropic, status, message),
            content_type="application/json",
        )

    def _forward_headers(
        self, request: web.Request
    ) -> tuple[CIMultiDict[str], str | None, str | None]:
        connection_tokens = {
            t.strip().lower() for t in request.headers.get("connection", "").split(",")
        }
        headers: CIMultiDict[str] = CIMultiDict()
        tag: str | None = None
        conversation: str | None = None
        for name, value in request.headers.items():
            lower = name.lower()
            if lower == self._tag_header:
                tag = value
                continue
            if lower == self._conversation_header:
                conversation = value
                continue
            if lower in HOP_BY_HOP or lower in connection_tokens or lower in (
                "host", "content-length", "expect",
            ):
                continue
            headers.add(name, value)
        return headers, tag, conversation

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        if request.method == "CONNECT":
            return self._error(request, 405, "CONNECT is not supported: this is not an open proxy")
        raw_path = request.raw_path
        if not raw_path.startswith("/"):
            return self._error(
                request, 400, "absolute-form request targets are refused: this is not an open proxy"
            )
        if request.content_length is not None and request.content_length > self._max_body:
            return self._error(request, 413, self._too_large_message())
        try:
            async with asyncio.timeout(self._body_timeout_s):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._error(request, 413, self._too_large_message())
        except TimeoutError:
            # A body trickled in to hold the connection: answered and the connection shut.
            slow = self._error(request, 408, "the request body did not arrive within "
                                             f"{self._body_timeout_s:g}s")
            slow.force_close()
            return slow

        headers, tag, conversation = self._forward_headers(request)
        api = mirrored_api(request.method, raw_path)
        served: ShadowServed | None = None
        cutover = self._cutover
        if cutover is not None and tag is not None and tag in cutover.routed \
                and api is not None:
            chosen = cutover.choose(tag, api.value, body, conversation)
            if chosen is not None:
                outcome = await cutover.serve(
                    request, chosen, self._shadow_headers(request, api),
                    then=self._compare_later(request, raw_path, headers, body, api, tag,
                                             conversation))
                if outcome.response is not None:
                    self._observe_served(api, outcome.response.status, received,
                                         outcome.info)
                    return outcome.response
                served = outcome.info  # the shadow failed first: the primary answers
        exchange_id: str | None = None
        started = time.monotonic()
        if api is not None and self._mirror is not None and (
            self._sample_rate >= 1.0 or random.random() < self._sample_rate
        ):
            exchange_id = uuid.uuid4().hex
            start = ExchangeStart(
                exchange_id=exchange_id,
                api=api.value,
                path=request.path,
                tag=tag,
                body=body,
                forward_headers={
                    h: request.headers[h] for h in _SHADOW_HEADERS if h in request.headers
                },
                received_at=time.time(),
                sent_at=started,
                conversation=conversation,
                served=served,
            )
            if self._replay_rate > 0 and random.random() < self._replay_rate:
                start.replay_headers = dict(headers)
                start.query = request.query_string
            if self.captured_bytes + len(body) > self._capture_budget:
                # Capture memory is full: the user is served, this pair is not mirrored.
                self._lost("capture_budget")
                exchange_id = None
            elif not self._mirror.start(start):
                # The mirror is too far behind to take more: counted, not mirrored.
                if self._on_refused is not None:
                    self._on_refused()
                self._lost("refused")
                exchange_id = None

        end = ExchangeEnd(exchange_id or "", status=None, headers={})
        held = len(body) if exchange_id else 0
        self.captured_bytes += held
        try:
            response = await self._relay(request, raw_path, headers, body, end)
        finally:
            self.captured_bytes -= held + sum(len(chunk) for _, chunk in end.chunks)
        if self._observe is not None:
            done = time.monotonic()
            # What the proxy added: the user's wait minus the upstream exchange itself.
            upstream = (end.ended_at - started) if end.ended_at else 0.0
            self._observe(api.value if api else "other", response.status,
                          done - received, max(0.0, done - received - upstream))
        return response

    # -- cutover: the shadow served; the primary is asked for the pair ------------------

    @staticmethod
    def _shadow_headers(request: web.Request, api: Api) -> dict[str, str]:
        """What the shadow may see of the application's headers: never credentials."""
        names = _SHADOW_HEADERS if api == Api.ANTHROPIC_MESSAGES else ("anthropic-beta",)
        return {h: request.headers[h] for h in names if h in request.headers}

    def _observe_served(self, api: Api, status: int, received: float,
                        info: ShadowServed) -> None:
        if self._observe is not None:
            done = time.monotonic()
            upstream = (info.answer.ended_at - info.sent_at) if info.answer.ended_at else 0.0
            self._observe(api.value, status, done - received,
                          max(0.0, done - received - upstream))

    def _compare_later(self, request: web.Request, raw_path: str, headers: CIMultiDict[str],
                       body: bytes, api: Api, tag: str, conversation: str | None,
                       ) -> Callable[[ShadowServed], None]:
        """Once the shadow's answer reached the user: ask the primary in the background
        (sampled like any mirrored exchange) and hand both to the mirror as one pair."""
        received_at = time.time()
        forward = {h: request.headers[h] for h in _SHADOW_HEADERS if h in request.headers}

        def then(info: ShadowServed) -> None:
            if self._mirror is None or not (
                self._sample_rate >= 1.0 or random.random() < self._sample_rate
            ):
                return
            start = ExchangeStart(
                exchange_id=uuid.uuid4().hex, api=api.value, path=request.path, tag=tag,
                body=body, forward_headers=forward, received_at=received_at,
                sent_at=time.monotonic(), conversation=conversation, served=info,
            )
            task = spawn(self._primary_for_pair(raw_path, headers, start),
                         name=f"primary-for-{start.exchange_id}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        return then

    async def _primary_for_pair(self, raw_path: str, headers: CIMultiDict[str],
                                start: ExchangeStart) -> None:
        assert self._mirror is not None
        held = len(start.body) + sum(len(c) for _, c in start.served.answer.chunks) \
            if start.served else len(start.body)
        if self.captured_bytes + held > self._capture_budget:
            self._lost("capture_budget")
            return
        start.sent_at = time.monotonic()
        if not self._mirror.start(start):
            if self._on_refused is not None:
                self._on_refused()
            self._lost("refused")
            return
        end = ExchangeEnd(start.exchange_id, status=None, headers={})
        self.captured_bytes += held
        try:
            async with self._session.request(
                "POST", self.upstream_url(raw_path), headers=headers, data=start.body,
                allow_redirects=False, skip_auto_headers=_SKIP_AUTO,
            ) as upstream:
                end.status = upstream.status
                end.headers = {k.lower(): v for k, v in upstream.headers.items()
                               if k.lower() not in CREDENTIAL_HEADERS}
                captured = 0
                async for chunk in upstream.content.iter_any():
                    if not end.truncated and self._capture(end, chunk, captured):
                        captured += len(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            end.error = f"upstream failed (asked after the shadow served): {type(exc).__name__}"
        except asyncio.CancelledError:
            end.error = "the proxy stopped before the primary answered (GRACE_S)"
            raise
        finally:
            end.ended_at = time.monotonic()
            self.captured_bytes -= held + sum(len(chunk) for _, chunk in end.chunks)
            self._mirror.end(end)

    async def drain_background(self, timeout_s: float) -> None:
        """At shutdown: let the primaries asked for pairs finish, then cut them short."""
        tasks = [t for t in self._background if not t.done()]
        if not tasks:
            return
        _done, late = await asyncio.wait(tasks, timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    def _lost(self, reason: str) -> None:
        if self._on_lost is not None:
            self._on_lost(reason)

    def _capture(self, end: ExchangeEnd, chunk: bytes, captured: int) -> bool:
        """Keep ``chunk`` for the mirror if both bounds allow; else mark it truncated."""
        if (captured + len(chunk) <= CAPTURE_LIMIT
                and self.captured_bytes + len(chunk) <= self._capture_budget):
            end.chunks.append((time.monotonic(), chunk))
            self.captured_bytes += len(chunk)
            return True
        end.truncated = True
        return False

    def _too_large_message(self) -> str:
        return f"request body is larger than the proxy's limit of {self._max_body} bytes"

    async def _relay(
        self,
        request: web.Request,
        raw_path: str,
        headers: CIMultiDict[str],
        body: bytes,
        end: ExchangeEnd,
    ) -> web.StreamResponse:
        try:
            return await self._exchange(request, raw_path, headers, body, end)
        except asyncio.CancelledError:
            # The client went away (aiohttp cancels the handler): the upstream request is
            # released by the context manager; the pair is recorded as cut short.
            end.client_disconnected = True
            raise
        finally:
            end.ended_at = end.ended_at or time.monotonic()
            if end.exchange_id and self._mirror is not None:
                self._mirror.end(end)

    async def _exchange(
        self,
        request: web.Request,
        raw_path: str,
        headers: CIMultiDict[str],
        body: bytes,
        end: ExchangeEnd,
    ) -> web.StreamResponse:
        capture = bool(end.exchange_id)
        # The stack releases the upstream connection however this ends; entering it is
        # the request, whose failures are answered differently from later ones.
        async with contextlib.AsyncExitStack() as stack:
            try:
                upstream = await stack.enter_async_context(self._session.request(
                    request.method,
                    self.upstream_url(raw_path),
                    headers=headers,
                    data=body if body else None,
                    allow_redirects=False,
                    skip_auto_headers=_SKIP_AUTO,
                ))
            except (TimeoutError, aiohttp.ServerTimeoutError):
                end.error = "upstream timed out"
                return self._error(request, 504, "the upstream provider did not answer in time")
            except aiohttp.ClientError as exc:
                end.error = f"upstream unreachable: {type(exc).__name__}"
                log.warning("upstream unreachable: %s", type(exc).__name__)
                return self._error(request, 502, "the upstream provider could not be reached")
            end.status = upstream.status
            out_headers = CIMultiDict(
                (k, v) for k, v in upstream.headers.items()
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
            )
            if capture:
                end.headers = {
                    k.lower(): v for k, v in upstream.headers.items()
                    if k.lower() not in CREDENTIAL_HEADERS
                }
            length = upstream.content_length
            if length is not None and length <= _WHOLE_BODY_LIMIT:
                try:
                    data = await upstream.read()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    end.error = f"upstream failed mid-answer: {type(exc).__name__}"
                    return self._error(request, 504 if isinstance(exc, TimeoutError) else 502,
                                       "the upstream provider failed while answering")
                end.ended_at = time.monotonic()
                if capture:
                    self._capture(end, data, 0)
                if request.method == "HEAD":
                    # No body, but the length of the one GET would send (RFC 9110 §9.3.2).
                    out_headers["Content-Length"] = str(length)
                    return web.Response(status=upstream.status, reason=upstream.reason,
                                        headers=out_headers)
                return web.Response(
                    status=upstream.status, reason=upstream.reason, headers=out_headers,
                    body=data,
                )
            return await self._stream(request, upstream, out_headers, length, end, capture)

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        out_headers: CIMultiDict[str],
        length: int | None,
        end: ExchangeEnd,
        capture: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=out_headers
        )
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        captured = 0
        try:
            async for chunk in upstream.content.iter_any():
                if capture and not end.truncated and self._capture(end, chunk, captured):
                    captured += len(chunk)
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Headers are gone already: all we can do is cut the connection short.
            end.error = f"upstream failed mid-stream: {type(exc).__name__}"
            end.ended_at = time.monotonic()
            if request.transport is not None:
                request.transport.close()
            return response
        except ConnectionError:
            end.client_disconnected = True
            end.ended_at = time.monotonic()
            return response
        end.ended_at = time.monotonic()
        await response.write_eof()
        return response
