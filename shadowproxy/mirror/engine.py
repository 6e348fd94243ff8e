"""Pairs each primary exchange with its shadow call and emits one record when both settle.

Bounded on purpose: at most ``SHADOW_CONCURRENCY`` calls in flight and ``SHADOW_QUEUE``
waiting; past that a shadow is ``dropped`` — recorded and counted, never silent. Every
path through here ends in exactly one record per started exchange (or none when the
engine is told the exchange was never eligible).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shadowproxy.conversations import conversation_of
from shadowproxy.exchange import ExchangeEnd, ExchangeStart, ShadowServed
from shadowproxy.lifecycle import ModelWatch
from shadowproxy.mirror.assemble import build_record, primary_side, served_side
from shadowproxy.mirror.conversations import ResponseHistory
from shadowproxy.mirror.replay import Replayer
from shadowproxy.mirror.shadow import ShadowCaller, ShadowResult
from shadowproxy.mirror.translate import (
    SHADOW_MAX_OUTPUT_TOKENS,
    Untranslatable,
    openai_to_messages,
    prepare_messages_request,
)
from shadowproxy.mirror.translate_responses import responses_input_items, responses_to_messages
from shadowproxy.pricing import PriceTable
from shadowproxy.records import Api, PairRecord, ServedBy, ShadowOutcome, Side
from shadowproxy.redact import Redactor
from shadowproxy.storable import (
    MAX_JSON_DEPTH,
    TOO_DEEP,
    bounded,
    cut_depth,
    json_depth,
    shallow_enough,
)
from shadowproxy.tasks import spawn

log = logging.getLogger("shadowproxy.mirror")

RecordSink = Callable[[PairRecord], None]


@dataclass(slots=True)
class _Pending:
    start: ExchangeStart
    request: Any = None
    stream: bool = False
    end: ExchangeEnd | None = None
    shadow: ShadowResult | None = None
    task: asyncio.Task[None] | None = None
    replay_task: asyncio.Task[None] | None = None
    replay: Side | None = None
    created: float = field(default_factory=time.monotonic)
    size: int = 0  # bytes this exchange holds in the mirror (request and captured answer)
    # What the shadow request changed to stay within Haiku's rules (thinking), for humans.
    adjustments: list[str] = field(default_factory=list)
    conversation_id: str | None = None
    turn: int | None = None
    served_by: str = ServedBy.PRIMARY.value


@dataclass(slots=True)
class EngineLimits:
    concurrency: int = 32
    queue: int = 1000
    default_max_tokens: int = 4096
    model: str = "claude-haiku-4-5"
    # Bounds the wait for a slot and the call together: a shadow that sat in the queue
    # for the whole budget is a timeout, not a call started late.
    timeout_s: float = 120.0
    server_tools: str = "skip"  # SHADOW_SERVER_TOOLS: "allow" mirrors server tools
    # The shadow model's max_tokens limit; the Models API's figure replaces it at start.
    max_output_tokens: int = SHADOW_MAX_OUTPUT_TOKENS
    # What the mirror keeps of Responses API answers for previous_response_id.
    responses_remembered: int = 10_000
    responses_memory_bytes: int = 64 << 20
    # Bytes all pending exchanges may hold (bodies and captured answers); past it a new
    # exchange's shadow is dropped (recorded, counted), so a burst of large requests
    # cannot grow the mirror without limit.
    queue_bytes: int = 256 << 20


class MirrorEngine:
    def __init__(
        self,
        *,
        caller: ShadowCaller,
        sink: RecordSink,
        limits: EngineLimits,
        redactor: Redactor,
        prices: PriceTable,
        replayer: Replayer | None = None,
        models: ModelWatch | None = None,
    ) -> None:
        """``models`` checks the application's model ids as they arrive (deprecated or
        retired: a warning); without it, none are checked."""
        self._caller = caller
        self._replayer = replayer
        self._sink = sink
        self._limits = limits
        self._redactor = redactor
        self._prices = prices
        self._sem = asyncio.Semaphore(limits.concurrency)
        self._pending: dict[str, _Pending] = {}
        self.responses = ResponseHistory(max_responses=limits.responses_remembered,
                                         max_bytes=limits.responses_memory_bytes)
        self.waiting = 0
        self.in_flight = 0
        self.outcomes: Counter[str] = Counter()
        self.records = 0
        # Pairs with an outcome that never reached the writer, by reason (assembly).
        self.lost: Counter[str] = Counter()
        self.pending_bytes = 0
        self._models = models

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- events from the proxy ---------------------------------------------------------

    def on_start(self, start: ExchangeStart) -> None:
        """Never raises: whatever the body holds, the exchange ends in one record."""
        pending = _Pending(start, size=len(start.body))
        self._pending[start.exchange_id] = pending
        self.pending_bytes += pending.size
        try:
            self._start(pending)
        except Exception as exc:  # a bug or an input we did not foresee: record it
            log.warning("mirroring an exchange failed: %s", bounded(repr(exc), 200),
                        extra={"exchange_id": start.exchange_id})
            if pending.shadow is None and pending.task is None:
                self._settle(pending, ShadowOutcome.ERROR, f"internal: {exc!r}")

    def _start(self, pending: _Pending) -> None:
        start = pending.start
        if start.replay_headers is not None and self._replayer is not None:
            pending.replay_task = spawn(self._replay(pending),
                                        name=f"replay-{start.exchange_id}")
        try:
            request = json.loads(start.body)
        except RecursionError:
            pending.request = TOO_DEEP
            self._settle(pending, ShadowOutcome.SKIPPED,
                         f"request JSON nested too deep to parse (limit {MAX_JSON_DEPTH})")
            return
        except (ValueError, UnicodeDecodeError):
            self._settle(pending, ShadowOutcome.SKIPPED, "request body is not valid JSON")
            return
        if not shallow_enough(start.body) and (depth := json_depth(request)) > MAX_JSON_DEPTH:
            pending.request = cut_depth(request)
            self._settle(pending, ShadowOutcome.SKIPPED,
                         f"request JSON nested {depth} levels deep (limit {MAX_JSON_DEPTH})")
            return
        pending.request = request
        pending.stream = isinstance(request, dict) and request.get("stream") is True
        pending.conversation_id, pending.turn = conversation_of(
            start.api, request, start.conversation)
        if start.served is not None:
            # A cutover plan had the shadow serve (or try to): it is not asked again.
            pending.served_by = start.served.served_by
            pending.adjustments.extend(start.served.notes)
            pending.shadow = self._served(start.served)
            self._maybe_emit(pending)
            return
        if start.api == Api.OPENAI_RESPONSES and self.responses.started(
            start.exchange_id, request
        ):
            # Its previous response may still be on its way here: translate once it is.
            pending.task = spawn(self._after_history(pending),
                                 name=f"history-{start.exchange_id}")
            return
        self._submit(pending)

    def _submit(self, pending: _Pending) -> None:
        start = pending.start
        if start.api == Api.OPENAI_RESPONSES:
            self._responses_conversation(pending)
        try:
            params = self._translate(start.api, pending.request, pending.adjustments)
        except Untranslatable as exc:
            self._settle(pending, ShadowOutcome.SKIPPED, exc.reason)
            return
        if self.in_flight + self.waiting >= self._limits.concurrency + self._limits.queue:
            self._settle(pending, ShadowOutcome.DROPPED, "shadow queue full (SHADOW_QUEUE)")
            return
        if self.pending_bytes > self._limits.queue_bytes:
            self._settle(pending, ShadowOutcome.DROPPED,
                         "shadow queue over its byte bound (SHADOW_QUEUE_MB)")
            return
        headers = {k: v for k, v in start.forward_headers.items()
                   if start.api == Api.ANTHROPIC_MESSAGES or k == "anthropic-beta"}
        self.waiting += 1  # counted now: several starts can arrive before any task runs
        pending.task = spawn(self._run(pending, params, headers),
                             name=f"shadow-{start.exchange_id}")

    def _responses_conversation(self, pending: _Pending) -> None:
        """A request continuing by previous_response_id holds only its new turn: its
        conversation and turn come from the whole chain the mirror remembered."""
        try:
            history = self.responses.history(pending.request)
        except Untranslatable:
            return  # the shadow is skipped with that reason; the header may still name it
        if not history or not isinstance(pending.request, dict):
            return
        whole = {k: v for k, v in pending.request.items() if k != "previous_response_id"}
        whole["input"] = [*history, *responses_input_items(pending.request)]
        pending.conversation_id, pending.turn = conversation_of(
            Api.OPENAI_RESPONSES, whole, pending.start.conversation)

    async def _after_history(self, pending: _Pending) -> None:
        try:
            await self.responses.settled(pending.start.exchange_id, self._limits.timeout_s)
        except TimeoutError:
            pass  # translated with what is known: the unknown parent becomes the reason
        except asyncio.CancelledError:
            if pending.shadow is None:
                pending.shadow = _unfinished()
            self._maybe_emit(pending)
            raise
        self._submit(pending)

    def _served(self, served: ShadowServed) -> ShadowResult:
        side = served_side(served, self._prices)
        if served.served_by == ServedBy.FALLBACK:
            outcome = ShadowOutcome.TIMEOUT if served.timed_out else ShadowOutcome.ERROR
            side.error = side.error or served.reason
        else:
            outcome = ShadowOutcome.ERROR if side.error else ShadowOutcome.OK
        return ShadowResult(side, outcome, served.reason)

    def on_end(self, end: ExchangeEnd) -> None:
        pending = self._pending.get(end.exchange_id)
        if pending is None:
            log.warning("end of an exchange the mirror never saw started")
            return
        pending.end = end
        if pending.start.api == Api.OPENAI_RESPONSES:
            self.responses.ended(end)
        grown = sum(len(chunk) for _, chunk in end.chunks)
        pending.size += grown
        self.pending_bytes += grown
        self._maybe_emit(pending)

    # -- internals ---------------------------------------------------------------------

    def _translate(self, api: str, request: Any, notes: list[str]) -> dict[str, Any]:
        if api == Api.ANTHROPIC_MESSAGES:
            return prepare_messages_request(request, model=self._limits.model,
                                            max_tokens_limit=self._limits.max_output_tokens,
                                            server_tools=self._limits.server_tools,
                                            notes=notes)
        if api == Api.OPENAI_RESPONSES:
            return responses_to_messages(
                request, model=self._limits.model,
                default_max_tokens=self._limits.default_max_tokens,
                max_tokens_limit=self._limits.max_output_tokens,
                history=self.responses.history(request),
            )
        return openai_to_messages(
            request, model=self._limits.model,
            default_max_tokens=self._limits.default_max_tokens,
            max_tokens_limit=self._limits.max_output_tokens,
            server_tools=self._limits.server_tools,
        )

    def _settle(self, pending: _Pending, outcome: ShadowOutcome, reason: str) -> None:
        reason = bounded(reason)
        pending.shadow = ShadowResult(Side(error=reason if outcome != "skipped" else None),
                                      outcome, reason)
        self._maybe_emit(pending)

    async def _run(
        self, pending: _Pending, params: dict[str, Any], headers: dict[str, str]
    ) -> None:
        acquired = False
        try:
            async with asyncio.timeout(self._limits.timeout_s), self._sem:
                acquired = True
                self.waiting -= 1
                self.in_flight += 1
                try:
                    pending.shadow = await self._caller.call(params, headers)
                finally:
                    self.in_flight -= 1
        except TimeoutError:
            if not acquired:
                self.waiting -= 1
            reason = (f"no answer within SHADOW_TIMEOUT_S={self._limits.timeout_s:g}s"
                      + ("" if acquired else " (waited for a free SHADOW_CONCURRENCY slot)"))
            pending.shadow = ShadowResult(Side(error=reason), ShadowOutcome.TIMEOUT, reason)
        except asyncio.CancelledError:
            if not acquired:
                self.waiting -= 1
            if pending.shadow is None:
                pending.shadow = _unfinished()
            self._maybe_emit(pending)
            raise
        except Exception as exc:  # a bug in our own parsing: record it, keep the loop alive
            log.exception("shadow call failed unexpectedly")
            pending.shadow = ShadowResult(Side(error=f"internal: {type(exc).__name__}"),
                                          ShadowOutcome.ERROR, bounded(f"internal: {exc!r}"))
        self._maybe_emit(pending)

    async def _replay(self, pending: _Pending) -> None:
        assert self._replayer is not None
        try:
            pending.replay = await self._replayer.replay(pending.start)
        except asyncio.CancelledError:
            pending.replay = Side(error="replay unfinished at shutdown")
            raise
        finally:
            pending.start.replay_headers = None  # the application's credentials go now
            pending.replay_task = None
            self._maybe_emit(pending)

    def _maybe_emit(self, pending: _Pending) -> None:
        if pending.end is None or pending.shadow is None or pending.replay_task is not None:
            return
        if self._pending.pop(pending.start.exchange_id, None) is None:
            return
        self.pending_bytes -= pending.size
        self._emit(pending, pending.end, pending.shadow)

    def _emit(self, pending: _Pending, end: ExchangeEnd, shadow: ShadowResult) -> None:
        outcome, reason = shadow.outcome.value, shadow.reason
        if reason is not None:
            reason = bounded(reason)
        self.outcomes[outcome] += 1
        try:
            record = self._build(pending, end, shadow.side, outcome, reason)
        except Exception as exc:
            # The answer itself broke assembly (a shape no normaliser foresaw): keep the
            # pair with what is certainly known, the failure as the primary's error.
            log.warning("could not assemble a pair record, storing it bare: %s",
                        bounded(repr(exc), 200), extra={"exchange_id": pending.start.exchange_id})
            try:
                record = self._build_bare(pending, end, outcome, reason, exc)
            except Exception:
                log.exception("could not assemble even a bare pair record; pair lost")
                self.lost["assembly"] += 1
                return
        self.records += 1
        self._check_primary_model(record.primary.model)
        self._sink(record)
        level = logging.DEBUG if shadow.outcome == ShadowOutcome.OK else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "pair recorded: api=%s tag=%s primary=%s shadow=%s%s",
                    record.api, record.tag, record.primary.status, outcome,
                    f" ({bounded(record.shadow_reason, 200)})" if record.shadow_reason else "",
                    extra={"exchange_id": str(record.id)})

    def _build(self, pending: _Pending, end: ExchangeEnd, shadow: Side, outcome: str,
               reason: str | None) -> PairRecord:
        return build_record(
            start=pending.start,
            request=pending.request,
            stream=pending.stream,
            primary=primary_side(pending.start, end, self._prices),
            shadow=shadow,
            outcome=outcome,
            reason=reason or bounded("; ".join(pending.adjustments)) or None,
            client_disconnected=end.client_disconnected or bool(
                pending.start.served and pending.start.served.answer.client_disconnected),
            redactor=self._redactor,
            prices=self._prices,
            replay=pending.replay,
            conversation_id=pending.conversation_id or start_conversation(pending.start),
            turn=pending.turn,
            served_by=pending.served_by,
        )

    def _build_bare(self, pending: _Pending, end: ExchangeEnd, outcome: str,
                    reason: str | None, exc: Exception) -> PairRecord:
        latency = (end.ended_at - pending.start.sent_at) * 1000 if end.ended_at else None
        primary = Side(status=end.status, latency_ms=latency,
                       error=bounded(f"answer could not be normalised: {exc!r}"))
        shadow = pending.shadow.side if pending.shadow is not None else Side()
        return build_record(
            start=pending.start, request=None, stream=pending.stream, primary=primary,
            shadow=Side(model=shadow.model, status=shadow.status, error=shadow.error,
                        latency_ms=shadow.latency_ms),
            outcome=outcome, reason=reason, client_disconnected=end.client_disconnected,
            redactor=self._redactor, prices=self._prices, replay=None,
            conversation_id=pending.conversation_id or start_conversation(pending.start),
            turn=pending.turn, served_by=pending.served_by,
        )

    def _check_primary_model(self, model: str | None) -> None:
        """Warn once per model id and state when the application's model is deprecated
        or retired (offline data: no network call on the pair path)."""
        if model and self._models is not None and (line := self._models.check(model)):
            log.warning("primary model %s", line)

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight shadows finish within ``timeout_s``; then cut them short.

        Exchanges whose primary end never arrived (the proxy stopped first) are recorded
        with what is known.
        """
        tasks = [t for p in self._pending.values() for t in (p.task, p.replay_task)
                 if t is not None and not t.done()]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        for pending in list(self._pending.values()):
            if pending.shadow is None:
                pending.shadow = _unfinished()
            if pending.end is None:
                pending.end = ExchangeEnd(
                    pending.start.exchange_id, status=None, headers={},
                    ended_at=time.monotonic(),
                    error="the proxy stopped before the primary answer ended",
                )
            self._maybe_emit(pending)


def start_conversation(start: ExchangeStart) -> str | None:
    """The header's conversation id for a request whose body did not parse."""
    return conversation_of(start.api, None, start.conversation)[0]


def _unfinished() -> ShadowResult:
    reason = "shadow unfinished at shutdown (GRACE_S)"
    return ShadowResult(Side(error=reason), ShadowOutcome.TIMEOUT, reason)
