"""Supervision as an operator lives it: real ``serve`` processes, ``kill -9`` and SIGSTOP
of their children under load, busy ports, and hostile slow clients.

What must hold: users keep being answered, ``/readyz`` never says 503 because of a
mirror or a worker, every child that dies comes back (counted in ``/metrics``), every
pair the gap cost is counted, a busy port is one line and exit 2 with nothing left
running, and slow clients cannot hold the proxy or its probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.e2e.test_faults import ask, stored_pairs
from tests.e2e.test_operations import SHADOW_KEY, app_client, sample, scrape
from tests.fakes.database import TestPostgres
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import ServeProcess, running_serve, serve_env

RATE = 20  # requests per second while a child is killed


def settings(simulator: SimulatedProvider, database_url: str, **more: Any) -> dict[str, Any]:
    return {"primary_url": simulator.url, "shadow_base_url": simulator.url,
            "shadow_api_key": SHADOW_KEY, "database_url": database_url, **more}


async def readyz(http: aiohttp.ClientSession, served: ServeProcess) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{served.admin_url}/readyz") as resp:
        return resp.status, await resp.json()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


class Load:
    """Steady traffic through the SDK and a /readyz probe every 100 ms, in the
    background, recording every status either of them saw."""

    def __init__(self, served: ServeProcess, http: aiohttp.ClientSession) -> None:
        self.served = served
        self.http = http
        self.user: list[int | str] = []  # in the order sent, filled when the load ends
        self.sent = 0  # requests sent so far
        self.probes: list[tuple[int, dict[str, Any]]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _traffic(self) -> None:
        client = app_client(self.served.url)
        calls: list[asyncio.Task[int]] = []
        start, i = time.monotonic(), 0
        while not self._stop.is_set():
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            calls.append(asyncio.ensure_future(ask(client, f"load {i} {uuid.uuid4()}")))
            i += 1
            self.sent = i
        for result in await asyncio.gather(*calls, return_exceptions=True):
            self.user.append(result if isinstance(result, int) else type(result).__name__)

    async def _probe(self) -> None:
        while not self._stop.is_set():
            self.probes.append(await readyz(self.http, self.served))
            await asyncio.sleep(0.1)

    def __enter__(self) -> Load:
        self._tasks = [asyncio.ensure_future(self._traffic()), asyncio.ensure_future(self._probe())]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    async def finished(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_killed_mirror_is_restarted_under_load_and_every_lost_pair_is_counted(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with asyncio.timeout(120), running_serve(
        tmp_path, **settings(simulator, database_url)
    ) as served, aiohttp.ClientSession() as http:
        _, before = await readyz(http, served)
        with Load(served, http) as load:
            await asyncio.sleep(1.5)
            os.kill(before["mirror_pid"], signal.SIGKILL)

            async def back() -> bool:
                _, now = await readyz(http, served)
                return bool(now["mirror"] == "up" and now["mirror_pid"] != before["mirror_pid"])

            await until(back)
            await asyncio.sleep(1.5)  # traffic through the new mirror too
        await load.finished()
        total = len(load.user)
        samples: dict[Any, float] = {}

        async def settled() -> bool:
            nonlocal samples
            samples = await scrape(served.admin_url)
            stored = (await stored_pairs(database_url)).rows
            lost = sample(samples, "shadowproxy_pairs_lost_total", reason="restart_gap")
            return stored + lost >= total

        await until(settled, 30)
        stored = (await stored_pairs(database_url)).rows
        log = served.log()

    assert load.user == [200] * total  # users never noticed
    assert {status for status, _ in load.probes} == {200}  # never out of service
    assert "restarting" in {body["mirror"] for _, body in load.probes}  # but it says so
    assert sample(samples, "shadowproxy_restarts_total", process="mirror") == 1
    lost = sample(samples, "shadowproxy_pairs_lost_total", reason="restart_gap")
    # What arrived while no mirror ran (seconds of traffic) was held for the next one:
    # only what the dead mirror held is lost — its shadows in flight, about a second of
    # traffic at the simulator's pace — and counted, as an upper bound that over-counts
    # at most what finished in the last heartbeat interval.
    assert lost <= 2 * RATE, (lost, total)
    assert stored + lost <= total + RATE
    assert "SIGKILL" in log and "restarted" in log
    # The dead mirror's gauges went with it: one live mirror reports the database.
    assert [v for (name, _), v in samples.items() if name == "shadowproxy_database_up"] == [1]


async def test_killed_worker_is_restarted_and_readyz_stays_200(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with asyncio.timeout(150), running_serve(
        tmp_path, "--workers", "2", **settings(simulator, database_url)
    ) as served, aiohttp.ClientSession() as http:
        _, before = await readyz(http, served)
        assert before["workers"] == 2
        victim = before["worker_pids"][0]
        with Load(served, http) as load:
            await asyncio.sleep(1.5)
            os.kill(victim, signal.SIGKILL)

            async def back() -> bool:
                _, now = await readyz(http, served)
                return bool(now["workers"] == 2 and victim not in now["worker_pids"]
                            and now["mirror"] == "up")

            await until(back, 90)
            # load.user fills only when the load ends: count what was sent until now.
            restarted_at = load.sent
            await asyncio.sleep(1.0)
        await load.finished()
        after = [s for s in load.user[restarted_at + RATE:]]  # sent once it was back
        answered = load.user.count(200)

        async def accounted() -> bool:
            # The last answers' pairs are still on their way to the database (shadow,
            # assembly, the writer's batch): wait for them rather than race them.
            lost = sample(await scrape(served.admin_url), "shadowproxy_pairs_lost_total",
                          reason="restart_gap")
            return (await stored_pairs(database_url)).rows + lost >= answered

        await until(accounted, 30)
        samples = await scrape(served.admin_url)
        stored = (await stored_pairs(database_url)).rows
        lost = sample(samples, "shadowproxy_pairs_lost_total", reason="restart_gap")

    assert {status for status, _ in load.probes} == {200}
    assert sample(samples, "shadowproxy_restarts_total", process="worker") == 1
    # Only what was in flight on the killed worker saw an error; afterwards all is well.
    assert len(load.user) - answered <= RATE, load.user
    assert after and after == [200] * len(after)
    assert stored + lost >= answered
    # Two live mirrors report the database: the dead worker's left no stale gauge.
    assert [v for (name, _), v in samples.items()
            if name == "shadowproxy_database_up"] == [1, 1]


async def test_stuck_mirror_is_detected_and_restarted(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with asyncio.timeout(120), running_serve(
        tmp_path, **settings(simulator, database_url, mirror_stall_s=2)
    ) as served, aiohttp.ClientSession() as http:
        _, before = await readyz(http, served)
        stuck = before["mirror_pid"]
        os.kill(stuck, signal.SIGSTOP)
        try:
            with Load(served, http) as load:
                async def replaced() -> bool:
                    _, now = await readyz(http, served)
                    return bool(now["mirror"] == "up" and now["mirror_pid"] != stuck)

                await until(replaced)
            await load.finished()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGCONT)
        assert await ask(app_client(served.url), f"after {uuid.uuid4()}") == 200
        samples = await scrape(served.admin_url)
        log = served.log()
    assert load.user == [200] * len(load.user)
    assert {status for status, _ in load.probes} == {200}
    assert sample(samples, "shadowproxy_restarts_total", process="mirror") == 1
    assert "stuck: no heartbeat" in log
    assert not Path(f"/proc/{stuck}").exists() or "Z" in _state(stuck), "killed, not left"


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"


# -- ports ----------------------------------------------------------------------------


def processes_of(data_dir: Path) -> list[int]:
    """Every live process started for this data directory (serve, workers, mirrors)."""
    wanted = f"SHADOWPROXY_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if wanted in (entry / "environ").read_bytes().split(b"\0") and _state(
                    int(entry.name)) != "Z":
                found.append(int(entry.name))
    return found


async def serve_once(tmp_path: Path, **env: Any) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "serve", env=serve_env(tmp_path, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode().strip().splitlines()


async def test_a_second_serve_on_the_same_port_is_refused_in_one_line(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with asyncio.timeout(90), running_serve(
        tmp_path / "a", "--workers", "2", **settings(simulator, database_url)
    ) as first:
        port = int(first.url.rsplit(":", 1)[1])
        code, lines = await serve_once(tmp_path / "b", port=port,
                                       **settings(simulator, database_url))
        assert await ask(app_client(first.url), "still served") == 200
    assert code == 2
    assert lines == [f"shadowproxy: error: proxy port {port} on 127.0.0.1 is already in use "
                     "(another shadowproxy serve?)"]
    assert processes_of(tmp_path / "b" / "data") == []


@pytest.mark.parametrize("busy", ["proxy", "admin"])
async def test_a_busy_port_is_one_line_exit_2_and_nothing_left_running(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, busy: str
) -> None:
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        code, lines = await serve_once(
            tmp_path, **{"port" if busy == "proxy" else "admin_port": port, "workers": 2},
            **settings(simulator, database_url))
    assert code == 2
    assert lines == [f"shadowproxy: error: {busy} port {port} on 127.0.0.1 is already in use "
                     "(another shadowproxy serve?)"]
    assert processes_of(tmp_path / "data") == []


# -- slow and greedy clients ----------------------------------------------------------


async def test_slowloris_cannot_block_healthz_nor_hold_connections_past_the_header_timeout(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    slow_clients, header_timeout = 300, 2
    async with asyncio.timeout(90), running_serve(
        tmp_path, **settings(simulator, database_url, header_timeout_s=header_timeout)
    ) as served, aiohttp.ClientSession() as http:
        host, port = served.url.removeprefix("http://").split(":")
        closed_after: list[float] = []

        async def slowloris(i: int) -> None:
            reader, writer = await asyncio.open_connection(host, int(port))
            opened = time.monotonic()
            head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode()
            try:
                for byte in head + b"a" * 60:  # a byte a second: a minute of headers
                    writer.write(bytes([byte]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            break
            except ConnectionError:
                pass
            closed_after.append(time.monotonic() - opened)
            writer.close()

        attackers = [asyncio.ensure_future(slowloris(i)) for i in range(slow_clients)]
        await asyncio.sleep(0.5)
        probes = []
        while not all(a.done() for a in attackers) and len(probes) < 60:
            started = time.monotonic()
            async with http.get(f"{served.admin_url}/healthz") as resp:
                probes.append((resp.status, time.monotonic() - started))
            await asyncio.sleep(0.1)
        answered = await ask(app_client(served.url), "a normal user meanwhile")
        await asyncio.gather(*attackers)
    assert answered == 200
    assert probes and all(status == 200 and took < 1.0 for status, took in probes), probes
    assert len(closed_after) == slow_clients
    assert max(closed_after) < header_timeout + 3, max(closed_after)


async def test_a_full_proxy_port_answers_503_and_the_admin_listener_still_answers(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    cap = 20
    async with asyncio.timeout(60), running_serve(
        tmp_path, **settings(simulator, database_url, max_connections=cap)
    ) as served, aiohttp.ClientSession() as http:
        host, port = served.url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(cap)]
        await asyncio.sleep(0.3)
        reader, writer = await asyncio.open_connection(host, int(port))
        refused = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        async with http.get(f"{served.admin_url}/healthz") as resp:
            health = resp.status
        for _, w in held:
            w.close()
        await asyncio.sleep(0.3)
        after = await ask(app_client(served.url), "room again")
    assert refused.startswith(b"HTTP/1.1 503")
    assert health == 200
    assert after == 200


async def test_a_body_trickled_in_is_cut_off_with_408(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with asyncio.timeout(60), running_serve(
        tmp_path, **settings(simulator, database_url, body_timeout_s=2)
    ) as served:
        host, port = served.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        answer = b""
        with contextlib.suppress(ConnectionError):
            while not answer:
                writer.write(b" ")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(4096), 1.0)
        took = time.monotonic() - started
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert took < 6


async def test_openai_sdk_still_works_over_keep_alive_with_the_limits(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    """The limits must not cut a normal client's pooled connection between requests."""
    async with asyncio.timeout(60), running_serve(
        tmp_path, **settings(simulator, database_url, header_timeout_s=1)
    ) as served:
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="sk-app",
                                    max_retries=0)
        first = await ask(client, "one")
        await asyncio.sleep(1.5)  # longer than the header timeout, shorter than idle
        second = await ask(client, "two")
    assert (first, second) == (200, 200)


