"""Model end-of-life warnings from the anthropic SDK's deprecated-models data and a fake
Models API (the simulator's ``GET /v1/models/{id}``)."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

import anthropic
import pytest

from shadowproxy.lifecycle import (
    ModelLifecycle,
    base_model_id,
    from_model_info,
    lifecycle_warning,
    parse_sdk_date,
    sdk_deprecated_models,
    sdk_end_of_life,
)
from shadowproxy.mirror.engine import EngineLimits
from shadowproxy.mirror.process import check_models
from shadowproxy.models_api import lookup_lifecycles
from shadowproxy.settings import Settings
from shadowproxy.simulator.features import MODEL_CATALOGUE, CatalogueEntry
from tests.fakes.mirror_rig import mirror_rig
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve

TODAY = date(2026, 11, 28)


async def ask(simulator: SimulatedProvider, *models: str) -> dict[str, ModelLifecycle]:
    return await lookup_lifecycles(models, api_key="sk-ant-test", base_url=simulator.url)


# ----------------------------------------------------------------------------- pure


def test_the_installed_sdk_knows_sonnet_4_5_ends_on_30_november_2026() -> None:
    from anthropic._data import DEPRECATED_MODELS  # what the SDK itself uses

    assert sdk_deprecated_models() == DEPRECATED_MODELS  # read without importing the SDK
    assert sdk_end_of_life("claude-sonnet-4-5") == date(2026, 11, 30)
    assert sdk_end_of_life("claude-sonnet-4-5-20250929") == date(2026, 11, 30)
    assert sdk_end_of_life("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == date(2026, 11, 30)
    assert sdk_end_of_life("claude-haiku-4-5") is None
    assert sdk_end_of_life("gpt-4o") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("November 30th, 2026", date(2026, 11, 30)), ("January 22nd, 2027", date(2027, 1, 22)),
    ("June 1st, 2026", date(2026, 6, 1)), ("March 3rd, 2027", date(2027, 3, 3)),
    ("soon", None),
])
def test_sdk_dates_are_read_as_the_sdk_spells_them(text: str, expected: date | None) -> None:
    assert parse_sdk_date(text) == expected


def test_provider_spellings_reduce_to_the_anthropic_id() -> None:
    assert base_model_id("anthropic.claude-opus-4-5-20251101-v1:0") == "claude-opus-4-5-20251101"
    assert base_model_id("claude-sonnet-4-5@20250929") == "claude-sonnet-4-5"
    assert base_model_id("anthropic/claude-sonnet-4-5") == "claude-sonnet-4-5"


def test_warnings_say_what_and_when() -> None:
    deprecated = ModelLifecycle("claude-sonnet-4-5", "deprecated", date(2026, 11, 30),
                                source="models api")
    assert lifecycle_warning("claude-sonnet-4-5", deprecated, TODAY) == (
        "model claude-sonnet-4-5 is deprecated and reaches end-of-life on 2026-11-30 "
        "(in 2 days) (source: models api)")
    overdue = lifecycle_warning("claude-sonnet-4-5", deprecated, date(2026, 12, 5))
    assert overdue is not None and "was due to retire on 2026-11-30 (5 days ago)" in overdue
    retired = ModelLifecycle("claude-3-haiku", "retired", date(2026, 4, 20))
    assert lifecycle_warning("claude-3-haiku", retired, TODAY) == (
        "model claude-3-haiku was retired on 2026-04-20: requests to it fail")
    assert lifecycle_warning("x", ModelLifecycle("x", "deprecated"), TODAY) == (
        "model x is deprecated; no retirement date is set")
    assert lifecycle_warning("claude-haiku-4-5", ModelLifecycle("claude-haiku-4-5", "active"),
                             TODAY) is None
    assert lifecycle_warning("gpt-4o", None, TODAY) is None


# ------------------------------------------------------------------ Models API lookups


async def test_the_models_api_reports_lifecycle_retirement_and_max_tokens(
    simulator: SimulatedProvider
) -> None:
    found = await ask(simulator, "claude-sonnet-4-5", "claude-3-haiku-20240307",
                      "claude-haiku-4-5")
    assert found["claude-sonnet-4-5"] == ModelLifecycle(
        "claude-sonnet-4-5", "deprecated", date(2026, 11, 30), 64_000, "models api")
    assert found["claude-3-haiku-20240307"].lifecycle == "retired"
    assert found["claude-haiku-4-5"] == ModelLifecycle(
        "claude-haiku-4-5", "active", None, 64_000, "models api")
    assert any(r.path == "/v1/models/claude-haiku-4-5" for r in simulator.received)


async def test_the_models_api_is_authoritative_over_the_sdk(
    simulator: SimulatedProvider
) -> None:
    simulator.app[MODEL_CATALOGUE]["claude-sonnet-4-5"] = CatalogueEntry(
        "Claude Sonnet 4.5", "deprecated", 64_000, retires_at="2027-02-01T00:00:00Z")
    info = (await ask(simulator, "claude-sonnet-4-5"))["claude-sonnet-4-5"]
    assert info.retires_at == date(2027, 2, 1) and info.source == "models api"


async def test_unknown_to_the_api_or_unreachable_falls_back_to_the_sdk(
    simulator: SimulatedProvider, unused_tcp_port: int
) -> None:
    info = (await ask(simulator, "claude-opus-4-5"))["claude-opus-4-5"]  # unknown to the API
    assert info == ModelLifecycle("claude-opus-4-5", "deprecated", date(2027, 1, 22), None,
                                  "anthropic sdk")
    nowhere = await lookup_lifecycles(["claude-sonnet-4-5"], api_key="k",
                                      base_url=f"http://127.0.0.1:{unused_tcp_port}")
    info = nowhere["claude-sonnet-4-5"]
    assert info.retires_at == date(2026, 11, 30) and info.source == "anthropic sdk"
    without_key = await lookup_lifecycles(["claude-haiku-4-5"], api_key=None)
    assert without_key == {"claude-haiku-4-5": ModelLifecycle("claude-haiku-4-5")}


def test_a_models_api_without_lifecycle_fields_leaves_the_date_to_the_sdk() -> None:
    assert from_model_info("claude-sonnet-4-5", {"id": "claude-sonnet-4-5",
                                                 "max_tokens": 64000}) == ModelLifecycle(
        "claude-sonnet-4-5", "deprecated", date(2026, 11, 30), 64000, "anthropic sdk")


async def test_mirror_start_takes_haikus_limit_from_the_api_and_warns(
    simulator: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.app[MODEL_CATALOGUE]["claude-haiku-4-5"] = CatalogueEntry(
        "Claude Haiku 4.5", "active", 32_000)
    limits = EngineLimits()
    settings = Settings(shadow_base_url=simulator.url, shadow_api_key="sk-ant-test")
    with caplog.at_level(logging.WARNING, logger="shadowproxy.mirror"):
        await check_models(settings, limits, warn=True)
    assert limits.max_output_tokens == 32_000
    assert caplog.records == []  # Haiku 4.5 is active
    deprecated_shadow = Settings(shadow_base_url=simulator.url, shadow_api_key="sk-ant-test",
                                 shadow_model="claude-sonnet-4-5")
    with caplog.at_level(logging.WARNING, logger="shadowproxy.mirror"):
        await check_models(deprecated_shadow, EngineLimits(), warn=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "claude-sonnet-4-5" in line and "2026-11-30" in line


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_warns_at_start_about_a_deprecated_shadow_model(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    settings: dict[str, Any] = {
        "primary_url": simulator.url, "shadow_base_url": simulator.url,
        "shadow_api_key": "sk-ant-shadow-key-0123456789", "database_url": database_url,
        "shadow_model": "claude-sonnet-4-5",
    }
    async with running_serve(tmp_path, **settings) as served:
        log = served.log()  # the check ends before the mirror says it is ready
    assert "model claude-sonnet-4-5 is deprecated and reaches end-of-life on 2026-11-30" in log
    assert "sk-ant-shadow-key" not in log


async def test_the_mirror_warns_once_when_the_applications_model_is_deprecated(
    aiohttp_server: Any, simulator: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    async with mirror_rig(aiohttp_server, primary_url=simulator.url,
                          shadow_url=simulator.url) as rig:
        client = anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key="sk-app",
                                          max_retries=0, timeout=30)
        with caplog.at_level(logging.WARNING, logger="shadowproxy.mirror"):
            for question in ("one", "two"):
                with pytest.warns(DeprecationWarning, match="claude-sonnet-4-5"):
                    await client.messages.create(  # the SDK warns the application too
                        model="claude-sonnet-4-5", max_tokens=50,
                        messages=[{"role": "user", "content": question}])
            await client.messages.create(model="claude-sonnet-4-6", max_tokens=50,
                                         messages=[{"role": "user", "content": "three"}])
            await rig.wait_records(3)
        await client.close()
    lines = [r.getMessage() for r in caplog.records if "end-of-life" in r.getMessage()]
    (line,) = lines  # once, not per pair; none for the active model
    assert line.startswith("primary model claude-sonnet-4-5 is deprecated")
    assert "2026-11-30" in line and "source: anthropic sdk" in line
