"""Model end of life: our table, the SDK's data and the Models API merged, the most severe
first, judged on a day each test chooses.

No test here reads today's date or the installed SDK's data, except
``test_the_installed_sdks_data_parses``, which checks only that it parses. The SDK data
of two releases is written down below, as they shipped it.
"""

from __future__ import annotations

import logging
import tomllib
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.lifecycle import (
    DEPRECATED,
    MODELS_API_SOURCE,
    RETIRED,
    LifecycleData,
    ModelLifecycle,
    ModelWatch,
    base_model_id,
    effective_state,
    from_model_info,
    lifecycle_warning,
    merge,
    parse_sdk_date,
    parse_sdk_source,
    parse_table,
)
from shadowproxy.lifecycle_sources import (
    builtin_table,
    installed_sdk_path,
    installed_sdk_table,
)
from shadowproxy.mirror.engine import EngineLimits
from shadowproxy.mirror.process import check_models
from shadowproxy.models_api import lookup_lifecycles
from shadowproxy.settings import Settings
from shadowproxy.simulator.features import MODEL_CATALOGUE, CatalogueEntry
from tests.fakes.mirror_rig import mirror_rig
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve

TODAY = date(2026, 12, 3)  # three days after claude-sonnet-4-5 retired
BEFORE = date(2026, 11, 28)  # two days before
SONNET_45_RETIRED = "claude-sonnet-4-5 retired on 2026-11-30: its requests fail at the provider"

# anthropic/_data/deprecated_models.py as two releases shipped it: 2.16.0 forgot
# claude-sonnet-4-5 once it had retired.
SDK_2_13 = {
    "claude-mythos-preview": "June 30th, 2026",
    "claude-opus-4-5": "January 22nd, 2027",
    "claude-opus-4-5-20251101": "January 22nd, 2027",
    "claude-sonnet-4-5": "November 30th, 2026",
    "claude-sonnet-4-5-20250929": "November 30th, 2026",
}
SDK_2_16 = {k: v for k, v in SDK_2_13.items() if not k.startswith("claude-sonnet-4-5")}
OUR_TABLE = "our table"
TABLE = {
    "claude-sonnet-4-5": ModelLifecycle("claude-sonnet-4-5", DEPRECATED, date(2026, 11, 30),
                                        source=OUR_TABLE),
    "claude-opus-4-5": ModelLifecycle("claude-opus-4-5", DEPRECATED, date(2027, 1, 22),
                                      source=OUR_TABLE),
}


async def ask(simulator: SimulatedProvider, *models: str) -> dict[str, ModelLifecycle | None]:
    return await lookup_lifecycles(models, api_key="sk-ant-test", base_url=simulator.url)


# -------------------------------------------------------------- the SDK's data


def test_the_installed_sdks_data_parses() -> None:
    """The one test that reads the installed SDK: whatever models it lists, the file is
    a mapping of model id → a date our parser reads, and reading it (never running it)
    gives what the SDK itself imports."""
    from anthropic._data import DEPRECATED_MODELS

    path = installed_sdk_path()
    assert path is not None and path.is_file()
    table = parse_sdk_source(path.read_text("utf-8"))
    assert table == DEPRECATED_MODELS
    assert all(isinstance(k, str) and parse_sdk_date(v) is not None for k, v in table.items())
    assert installed_sdk_table() == table


@pytest.mark.parametrize(("text", "expected"), [
    ("November 30th, 2026", date(2026, 11, 30)), ("January 22nd, 2027", date(2027, 1, 22)),
    ("June 1st, 2026", date(2026, 6, 1)), ("March 3rd, 2027", date(2027, 3, 3)),
    ("soon", None),
])
def test_sdk_dates_are_read_as_the_sdk_spells_them(text: str, expected: date | None) -> None:
    assert parse_sdk_date(text) == expected


def _sdk_spelling(day: date) -> str:
    suffix = "th" if 11 <= day.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10,
                                                                             "th")
    return f"{day:%B} {day.day}{suffix}, {day.year}"


@given(st.dates(min_value=date(1000, 1, 1)))
def test_any_day_the_sdks_way_reads_back(day: date) -> None:
    assert parse_sdk_date(_sdk_spelling(day)) == day


def test_the_sdks_file_is_read_as_a_literal_never_run() -> None:
    source = ("import os\nfrom typing import Dict\n\nDEPRECATED_MODELS: Dict[str, str] = {\n"
              '    "claude-sonnet-4-5": "November 30th, 2026",\n}\n')
    assert parse_sdk_source(source) == {"claude-sonnet-4-5": "November 30th, 2026"}
    for broken in ("DEPRECATED_MODELS = dict(os.environ)", "OTHER = {}", "DEPRECATED = [",
                   "DEPRECATED_MODELS = ['a']"):
        with pytest.raises(ValueError):
            parse_sdk_source(broken)


