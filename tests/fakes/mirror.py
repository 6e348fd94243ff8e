"""The mirror engine in the test's own event loop, so a test can read its records directly."""

from __future__ import annotations

import asyncio

from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.mirror.engine import MirrorEngine


class InlineMirrorLink:
    """Speaks the proxy's MirrorLink protocol; work is scheduled with ``call_soon`` so
    even here the handler never runs it."""

    def __init__(self, engine: MirrorEngine) -> None:
        self.engine = engine
        self._loop = asyncio.get_running_loop()

    def start(self, start: ExchangeStart) -> bool:
        self._loop.call_soon(self.engine.on_start, start)
        return True

    def end(self, end: ExchangeEnd) -> None:
        self._loop.call_soon(self.engine.on_end, end)
