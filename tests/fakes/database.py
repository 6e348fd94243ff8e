"""Fixtures: a real PostgreSQL for the tests, and realistic pairs to put in it.

CI has no database service, so the session starts its own (pgserver, on a unix socket
in a temporary directory) unless ``SHADOWPROXY_TEST_DATABASE_URL`` names one. Each test
gets a fresh database cloned from a migrated template, which is much faster than
migrating every time; migration tests get an empty one instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shadowproxy.records import Api, PairRecord, ShadowOutcome, Side
from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.urls import asyncpg_dsn, sqlalchemy_url

TEMPLATE_DB = "shadowproxy_template"


class TestPostgres:
    """The session's server; ``stop()``/``start()`` simulate an outage at one address."""

    __test__ = False

    def __init__(self, url: str, embedded: EmbeddedPostgres | None, data_dir: Path | None):
        self.url = url
        self._embedded = embedded
        self._data_dir = data_dir
        self.running = True

    def url_for(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self._embedded is None:
            pytest.skip("cannot stop an external SHADOWPROXY_TEST_DATABASE_URL server")
        self._embedded.stop()
        self.running = False

    def start(self) -> None:
        if self._embedded is not None and self._data_dir is not None and not self.running:
            self._embedded.start(self._data_dir)
        self.running = True

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.url))


async def _create_template(server: TestPostgres) -> None:
    conn = await server.admin()
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()
    await migrate.upgrade(server.url_for(TEMPLATE_DB))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    external = os.environ.get("SHADOWPROXY_TEST_DATABASE_URL")
    if external:
        server = TestPostgres(sqlalchemy_url(external), None, None)
        asyncio.run(_create_template(server))
        yield server
        return
    data_dir = tmp_path_factory.mktemp("pg")
    embedded = EmbeddedPostgres()
    server = TestPostgres(embedded.start(data_dir), embedded, data_dir)
    try:
        asyncio.run(_create_template(server))
        yield server
    finally:
        embedded.stop()


async def _fresh_database(server: TestPostgres, template: str) -> str:
    server.start()  # a fault test may have left it stopped
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await server.admin()
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    return name


async def _drop_database(server: TestPostgres, name: str) -> None:
    server.start()
    conn = await server.admin()
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def database_url(postgres_server: TestPostgres) -> AsyncIterator[str]:
    """A fresh database migrated to head; the asyncpg URL."""
    name = await _fresh_database(postgres_server, TEMPLATE_DB)
    yield postgres_server.url_for(name)
    await _drop_database(postgres_server, name)


@pytest.fixture
async def empty_database_url(postgres_server: TestPostgres) -> AsyncIterator[str]:
    """A fresh database with no schema at all; the asyncpg URL."""
    name = await _fresh_database(postgres_server, "template0")
    yield postgres_server.url_for(name)
    await _drop_database(postgres_server, name)


def make_pair(**overrides: Any) -> PairRecord:
    """A realistic OpenAI-style pair where both sides answered; override any field."""
    request: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful support agent."},
            {"role": "user", "content": "Where is my order #1234?"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "lookup_order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        }}],
    }
    body = json.dumps(request).encode()
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "received_at": datetime.now(UTC),
        "api": Api.OPENAI_CHAT.value,
        "path": "/v1/chat/completions",
        "tag": "support",
        "stream": False,
        "request": request,
        "request_sha256": hashlib.sha256(body).hexdigest(),
        "primary": Side(
            model="gpt-4o-mini", status=200, latency_ms=812.5, ttft_ms=None,
            input_tokens=57, output_tokens=18, cost_usd=0.0000193,
            text="", tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "1234"}}],
            stop_reason="tool_use", request_id="chatcmpl-abc123",
        ),
        "shadow": Side(
            model="claude-haiku-4-5", status=200, latency_ms=640.0, ttft_ms=None,
            input_tokens=412, output_tokens=55, cache_creation_input_tokens=0,
            cache_read_input_tokens=0, cost_usd=0.000687,
            text="Let me look that up.",
            tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "1234"}}],
            stop_reason="tool_use", request_id="req_011CabcXYZ",
        ),
        "shadow_outcome": ShadowOutcome.OK.value,
    }
    fields.update(overrides)
    return PairRecord(**fields)
