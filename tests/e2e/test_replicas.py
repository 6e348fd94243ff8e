"""Two ``serve`` replicas on one database behind a round-robin client, as a Kubernetes
Service spreads requests: whichever replica a turn lands on, the conversation is
mirrored whole, and a dashboard login made on one replica holds on the other."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import httpx2
import openai

from tests.e2e.test_serve import wait_pairs
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import ServeProcess, running_serve

ADMIN_TOKEN = "admin-token-for-both-replicas-0123456789"


class RoundRobin(httpx2.AsyncBaseTransport):
    """Each request to the next replica in turn, like a load balancer with no affinity."""

    def __init__(self, replicas: list[str]) -> None:
        self._next = itertools.cycle([httpx2.URL(r) for r in replicas])
        self._inner = httpx2.AsyncHTTPTransport()
        self.sent_to: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        target = next(self._next)
        request.url = request.url.copy_with(host=target.host, port=target.port)
        self.sent_to.append(f"{target.host}:{target.port}")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def two_replicas(tmp_path: Path, simulator: SimulatedProvider, database_url: str
                       ) -> AsyncIterator[list[ServeProcess]]:
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(running_serve(
            tmp_path / name, primary_url=simulator.url, shadow_base_url=simulator.url,
            shadow_api_key="sk-ant-shadow", database_url=database_url,
            admin_token=ADMIN_TOKEN)) for name in ("a", "b")]
        yield replicas


async def test_a_responses_conversation_is_mirrored_whole_across_replicas(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with two_replicas(tmp_path, simulator, database_url) as replicas:
        balancer = RoundRobin([r.url for r in replicas])
        client = openai.AsyncOpenAI(
            base_url=f"{replicas[0].url}/v1", api_key="sk-app", max_retries=0,
            http_client=httpx2.AsyncClient(transport=balancer))
        previous: str | None = None
        questions = ["My name is Ada.", "I live in Paris.", "I like tea.",
                     "I have a cat.", "Where do I live?"]
        for n, question in enumerate(questions):
            extra = {"previous_response_id": previous} if previous else {}
            if n % 2:
                stream = await client.responses.create(model="gpt-4.1", input=question,
                                                       stream=True, **extra)
                (previous,) = [e.response.id async for e in stream
                               if e.type == "response.completed"]
            else:
                previous = (await client.responses.create(model="gpt-4.1", input=question,
                                                          **extra)).id
        rows = await wait_pairs(database_url, 5)
        await client.close()
    assert len(set(balancer.sent_to)) == 2  # the turns really alternated
    assert [r["shadow_outcome"] for r in rows] == ["ok"] * 5, [r["shadow_reason"] for r in rows]
    assert len({r["conversation_id"] for r in rows}) == 1
    assert [r["turn"] for r in rows] == [1, 2, 3, 4, 5]
    # Shadow calls run in the background, so they may reach the shadow out of order.
    shadow_turns = sorted((r.json["messages"] for r in simulator.received
                           if r.path == "/v1/messages"), key=len)
    assert [len(turns) for turns in shadow_turns] == [1, 3, 5, 7, 9]
    assert [m["content"][0]["text"] for m in shadow_turns[-1] if m["role"] == "user"] == questions


async def test_a_dashboard_login_on_one_replica_holds_on_the_other(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with two_replicas(tmp_path, simulator, database_url) as (a, b), \
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(f"{a.admin_url}/login",
                             data={"token": ADMIN_TOKEN, "next": "/dashboard"},
                             allow_redirects=False) as resp:
            assert resp.status == 303
            jar = SimpleCookie()
            for header in resp.headers.getall("Set-Cookie"):
                jar.load(header)
        cookies = "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())
        for replica in (a, b):
            async with http.get(f"{replica.admin_url}/dashboard",
                                headers={"Cookie": cookies, "Accept": "text/html"}) as page:
                assert page.status == 200, replica.admin_url
                assert "shadowproxy report" in await page.text()
