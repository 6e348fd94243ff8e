"""Fixtures: the simulated providers running as a real in-process HTTP server.

A test that needs other behaviour overrides ``simulator_config`` in its module::

    @pytest.fixture
    def simulator_config() -> SimulatorConfig:
        return SimulatorConfig(chunk_interval_s=0.01)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shadowproxy.simulator import RECEIVED, ReceivedRequest, SimulatorConfig, make_app

ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclass(slots=True)
class SimulatedProvider:
    url: str  # base URL, no trailing slash: SDKs append /v1/messages, proxies append paths
    received: list[ReceivedRequest]
    app: web.Application

    def last(self, path: str | None = None) -> ReceivedRequest:
        """The most recent request (to ``path`` when given)."""
        matching = [r for r in self.received if path is None or r.path == path]
        assert matching, f"the simulator received no request to {path or 'any path'}"
        return matching[-1]


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig()


@pytest.fixture
async def simulator(
    aiohttp_server: ServerFactory, simulator_config: SimulatorConfig
) -> SimulatedProvider:
    app = make_app(simulator_config)
    server = await aiohttp_server(app)
    return SimulatedProvider(
        url=f"http://{server.host}:{server.port}", received=app[RECEIVED], app=app
    )
