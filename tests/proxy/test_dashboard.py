"""The dashboard on the admin listener: the live report, behind the admin token, with
every model-written string escaped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.since import parse_since
from shadowproxy.lifecycle import LifecycleData, LifecycleView, ModelLifecycle
from shadowproxy.proxy.admin import make_admin_app
from shadowproxy.proxy.dashboard import Dashboard
from shadowproxy.records import Side
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair
from tests.fakes.traffic import store, traffic
from tests.fakes.verdicts import Judged, write

TOKEN = "admin-secret-token"


async def ready() -> dict[str, Any]:
    return {"ready": True}


@pytest.fixture
async def admin(database_url: str, aiohttp_client: Any) -> TestClient[Any, Any]:
    app = make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"), token=TOKEN,
                         database_url=database_url, **_dashboard(database_url))
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    return client


async def test_dashboard_needs_the_token_and_escapes_model_text(
    admin: TestClient[Any, Any], database_url: str
) -> None:
    evil = "<script>alert('pwned')</script>"
    record = make_pair(tag="<b>tag</b>", shadow=Side(
        model="claude-haiku-4-5", status=200, text=evil, stop_reason="end_turn",
        tool_calls=[]))
    # Judged worse: it shows among the worst pairs, with the judge's reason.
    await write(database_url, [(record, Judged("worse", reason=f"Says {evil}"))])
    assert (await admin.get("/dashboard")).status == 401
    resp = await admin.get("/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    html = await resp.text()
    assert "shadowproxy report" in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<b>tag</b>" not in html and "Says &lt;script&gt;" in html
    assert "script-src" not in resp.headers["Content-Security-Policy"]


async def test_admin_api_report_json_with_filters(
    admin: TestClient[Any, Any], database_url: str
) -> None:
    await store(database_url, [make_pair(tag="support"), make_pair(tag="billing")])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await admin.get("/api/report?tag=support", headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["overall"]["pairs_total"] == 1 and "support" in body["by_tag"]
    bad = await admin.get("/api/report?since=yesterday-ish", headers=auth)
    assert bad.status == 400 and "since" in await bad.text()


async def test_dashboard_says_pairs_await_diff_without_claiming_no_disagreements(
    database_url: str, aiohttp_client: Any
) -> None:
    from shadowproxy.proxy.dashboard import REFRESH_S

    now = [0.0]
    app = make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"), token=TOKEN,
                         database_url=database_url,
                         **_dashboard(database_url, clock=lambda: now[0]))
    admin: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    await store(database_url, traffic("support", 12, 3))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    html = await (await admin.get("/dashboard", headers=auth)).text()
    assert "12 pairs not yet judged: run `shadowproxy diff`" in html
    assert "No disagreements" not in html and "judged worse." not in html
    await run_diff(database_url, progress=False)
    now[0] += REFRESH_S  # the next refresh
    after = await (await admin.get("/api/report", headers=auth)).json()
    assert after["overall"]["pairs_unscored"] == 0


def test_since_takes_ages_and_iso_times() -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert parse_since("24h", now=now) == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_since("30m", now=now) == datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since(None) is None
    with pytest.raises(ValueError, match="neither an ISO"):
        parse_since("last tuesday")


async def test_the_dashboard_reuses_its_connections_and_closes_them_with_the_app(
    database_url: str, aiohttp_client: Any
) -> None:
    """Each refresh used to open (and tear down) its own database engine; now one small
    pool serves every request, and stopping the admin app closes it."""
    await store(database_url, traffic("support", 20, 5))
    app = make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"), token=TOKEN,
                         database_url=database_url, **_dashboard(database_url))
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async def dashboard_backends() -> set[int]:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND application_name <> 'shadowproxy admin'")
            return {r["pid"] for r in rows}

        assert (await client.get("/dashboard", headers=auth)).status == 200
        first = await dashboard_backends()
        assert 1 <= len(first) <= 2
        for _ in range(10):
            assert (await client.get("/api/report", headers=auth)).status == 200
        assert await dashboard_backends() == first  # the same connections, reused
        await client.close()
        assert await dashboard_backends() == set()
    finally:
        await conn.close()


async def test_viewers_share_one_report_per_refresh_period(
    database_url: str, aiohttp_client: Any
) -> None:
    """However many browsers refresh at once, each filter's report is computed once per
    refresh period: every viewer sees the same generated_at until the period ends."""
    from shadowproxy.proxy.dashboard import REFRESH_S

    await store(database_url, traffic("support", 20, 5))
    now = [1000.0]
    dashboard = Dashboard(database_url, clock=lambda: now[0])
    app = make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"), token=TOKEN,
                         database_url=database_url, extra_routes=dashboard.routes(),
                         extra_cleanup=[dashboard.cleanup])
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def generated(path: str = "/api/report") -> str:
        resp = await client.get(path, headers=auth)
        assert resp.status == 200
        return str((await resp.json())["generated_at"])

    import asyncio

    first = await asyncio.gather(*(generated() for _ in range(12)))
    assert len(set(first)) == 1
    pages = await asyncio.gather(*(client.get("/dashboard", headers=auth) for _ in range(5)))
    assert len({await page.text() for page in pages}) == 1
    now[0] += REFRESH_S - 1
    assert await generated() == first[0]
    assert await generated("/api/report?tag=support") != first[0]  # its own report
    now[0] += 2
    assert await generated() != first[0]


async def test_the_dashboard_names_a_retired_primary_and_what_ttft_covers(
    database_url: str, aiohttp_client: Any
) -> None:
    """The day and the end-of-life data are the dashboard's to be given (serve gives the
    real ones): here, three days after claude-sonnet-4-5 retired."""
    failed = Side(model="claude-sonnet-4-5", status=404, error="not_found_error: model")
    await store(database_url, [make_pair(received_at=datetime(2026, 12, 1, tzinfo=UTC),
                                         primary=failed)])
    data = LifecycleData({"claude-sonnet-4-5": ModelLifecycle(
        "claude-sonnet-4-5", "deprecated", date(2026, 11, 30), source="our table")})
    app = make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"), token=TOKEN,
                         database_url=database_url,
                         **_dashboard(database_url, lambda: data.as_of(date(2026, 12, 3))))
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    html = await (await client.get("/dashboard", headers=auth)).text()
    assert ("claude-sonnet-4-5 retired on 2026-11-30: its requests fail at the provider"
            in html)
    assert "Since 2026-11-30, 1 of its 1 pair (100.0%) had a primary error." in html
    assert "streamed requests only (n = 0)" in html
    body = await (await client.get("/api/report", headers=auth)).json()
    assert body["lifecycle"][0]["errors_since"] == 1
    assert body["overall"]["ttft_streamed_pairs"] == 0


def _dashboard(database_url: str,
               lifecycle: Callable[[], LifecycleView] | None = None,
               **options: Any) -> dict[str, Any]:
    dashboard = Dashboard(database_url, lifecycle=lifecycle, **options)
    return {"extra_routes": dashboard.routes(), "extra_cleanup": [dashboard.cleanup]}


async def test_the_dashboard_shows_the_calibrated_rate_and_people_s_notes_escaped(
    admin: TestClient[Any, Any], database_url: str
) -> None:
    from shadowproxy.simulator.reviewers import label_in_queue_order
    from tests.fakes.verdicts import START, mix

    await write(database_url, mix("support", worse=3, equivalent=27))
    evil = "<img src=x onerror=alert(1)>"
    await label_in_queue_order(database_url, 30, lambda pair, _: ("worse", f"No! {evil}"),
                               reviewers=("ana",), start=START)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    html = await (await admin.get("/dashboard", headers=auth)).text()
    assert "worse, calibrated by people (95% CI)" in html
    assert "people disagreed with the judge on 27 of 30 pairs" in html
    assert "Where people and the judge disagree" in html
    assert evil not in html and "No! &lt;img src=x onerror=alert(1)&gt;" in html
    body = await (await admin.get("/api/report", headers=auth)).json()
    assert body["by_tag"]["support"]["human"]["labelled_pairs"] == 30
