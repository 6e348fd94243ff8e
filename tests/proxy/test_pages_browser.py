"""The dashboard and the report file in a real browser (Debian's chromium), as a release
manager meets them: signed in with the admin token, the verdict, people's labels and the
cutover plan on screen, nothing wider than the window, no script error, no CSP
violation; signing out locks the dashboard again. (The review page and its sign-in have
their own test: test_review_browser.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from shadowproxy.decision.gate import evaluate
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_html import render_html
from shadowproxy.simulator.demo import CALIBRATED_POLICY
from shadowproxy.simulator.reviewers import label_in_queue_order
from tests.cutover.test_report_section import seed
from tests.fakes.browser import chromium, screenshot
from tests.fakes.review import ADMIN_TOKEN, Rig
from tests.fakes.verdicts import START, mix, write

WIDTH = 1280


async def _world(database_url: str) -> None:
    """support: a cutover plan rolled back by its guard; billing: judged pairs, 30 of
    them labelled by someone who finds the shadow worse more often than the judge."""
    await seed(database_url)
    await write(database_url, mix("billing", worse=3, equivalent=37, first=100))
    await label_in_queue_order(
        database_url, 30, lambda pair, _: ("worse", "Wrong <b>date</b>")
        if hash(pair.id) % 4 == 0 else ("equivalent", None), reviewers=("ana",),
        start=START)


def _watch(page: Any, problems: list[str]) -> None:
    # A 401 is the sign-in form's status (and chromium logs it); anything else is not.
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and "status of 401" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))


async def _overflow(page: Any) -> int:
    """How far the page runs past the window's right edge (0: it fits)."""
    return int(await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"))


async def test_the_dashboard_behind_its_sign_in(database_url: str) -> None:
    await _world(database_url)
    server = TestServer(Rig(database_url).app(), host="127.0.0.1")
    await server.start_server()
    problems: list[str] = []
    try:
        async with chromium() as browser:
            page: Any = await browser.new_page(  # type: ignore[attr-defined]
                viewport={"width": WIDTH, "height": 900})
            _watch(page, problems)
            base = str(server.make_url("/"))[:-1]
            await page.goto(f"{base}/dashboard")  # not signed in: the sign-in form
            await page.fill("#token", "not-the-token")
            await page.click("button[type=submit]")
            await page.locator("[role=alert]").filter(
                has_text="neither the admin token nor a reviewer's").wait_for()
            await screenshot(page, "login-wrong-token")
            await page.fill("#token", ADMIN_TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/dashboard")
            body = page.locator("body")
            await body.filter(has_text="Verdicts by scope").wait_for()
            text = await body.inner_text()
            assert "Cutover in steps" in text and "Tag: support" in text
            assert "worse, calibrated by people" in text
            assert "Where people and the judge disagree" in text
            # Model-written and person-written text shows as text, never as markup.
            assert "Wrong <b>date</b>" in text
            assert "<script>x</script>" in text
            assert await _overflow(page) == 0
            await screenshot(page, "dashboard")
            await page.click("text=Sign out")
            await page.wait_for_url(f"{base}/login")
            await page.goto(f"{base}/dashboard")
            assert await page.locator("#token").count() == 1  # locked again
    finally:
        await server.close()
    assert problems == []


async def test_the_report_file_reads_offline(database_url: str, tmp_path: Path) -> None:
    await _world(database_url)
    report = await build_report(database_url)
    out = tmp_path / "report.html"
    out.write_text(render_html(report, evaluate(report, CALIBRATED_POLICY)), encoding="utf-8")
    problems: list[str] = []
    async with chromium() as browser:
        page: Any = await browser.new_page(  # type: ignore[attr-defined]
            viewport={"width": WIDTH, "height": 900})
        _watch(page, problems)
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        await page.goto(out.as_uri())
        text = await page.locator("body").inner_text()
        # The verdict heads the page, then what it stands on.
        assert text.index("against the gate policy") < text.index("Verdicts by scope")
        assert "Tag: billing" in text and "calibrated by people" in text
        assert "Cutover in steps" in text
        assert await _overflow(page) == 0
        await screenshot(page, "report")
        # Every chart is drawn inline: nothing is fetched, so the file works anywhere.
        assert await page.locator("svg").count() >= 2
    assert problems == [] and failed == []
