"""The mirror process (child side): one per proxy worker, so shadow work never shares
the proxy's event loop.

:func:`run_mirror` owns the SDK client, the engine and the pair writer. It ignores
SIGINT/SIGTERM — the parent (:mod:`shadowproxy.proxy.mirror_child`) decides when to stop by
sending a close frame with the time left; if the parent dies, the socket closes and the
child drains the same way (and exits hard once that time is up, should its loop be too
stuck to notice). It says it is ready with a JSON line on its status pipe
(:mod:`shadowproxy.children`) and then sends a heartbeat on the socket every half second,
by which the parent tells a stuck mirror from a busy one. It runs at a lower CPU
priority than the proxy: on a busy machine the user's requests win the CPU and shadows
wait, which is what a shadow is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from shadowproxy.children import StatusPipe, set_parent_death_signal
from shadowproxy.exchange import (
    BEAT,
    BEAT_INTERVAL_S,
    CLOSE,
    END,
    START,
    encode_frame,
    read_frame,
)
from shadowproxy.lifecycle import LifecycleView, ModelWatch
from shadowproxy.lifecycle_sources import current_lifecycle, installed_data, utc_today
from shadowproxy.metrics import Metrics
from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.exporter import MirrorExporter
from shadowproxy.mirror.replay import Replayer
from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.models_api import lookup_lifecycles
from shadowproxy.pricing import PriceTable
from shadowproxy.redact import Redactor
from shadowproxy.settings import Settings
from shadowproxy.storable import bounded
from shadowproxy.store.retention import RetentionTask
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from shadowproxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("shadowproxy.mirror")

# A frame is read whole before it is decoded, so one bad frame leaves the stream in step;
# this many failures in a row means it is not, and reading on would only spin.
_MAX_FRAME_FAILURES = 100


def engine_limits(settings: Settings) -> EngineLimits:
    return EngineLimits(
        concurrency=settings.shadow_concurrency,
        queue=settings.shadow_queue,
        default_max_tokens=settings.shadow_default_max_tokens,
        model=settings.shadow_model,
        timeout_s=settings.shadow_timeout_s,
        server_tools=settings.shadow_server_tools,
        responses_remembered=settings.responses_remembered,
        responses_memory_bytes=int(settings.responses_memory_mb * (1 << 20)),
        queue_bytes=int(settings.shadow_queue_mb * (1 << 20)),
    )


MODELS_API_TIMEOUT_S = 3.0


async def check_models(settings: Settings, limits: EngineLimits, *, warn: bool,
                       lifecycle: LifecycleView) -> None:
    """At start: warn when the shadow or judge model is deprecated or retired on
    ``lifecycle``'s day, and take the shadow model's max_tokens limit from the Models API
    when it answers."""
    # The Models API speaks for Anthropic's own endpoint; Bedrock and Vertex shadows get
    # the offline data only (our table and the SDK's).
    key = (settings.shadow_api_key.get_secret_value()
           if settings.shadow_api_key is not None and settings.shadow_provider == "anthropic"
           else None)
    roles = {"shadow": settings.shadow_model, "judge": settings.judge_model or ""}
    answers = await lookup_lifecycles(roles.values(), api_key=key,
                                      base_url=settings.shadow_base_url,
                                      timeout_s=MODELS_API_TIMEOUT_S)
    shadow = lifecycle.of(settings.shadow_model, answers.get(settings.shadow_model))
    if shadow.max_tokens:
        limits.max_output_tokens = shadow.max_tokens
    if not warn:
        return
    for role, model in roles.items():
        if not model:
            continue
        info = lifecycle.of(model, answers.get(model))
        if (line := lifecycle.warning(info)) is not None:
            source = f" (source: {info.source})" if info.source else ""
            log.warning("%s model %s%s", role, line, source)


def spool_dir(settings: Settings, worker: int) -> Path:
    return settings.data_dir / "spool" / f"worker-{worker}"


async def run_mirror(
    settings: Settings,
    socket_path: str,
    *,
    worker: int = 0,
    on_ready: Callable[[], None] = lambda: None,
    stats_hook: Callable[[MirrorEngine, PairWriter], None] | None = None,
) -> None:
    assert settings.database_url is not None, "the parent resolves the database first"
    loop = asyncio.get_running_loop()
    # Every resource in one stack, closed in reverse order of opening, whatever stops the
    # run: the engine drains first, then the writer flushes (or spools), then the clients
    # and the background jobs go. The drain's time is what the parent's close frame
    # grants (GRACE_S until it arrives).
    deadline = loop.time() + settings.grace_s

    def left(floor: float = 0.0) -> float:
        return max(floor, deadline - loop.time())

    async with contextlib.AsyncExitStack() as stack:
        # One retention job per deployment process group: worker 0's mirror runs it.
        if worker == 0 and settings.retention_days > 0:
            retention = RetentionTask(settings.database_url.get_secret_value(),
                                      settings.retention_days)
            retention.start()
            stack.push_async_callback(retention.stop)
        spool = Spool(spool_dir(settings, worker),
                      max_bytes=int(settings.spool_max_mb * (1 << 20)))
        writer = PairWriter(settings.database_url.get_secret_value(), spool)
        await writer.start()
        prices = PriceTable.load(settings.prices_file)
        caller = ShadowCaller(settings, prices=prices)
        stack.push_async_callback(caller.close)
        limits = engine_limits(settings)
        # Before ready, so the warning is among serve's start-up lines and the first
        # shadow is clamped to the Models API's limit; bounded by MODELS_API_TIMEOUT_S.
        await check_models(settings, limits, warn=worker == 0,
                           lifecycle=current_lifecycle())
        replayer = (
            Replayer(settings.primary_url, concurrency=settings.shadow_concurrency,
                     prices=prices, timeout_s=settings.upstream_timeout_s)
            if settings.replay_rate > 0 and settings.primary_url else None
        )
        if replayer is not None:
            stack.push_async_callback(replayer.close)
        engine = MirrorEngine(
            caller=caller,
            sink=writer.submit,
            limits=limits,
            redactor=Redactor.from_names(settings.redactors),
            prices=prices,
            replayer=replayer,
            models=ModelWatch(installed_data(), utc_today),
        )
        if stats_hook is not None:
            stats_hook(engine, writer)
        exporting = MirrorExporter(Metrics(), engine, writer)
        # Last export after the writer's close: what the drain wrote or spooled.
        stack.callback(exporting.export)
        stack.push_async_callback(cancel_and_wait,
                                  spawn(exporting.run(), name="mirror-metrics"))
        stack.push_async_callback(lambda: writer.close(left(1.0)))
        stack.push_async_callback(lambda: engine.drain(left()))
        deadline = await _serve_frames(settings, socket_path, engine, writer, on_ready, loop)


async def _serve_frames(
    settings: Settings, socket_path: str, engine: MirrorEngine, writer: PairWriter,
    on_ready: Callable[[], None], loop: asyncio.AbstractEventLoop,
) -> float:
    """Read the proxy's frames until it closes the link; the drain's deadline."""
    grace: asyncio.Future[float] = loop.create_future()
    received = 0

    async def heartbeat(w: asyncio.StreamWriter) -> None:
        # The proxy's sign of life from this loop, and its count of what a death loses.
        with contextlib.suppress(ConnectionError):
            while not w.is_closing():
                w.write(encode_frame(BEAT, {
                    "received": received, "unsettled": engine.pending + writer.pending,
                    "database_up": writer.database_up,
                    "spool_bytes": writer.spool.size_bytes,
                }))
                await asyncio.sleep(BEAT_INTERVAL_S)

    async def serve_connection(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal received
        beating = spawn(heartbeat(w), name="mirror-heartbeat")
        # Nothing one exchange carries may end this loop: it is the only way exchanges
        # reach the mirror. A frame that fails is logged and the next one is read.
        failures = 0
        while True:
            try:
                frame = await read_frame(reader)
                if frame is None:
                    break
                kind, payload = frame
                if kind == START:
                    received += 1
                    engine.on_start(payload)
                elif kind == END:
                    engine.on_end(payload)
                elif kind == CLOSE:
                    if not grace.done():
                        grace.set_result(float(payload))
                    break
                failures = 0
            except Exception as exc:
                failures += 1
                log.error("mirror frame failed, skipped: %s", bounded(repr(exc), 200))
                if failures >= _MAX_FRAME_FAILURES:  # the stream itself is broken
                    log.error("%d frames failed in a row; closing the link", failures)
                    break
        if not grace.done():  # the parent went away without saying goodbye
            grace.set_result(settings.grace_s)
        await cancel_and_wait(beating)
        w.close()

    server = await asyncio.start_unix_server(serve_connection, path=socket_path)
    on_ready()
    try:
        grace_s = await grace
    finally:
        server.close()
    return loop.time() + grace_s


# Lower priority than the proxy (0): on a saturated machine the kernel gives the user's
# path the CPU first; shadows queue and, past SHADOW_QUEUE, are dropped and counted.
MIRROR_NICENESS = 10


def _exit_later_if_parent_dies(grace_s: float, parent_pid: int) -> None:
    """The parent's death closes our socket and we drain as on a close frame; this is
    the backstop for a loop too stuck to notice: exit hard once the drain's time is up."""

    def on_parent_death(_sig: int, _frame: object) -> None:
        timer = threading.Timer(grace_s + 30, os._exit, args=(1,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGUSR1, on_parent_death)
    set_parent_death_signal(signal.SIGUSR1)
    if os.getppid() != parent_pid:  # it died before we asked
        on_parent_death(signal.SIGUSR1, None)


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(MIRROR_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    status = StatusPipe.from_stdin(death_signal=None)
    settings = Settings(**status.payload["settings"])
    socket_path, worker = str(status.payload["socket_path"]), int(status.payload["worker"])
    _exit_later_if_parent_dies(settings.grace_s, int(status.payload["parent_pid"]))
    from shadowproxy.logs import setup_logging

    setup_logging(settings, process="mirror")

    def ready() -> None:
        status.ready(pid=os.getpid())

    try:
        import uvloop

        uvloop.run(run_mirror(settings, socket_path, worker=worker, on_ready=ready))
    except ImportError:
        asyncio.run(run_mirror(settings, socket_path, worker=worker, on_ready=ready))


if __name__ == "__main__":
    main()
