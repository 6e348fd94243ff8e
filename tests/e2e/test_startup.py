"""``serve``'s start as a load balancer sees it: the proxy port accepts a connection only
once a worker serves it, and a connection it accepts is answered.

A real ``serve`` (a child process, real PostgreSQL, the simulator as both providers) is
held at known points of its start by a hook outside our code (:mod:`tests.fakes.holds`):
just before a listener opens its port, or while a mirror process starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_faults import stored_pairs
from tests.e2e.test_operations import SHADOW_KEY, sample, scrape
from tests.e2e.test_supervision import until
from tests.fakes.holds import (
    ANSWERED,
    REFUSED,
    Holds,
    free_port,
    knock,
    knocks_until,
    pid_alive,
    until_held,
)
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import serve_env


def settings(simulator: SimulatedProvider, database_url: str, **more: Any) -> dict[str, Any]:
    return {"primary_url": simulator.url, "shadow_base_url": simulator.url,
            "shadow_api_key": SHADOW_KEY, "database_url": database_url, "grace_s": 2,
            **more}


@dataclass
class Starting:
    proc: asyncio.subprocess.Process
    port: int
    admin_port: int
    ready: asyncio.Task[dict[str, Any]]
    log_path: Path


@contextlib.asynccontextmanager
async def starting_serve(tmp_path: Path, holds: Holds, **config: Any) -> AsyncIterator[Starting]:
    """``serve`` started, not waited for: its ready message arrives in ``ready``."""
    port, admin_port = free_port(), free_port()
    env = {**serve_env(tmp_path, port=port, admin_port=admin_port, **config),
           **holds.env(port)}
    read_end, write_end = os.pipe()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy", "serve", "--ready-fd", str(write_end),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log, pass_fds=(write_end,))
    os.close(write_end)

    def read_ready() -> dict[str, Any]:
        with os.fdopen(read_end, "rb") as pipe:
            line = pipe.readline()
        assert line, f"serve did not start\n{log_path.read_text()}"
        message: dict[str, Any] = json.loads(line)
        return message

    ready = asyncio.ensure_future(asyncio.to_thread(read_ready))
    try:
        yield Starting(proc, port, admin_port, ready, log_path)
    finally:
        holds.release("listen")
        holds.release("mirror")
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ready, 5)


@pytest.fixture
def holds(tmp_path: Path) -> Holds:
    directory = tmp_path / "holds"
    directory.mkdir()
    return Holds(directory)


@pytest.mark.parametrize("workers", [1, 2])
async def test_the_port_refuses_connections_until_a_worker_serves_it(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, holds: Holds,
    workers: int,
) -> None:
    holds.gate("listen")
    async with asyncio.timeout(120), starting_serve(
            tmp_path, holds, workers=workers, **settings(simulator, database_url)) as serve:
        before = await until_held(holds, "listen", serve.port)
        assert set(before) <= {REFUSED}, "the port accepted before a worker listened"
        # Held just before the worker's listener opens: everything else has started.
        for _ in range(20):
            assert await knock(serve.port) == REFUSED
            await asyncio.sleep(0.05)
        holds.release("listen")
        seen = await knocks_until(serve.port, ANSWERED)
        assert set(seen) <= {REFUSED, ANSWERED}, "a connection was accepted, not answered"
        await serve.ready
        assert [await knock(serve.port) for _ in range(5)] == [ANSWERED] * 5


async def test_requests_sent_while_the_mirror_starts_are_answered_and_their_pairs_stored(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, holds: Holds
) -> None:
    holds.gate("mirror")
    async with asyncio.timeout(120), starting_serve(
            tmp_path, holds, workers=1, **settings(simulator, database_url)) as serve:
        seen = await until_held(holds, "mirror", serve.port)
        seen += await knocks_until(serve.port, ANSWERED)
        assert set(seen) <= {REFUSED, ANSWERED}, "a connection was accepted, not answered"
        assert [await knock(serve.port) for _ in range(3)] == [ANSWERED] * 3
        assert not serve.ready.done(), "serve said ready before its mirror was up"
        assert (await stored_pairs(database_url)).rows == 0
        holds.release("mirror")
        await serve.ready
        # What arrived while no mirror was there was held for it, and lands.
        answered = seen.count(ANSWERED) + 3

        async def all_stored() -> bool:
            return (await stored_pairs(database_url)).rows >= answered

        await until(all_stored, timeout=30)
        assert (await stored_pairs(database_url)).rows == answered
        samples = await scrape(f"http://127.0.0.1:{serve.admin_port}")
        start_gap = ("shadowproxy_pairs_lost_total", frozenset({("reason", "start_gap")}))
        assert samples[start_gap] == 0  # the series exists, at zero
        assert sample(samples, "shadowproxy_pairs_lost_total", reason="refused") == 0


async def test_a_second_serve_while_the_first_one_starts_is_refused_in_one_line(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, holds: Holds
) -> None:
    holds.gate("listen")
    (tmp_path / "first").mkdir()
    async with asyncio.timeout(120), starting_serve(
            tmp_path / "first", holds, workers=1,
            **settings(simulator, database_url)) as first:
        await until_held(holds, "listen", first.port)
        # The first one's port is bound, not listening: the second must not bind it too.
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy", "serve",
            env=serve_env(tmp_path / "second", port=first.port,
                          **settings(simulator, database_url)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await second.communicate()
        assert second.returncode == 2
        assert err.decode().strip().splitlines() == [
            f"shadowproxy: error: proxy port {first.port} on 127.0.0.1 is already in use "
            "(another shadowproxy serve?)"]
        holds.release("listen")
        await first.ready
        assert await knock(first.port) == ANSWERED


async def test_with_every_worker_dead_the_port_refuses_until_a_restarted_one_serves(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, holds: Holds
) -> None:
    async with asyncio.timeout(180), starting_serve(
            tmp_path, holds, workers=2, **settings(simulator, database_url)) as serve:
        await serve.ready
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{serve.admin_port}/readyz") as resp:
            workers = (await resp.json())["worker_pids"]
        assert await knock(serve.port) == ANSWERED
        holds.gate("listen")  # the restarted workers wait before they listen
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        async def both_gone() -> bool:
            return not any(pid_alive(pid) for pid in workers)

        await until(both_gone)
        # Once the supervisor has seen them go (it reaps them: milliseconds; what the
        # port queued meanwhile is reset), nobody serves and connections are refused,
        # never queued for nobody, until a restarted worker serves.
        await knocks_until(serve.port, REFUSED, timeout_s=10)
        seen = await until_held(holds, "listen", serve.port, timeout_s=120)
        assert set(seen) <= {REFUSED}
        for _ in range(10):
            assert await knock(serve.port) == REFUSED
        holds.release("listen")
        seen = await knocks_until(serve.port, ANSWERED)
        assert set(seen) <= {REFUSED, ANSWERED}, "a connection was accepted, not answered"
    assert "no worker serves the proxy port" in serve.log_path.read_text()