def test_provider_spellings_reduce_to_the_anthropic_id() -> None:
    assert base_model_id("anthropic.claude-opus-4-5-20251101-v1:0") == "claude-opus-4-5-20251101"
    assert base_model_id("claude-sonnet-4-5@20250929") == "claude-sonnet-4-5"
    assert base_model_id("anthropic/claude-sonnet-4-5") == "claude-sonnet-4-5"


# ---------------------------------------------------------------------- our table


def test_our_table_keeps_what_the_sdk_forgot() -> None:
    """anthropic 2.16.0 no longer lists claude-sonnet-4-5; our table still knows it
    retired on 2026-11-30, and says where that came from."""
    table = builtin_table()
    assert all(row.source and row.retires_at for row in table.values())
    for model, day in (("claude-sonnet-4-5", date(2026, 11, 30)),
                       ("claude-sonnet-4-5-20250929", date(2026, 11, 30)),
                       ("claude-opus-4-5", date(2027, 1, 22)),
                       ("claude-opus-4-5-20251101", date(2027, 1, 22))):
        row = table[model]
        assert (row.lifecycle, row.retires_at) == (DEPRECATED, day)
        assert row.source is not None and "anthropic SDK 2.13.0" in row.source
    view = LifecycleData(table, SDK_2_16).as_of(TODAY)
    for spelling in ("claude-sonnet-4-5", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"):
        info = view.of(spelling)
        assert (info.lifecycle, info.retires_at) == (RETIRED, date(2026, 11, 30))
        assert view.warning(info) == SONNET_45_RETIRED.replace("claude-sonnet-4-5", spelling)


@pytest.mark.parametrize(("rows", "complaint"), [
    ('[[model]]\nid = "m"\nstate = "retired"\ndate = 2026-01-01\n', "needs its source"),
    ('[[model]]\nid = "m"\nstate = "gone"\ndate = 2026-01-01\nsource = "s"\n', "state"),
    ('[[model]]\nid = "m"\nstate = "retired"\ndate = "2026-01-01"\nsource = "s"\n', "date"),
    ('[[model]]\nid = "m"\nstate = "retired"\ndate = 2026-01-01\nsource = "s"\nwhy = 1\n',
     "unknown field"),
    ('[[model]]\nid = "m"\nstate = "retired"\ndate = 2026-01-01\nsource = "s"\n' * 2,
     "listed twice"),
    ('[[model]]\nstate = "retired"\ndate = 2026-01-01\nsource = "s"\n', "id"),
    ('[models]\n', r"only \[\[model\]\] rows"),
])
def test_a_bad_table_row_is_refused_with_its_name(rows: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_table(tomllib.loads(rows), "model_lifecycle.toml")


# ------------------------------------------------------------------------ merging


def test_the_most_severe_source_wins() -> None:
    api_active = ModelLifecycle("m", "active", None, 64_000, MODELS_API_SOURCE)
    table_retired = ModelLifecycle("m", RETIRED, date(2026, 4, 20), None, OUR_TABLE)
    assert merge("m", [api_active, table_retired], TODAY) == ModelLifecycle(
        "m", RETIRED, date(2026, 4, 20), 64_000, OUR_TABLE)

    # Same severity: the sooner retirement is the one to plan for.
    api_later = ModelLifecycle("m", DEPRECATED, date(2027, 2, 1), None, MODELS_API_SOURCE)
    sdk_sooner = ModelLifecycle("m", DEPRECATED, date(2026, 11, 30), None, "anthropic sdk")
    assert merge("m", [api_later, sdk_sooner], BEFORE).retires_at == date(2026, 11, 30)
    # …and once that day has come, the model is retired.
    assert merge("m", [api_later, sdk_sooner], TODAY).lifecycle == RETIRED

    api_retired = ModelLifecycle("m", RETIRED, None, None, MODELS_API_SOURCE)
    later = ModelLifecycle("m", DEPRECATED, date(2030, 1, 1), None, OUR_TABLE)
    assert merge("m", [None, later, api_retired], TODAY).source == MODELS_API_SOURCE
    assert merge("m", [None, ModelLifecycle("m")], TODAY) == ModelLifecycle("m")


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2031, 12, 31)))
def test_a_deprecated_model_is_retired_from_its_date_on(today: date) -> None:
    view = LifecycleData(TABLE, {}).as_of(today)
    info = view.of("claude-sonnet-4-5")
    retired = today >= date(2026, 11, 30)
    assert (effective_state(info, today) == RETIRED) is retired
    assert (view.warning(info) == SONNET_45_RETIRED) is retired


