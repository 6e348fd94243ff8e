"""The review page in a real browser (Debian's chromium): sign in, label three pairs with
the keyboard, and watch the progress bar move; no script error, no CSP violation."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer

from tests.fakes.browser import chromium, screenshot
from tests.fakes.review import Rig, fetch, judged, reviewer


async def test_label_three_pairs_with_the_keyboard(database_url: str) -> None:
    rig = Rig(database_url)
    await judged(database_url, "support", worse=2, equivalent=4)
    await judged(database_url, "billing", equivalent=2, first=100)
    token = await reviewer(database_url, "alice")
    server = TestServer(rig.app(), host="127.0.0.1")
    await server.start_server()
    problems: list[str] = []
    try:
        async with chromium() as browser:
            page: Any = await browser.new_page()  # type: ignore[attr-defined]
            base = str(server.make_url("/"))[:-1]
            await page.goto(f"{base}/review?tag=support")  # 401: the sign-in page
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.fill("#token", token)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/review?tag=support")
            current = page.locator(".tag.current .tag-counts")
            await current.filter(has_text="0 of 6 labels").wait_for()
            ready = page.locator("#choose button[data-choice='tie']:enabled")
            await ready.wait_for()
            await screenshot(page, "review")
            for key, done in (("1", 1), ("t", 2), ("2", 3)):
                # Keys are ignored while a pair loads: nobody labels what they have not seen.
                await ready.wait_for()
                await page.keyboard.press(key)
                await current.filter(has_text=f"{done} of 6 labels").wait_for()
                await page.locator("#status").filter(has_text="Saved").wait_for()
            assert await page.locator(".tag.current .meter").get_attribute("aria-valuenow") == "3"
            await screenshot(page, "review-after-three")
            # The note field takes text without labelling; Esc hands the keys back.
            await ready.wait_for()
            await page.click("#note")
            await page.keyboard.type("t2s1")
            await page.keyboard.press("Escape")
            await page.keyboard.press("s")
            await current.filter(has_text="1 skipped").wait_for()
    finally:
        await server.close()
    rows = await fetch(database_url, "SELECT choice, note FROM reviews WHERE reviewer = 'alice' "
                                     "ORDER BY choice")  # the test's clock stands still
    assert [(r["choice"], r["note"]) for r in rows] == [
        ("1", None), ("2", None), ("skip", "t2s1"), ("tie", None)]
    assert problems == []
