"""The report and the dashboard show each tag's plan, its events, and per step the pairs
served and their verdicts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from shadowproxy.cutover import plans_db
from shadowproxy.cutover.plan import move_after_gate
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_html import render_html
from shadowproxy.proxy.admin import make_admin_app
from shadowproxy.proxy.dashboard import Dashboard
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes import verdicts

T0 = verdicts.START  # 2026-05-04 09:00 UTC; pair i arrives i minutes later
TOKEN = "admin-secret-token"


async def seed(url: str) -> None:
    """support: 5% from 08:00, 50% from 09:10, guard back to 0% at 09:20."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        _, plan = await plans_db.start(conn, "support", (5, 50), "rm@laptop")
        await plans_db.set_paused(conn, "support", True, "rm@laptop")
        await plans_db.set_paused(conn, "support", False, "rm@laptop")
        current = await plans_db.read_plan(conn, "support")
        assert current is not None
        await plans_db.apply_move(conn, current, move_after_gate(current, 0), actor="ci",
                                  reason="passed")
        await plans_db.guard_rollback(conn, "support", plan.started_at,
                                      "guard: <script>x</script>", "guard@w1")
        for action, minutes in (("start", -60), ("pause", -50), ("resume", -40),
                                ("advance", 10), ("guard", 20)):
            await conn.execute("UPDATE cutover_events SET at = $1 WHERE action = $2",
                               T0 + timedelta(minutes=minutes), action)
    finally:
        await conn.close()
    rows: list[Any] = []
    served = ["shadow", "primary", "fallback"]
    for i, (record, judged) in enumerate(verdicts.mix("support", worse=4, equivalent=21)):
        rows.append((dataclasses.replace(record, served_by=served[i % 3]), judged))
    await verdicts.write(url, rows)  # pairs at 09:00 … 09:24


async def test_the_report_counts_pairs_per_step(database_url: str) -> None:
    await seed(database_url)
    report = await build_report(database_url)
    tag = report.cutover.tags["support"]

    assert (tag.steps, tag.percent, tag.paused) == ((5, 50), 0, False)
    assert [e.action for e in tag.events] == ["guard", "advance", "resume", "pause", "start"]
    steps = [(s.percent, s.began_by, s.pairs) for s in tag.by_step]
    assert steps == [(5, "start", 10), (50, "advance", 10), (0, "guard", 5)]
    first = tag.by_step[0]
    assert dict(first.served) == {"shadow": 4, "primary": 3, "fallback": 3}
    assert sum(first.verdicts.values()) + first.no_verdict == 10
    assert first.verdicts["worse"] == 4 and first.worse_rate == 0.4
    assert tag.by_step[-1].ended is None

    as_json = report.to_json()["cutover"]["support"]
    assert as_json["by_step"][1]["served_by"] == {"shadow": 3, "primary": 4, "fallback": 3}
    assert as_json["step"] == 2 and as_json["events"][0]["actor"] == "guard@w1"


async def test_a_tag_filter_and_since_narrow_the_section(database_url: str) -> None:
    await seed(database_url)
    assert (await build_report(database_url, tag="billing")).cutover.tags == {}
    later = await build_report(database_url, since=T0 + timedelta(minutes=15))
    assert [s.percent for s in later.cutover.tags["support"].by_step] == [50, 0]


async def test_no_plan_no_section(database_url: str) -> None:
    report = await build_report(database_url)
    assert report.cutover.tags == {} and report.to_json()["cutover"] == {}
    assert "Cutover in steps" not in render_html(report)


async def test_the_dashboard_shows_the_plan_with_every_text_escaped(
    database_url: str, aiohttp_client: Any,
) -> None:
    await seed(database_url)
    dashboard = Dashboard(database_url)
    app = make_admin_app(ready=_ready, metrics=lambda: (b"", "text/plain"), token=TOKEN,
                         database_url=database_url, extra_routes=dashboard.routes(),
                         extra_cleanup=[dashboard.cleanup])
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(app))
    html = await (await client.get("/dashboard",
                                   headers={"Authorization": f"Bearer {TOKEN}"})).text()
    assert "Cutover in steps" in html and "Tag: support" in html
    assert "<script>x</script>" not in html and "guard: &lt;script&gt;x&lt;/script&gt;" in html
    assert "4 / 3 / 3" in html  # served by shadow / primary / fallback in the first step


async def _ready() -> dict[str, Any]:
    return {"ready": True}