def test_warnings_say_what_and_when() -> None:
    deprecated = ModelLifecycle("claude-sonnet-4-5", DEPRECATED, date(2026, 11, 30))
    assert lifecycle_warning(deprecated, BEFORE) == (
        "claude-sonnet-4-5 is deprecated and retires on 2026-11-30 (in 2 days)")
    assert lifecycle_warning(deprecated, date(2026, 11, 29)) == (
        "claude-sonnet-4-5 is deprecated and retires on 2026-11-30 (in 1 day)")
    assert lifecycle_warning(deprecated, date(2026, 11, 30)) == SONNET_45_RETIRED
    assert lifecycle_warning(deprecated, TODAY) == SONNET_45_RETIRED
    assert lifecycle_warning(ModelLifecycle("x", RETIRED), TODAY) == (
        "x retired: its requests fail at the provider")
    assert lifecycle_warning(ModelLifecycle("x", DEPRECATED), TODAY) == (
        "x is deprecated; no retirement date is set")
    assert lifecycle_warning(ModelLifecycle("claude-haiku-4-5", "active"), TODAY) is None
    assert lifecycle_warning(ModelLifecycle("gpt-4o"), TODAY) is None


def test_the_watch_names_a_model_once_per_state() -> None:
    days = [BEFORE]
    watch = ModelWatch(LifecycleData(TABLE, SDK_2_16), lambda: days[0], limit=3)
    assert watch.check("claude-sonnet-4-5") == (
        "claude-sonnet-4-5 is deprecated and retires on 2026-11-30 (in 2 days) "
        "(source: our table)")
    assert watch.check("claude-sonnet-4-5") is None
    assert watch.check("claude-haiku-4-5") is None
    days[0] = BEFORE + timedelta(days=1)
    assert watch.check("claude-sonnet-4-5") is None  # still deprecated: said already
    days[0] = TODAY
    assert watch.check("claude-sonnet-4-5") == f"{SONNET_45_RETIRED} (source: our table)"
    assert watch.check("claude-sonnet-4-5") is None
    assert watch.check("claude-opus-4-5") is not None  # the third id
    assert watch.check("claude-mythos-preview") is None  # past the limit: not watched


# ------------------------------------------------------------------ Models API lookups


async def test_the_models_api_reports_lifecycle_retirement_and_max_tokens(
    simulator: SimulatedProvider
) -> None:
    found = await ask(simulator, "claude-sonnet-4-5", "claude-3-haiku-20240307",
                      "claude-haiku-4-5", "claude-opus-4-5")
    assert found["claude-sonnet-4-5"] == ModelLifecycle(
        "claude-sonnet-4-5", DEPRECATED, date(2026, 11, 30), 64_000, MODELS_API_SOURCE)
    assert found["claude-3-haiku-20240307"] == ModelLifecycle(
        "claude-3-haiku-20240307", RETIRED, date(2026, 4, 20), 4_096, MODELS_API_SOURCE)
    assert found["claude-haiku-4-5"] == ModelLifecycle(
        "claude-haiku-4-5", "active", None, 64_000, MODELS_API_SOURCE)
    assert found["claude-opus-4-5"] is None  # unknown to this API
    assert any(r.path == "/v1/models/claude-haiku-4-5" for r in simulator.received)


async def test_without_an_answer_the_offline_data_decides(
    simulator: SimulatedProvider, unused_tcp_port: int
) -> None:
    nowhere = await lookup_lifecycles(["claude-sonnet-4-5"], api_key="k",
                                      base_url=f"http://127.0.0.1:{unused_tcp_port}")
    assert nowhere == {"claude-sonnet-4-5": None}
    asked = len(simulator.received)
    without_key = await lookup_lifecycles(["claude-haiku-4-5"], api_key=None,
                                          base_url=simulator.url)
    assert without_key == {"claude-haiku-4-5": None} and len(simulator.received) == asked
    view = LifecycleData(TABLE, SDK_2_16).as_of(TODAY)
    assert view.warning(view.of("claude-sonnet-4-5", nowhere["claude-sonnet-4-5"])) == (
        SONNET_45_RETIRED)