async def test_readyz_reports_the_writers_real_state_not_just_a_reachable_database(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
    postgres_server: TestPostgres,
) -> None:
    async with asyncio.timeout(90), running_serve(
        tmp_path, "--workers", "2", **settings(simulator, database_url)
    ) as served, aiohttp.ClientSession() as http:
        seen: list[dict[str, Any]] = []

        async def writers_are(state: str) -> bool:
            status, body = await readyz(http, served)
            assert status == 200
            seen.append(body)
            return bool(body["writers"] == [state, state])

        await until(lambda: writers_are("up"))
        try:
            await asyncio.to_thread(postgres_server.stop)
            clients = [app_client(served.url) for _ in range(8)]
            for i in range(16):  # enough connections that both workers get some
                assert await ask(clients[i % 8], f"outage {i} {uuid.uuid4()}") == 200

            async def spooling() -> bool:
                _, body = await readyz(http, served)
                seen.append(body)
                return "spooling" in body["writers"]

            await until(spooling, 30)
        finally:
            await asyncio.to_thread(postgres_server.start)
        await until(lambda: writers_are("up"), 60)
    assert any("spooling" in body["writers"] for body in seen)


async def test_children_do_not_outlive_a_killed_serve(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with asyncio.timeout(120), running_serve(
        tmp_path, "--workers", "2", **settings(simulator, database_url, grace_s=5)
    ) as served:
        assert await ask(app_client(served.url), "before") == 200
        family = processes_of(tmp_path / "data")
        assert len(family) == 5  # serve, two workers, two mirrors
        served.proc.kill()
        await served.proc.wait()


        async def none_left() -> bool:
            return processes_of(tmp_path / "data") == []

        # Workers stop gracefully on the parent's death, their mirrors with them.
        await until(none_left, 60)
