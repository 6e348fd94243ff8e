"""Debian's chromium driven by Playwright (its own browser download is not used).

``.ci/run`` installs the ``chromium`` package; on a machine without it the browser tests
skip, except in CI (``CI`` set), where a missing browser is a failure. With
``SHADOWPROXY_TEST_SCREENSHOTS=DIR`` the tests save what a person would see there, to be
looked at (they assert nothing about pixels).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SHADOWPROXY_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs Debian's package")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    """A headless browser; yields Playwright's ``Browser``."""
    from playwright.async_api import async_playwright

    executable = require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> None:
    """The whole page as ``DIR/name.png`` when ``SHADOWPROXY_TEST_SCREENSHOTS`` names a
    directory; nothing otherwise."""
    folder = os.environ.get("SHADOWPROXY_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