def test_a_models_api_without_lifecycle_fields_gives_its_limit_only() -> None:
    info = from_model_info("claude-sonnet-4-5", {"id": "claude-sonnet-4-5",
                                                 "max_tokens": 64000})
    assert info == ModelLifecycle("claude-sonnet-4-5", None, None, 64000, MODELS_API_SOURCE)
    merged = LifecycleData(TABLE, {}).as_of(BEFORE).of("claude-sonnet-4-5", info)
    assert merged == ModelLifecycle("claude-sonnet-4-5", DEPRECATED, date(2026, 11, 30),
                                    64000, OUR_TABLE)


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------- serve and the mirror


async def test_mirror_start_names_a_retired_shadow_and_a_deprecated_judge(
    simulator: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.app[MODEL_CATALOGUE]["claude-haiku-4-5"] = CatalogueEntry(
        "Claude Haiku 4.5", "active", 32_000)
    data = LifecycleData(TABLE, SDK_2_16)
    limits = EngineLimits()
    settings = Settings(shadow_base_url=simulator.url, shadow_api_key="sk-ant-test")
    with caplog.at_level(logging.WARNING, logger="shadowproxy.mirror"):
        await check_models(settings, limits, warn=True, lifecycle=data.as_of(TODAY))
    assert limits.max_output_tokens == 32_000  # the Models API's limit
    assert caplog.records == []  # Haiku 4.5 is active

    retiring = Settings(shadow_base_url=simulator.url, shadow_api_key="sk-ant-test",
                        shadow_model="claude-sonnet-4-5", judge_model="claude-opus-4-5")
    for day, lines in ((BEFORE, [
        "shadow model claude-sonnet-4-5 is deprecated and retires on 2026-11-30 (in 2 days) "
        "(source: models api)",
        "judge model claude-opus-4-5 is deprecated and retires on 2027-01-22 (in 55 days) "
        "(source: our table)",
    ]), (TODAY, [
        f"shadow model {SONNET_45_RETIRED} (source: models api)",
        "judge model claude-opus-4-5 is deprecated and retires on 2027-01-22 (in 50 days) "
        "(source: our table)",
    ])):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="shadowproxy.mirror"):
            await check_models(retiring, EngineLimits(), warn=True, lifecycle=data.as_of(day))
        assert [r.getMessage() for r in caplog.records] == lines


async def test_serve_names_a_retired_shadow_and_judge_at_start(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    """The Models API says both are retired, so no clock or SDK release changes this."""
    simulator.app[MODEL_CATALOGUE]["claude-3-opus-20240229"] = CatalogueEntry(
        "Claude Opus 3", "retired", 4_096, retires_at="2026-01-05T00:00:00Z")
    settings: dict[str, Any] = {
        "primary_url": simulator.url, "shadow_base_url": simulator.url,
        "shadow_api_key": "sk-ant-shadow-key-0123456789", "database_url": database_url,
        "shadow_model": "claude-3-haiku-20240307", "judge_model": "claude-3-opus-20240229",
    }
    async with running_serve(tmp_path, **settings) as served:
        log = served.log()  # the check ends before the mirror says it is ready
    assert ("shadow model claude-3-haiku-20240307 retired on 2026-04-20: its requests fail "
            "at the provider (source: models api)") in log
    assert ("judge model claude-3-opus-20240229 retired on 2026-01-05: its requests fail "
            "at the provider") in log
    assert "sk-ant-shadow-key" not in log


async def test_the_mirror_names_a_retired_application_model_once(
    aiohttp_server: Any, simulator: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    days = [TODAY]
    watch = ModelWatch(LifecycleData(TABLE, SDK_2_16), lambda: days[0])
    async with mirror_rig(aiohttp_server, primary_url=simulator.url,
                          shadow_url=simulator.url, models=watch) as rig:
        client = anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key="sk-app",
                                          max_retries=0, timeout=30)
        with caplog.at_level(logging.WARNING, logger="shadowproxy.mirror"), \
                warnings.catch_warnings():
            # Whether the SDK warns the application too depends on its release's data.
            warnings.simplefilter("ignore", DeprecationWarning)
            for question in ("one", "two"):
                await client.messages.create(
                    model="claude-sonnet-4-5", max_tokens=50,
                    messages=[{"role": "user", "content": question}])
            await client.messages.create(model="claude-sonnet-4-6", max_tokens=50,
                                         messages=[{"role": "user", "content": "three"}])
            await rig.wait_records(3)
        await client.close()
    lines = [r.getMessage() for r in caplog.records if "claude-sonnet" in r.getMessage()]
    # Once, not per pair; none for the active model.
    assert lines == [f"primary model {SONNET_45_RETIRED} (source: our table)"]
