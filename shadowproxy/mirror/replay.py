"""The noise floor: the primary asked the same question a second time.

How often does the current model disagree with itself? ``diff`` scores primary vs replay
the same way as primary vs shadow, so the report can show the shadow's agreement next to
the primary's agreement with itself. Each replay is a real call on the application's own
account (``REPLAY_RATE``, default 0), made with the application's headers, which exist
only in memory for this call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
from yarl import URL

from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.mirror.assemble import primary_side
from shadowproxy.pricing import PriceTable
from shadowproxy.records import Side


class Replayer:
    def __init__(
        self, primary_url: str, *, concurrency: int, timeout_s: float,
        prices: PriceTable | None = None,
    ) -> None:
        self._prices = prices  # priced from the full usage, like the primary's answer
        base = URL(primary_url)
        self._origin = str(base.origin())
        self._base_path = base.raw_path.rstrip("/")
        self._sem = asyncio.Semaphore(concurrency)
        self._timeout = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def replay(self, start: ExchangeStart) -> Side:
        """The primary's second answer, normalised and timed like the first."""
        url = self._origin + self._base_path + start.path
        if start.query:
            url += "?" + start.query
        async with self._sem:
            echo = dataclasses.replace(start, sent_at=time.monotonic())
            end = ExchangeEnd(start.exchange_id, status=None, headers={})
            try:
                async with self._client().post(
                    URL(url, encoded=True), data=start.body, headers=start.replay_headers,
                ) as resp:
                    end.status = resp.status
                    end.headers = {k.lower(): v for k, v in resp.headers.items()}
                    async for chunk in resp.content.iter_any():
                        end.chunks.append((time.monotonic(), chunk))
            except (TimeoutError, aiohttp.ClientError) as exc:
                end.error = f"replay failed: {type(exc).__name__}"
            end.ended_at = time.monotonic()
            return primary_side(echo, end, self._prices)

