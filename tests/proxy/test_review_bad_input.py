"""What reviewers and their browsers get wrong, each with one clear answer and nothing lost."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowproxy.store.retention import delete_expired
from shadowproxy.store.review_queue import QueueRules
from shadowproxy.store.reviewers import remove_reviewer
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair
from tests.fakes.review import Rig, fetch, judged, reviewer
from tests.fakes.verdicts import Judged, write


@pytest.fixture
def rig(database_url: str) -> Rig:
    return Rig(database_url)


async def client_for(rig: Rig, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(rig.app()))
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def next_item(client: TestClient[Any, Any], token: str, tag: str = "support") -> Any:
    resp = await client.get(f"/api/review/next?tag={tag}", headers=bearer(token))
    assert resp.status == 200
    return await resp.json()


async def browser_session(client: TestClient[Any, Any], token: str) -> tuple[str, str]:
    """Sign in as a browser does; the session cookie and the page's CSRF token."""
    resp = await client.post("/login", data={"token": token, "next": "/review"},
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/review"
    cookie = resp.cookies["shadowproxy_session"].value
    page = await (await client.get("/review", headers={"Cookie": f"shadowproxy_session={cookie}"}
                                   )).text()
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match is not None
    return cookie, match[1]


async def test_a_removed_reviewer_is_out_at_the_next_request_and_their_labels_stay(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, "support", equivalent=2)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    cookie, csrf = await browser_session(client, token)
    browser = {"Cookie": f"shadowproxy_session={cookie}", "X-CSRF-Token": csrf}
    item = (await (await client.get("/api/review/next?tag=support", headers=browser)).json())
    assert (await client.post(f"/api/review/{item['item']}", json={"choice": "1"},
                              headers=browser)).status == 201
    # `shadowproxy reviewer remove alice`, from another process: the same database.
    conn = await asyncpg.connect(asyncpg_dsn(rig.database_url))
    try:
        await remove_reviewer(conn, "alice")
    finally:
        await conn.close()
    resp = await client.get("/api/review/next?tag=support", headers=bearer(token))
    assert resp.status == 401
    assert "neither the admin token nor a reviewer's" in await resp.text()
    assert (await client.get("/api/review/next?tag=support", headers=browser)).status == 401
    page = await client.get("/review", headers=browser, allow_redirects=False)
    assert page.status == 401 and "Sign in" in await page.text()  # the login page
    assert len(await fetch(rig.database_url, "SELECT * FROM reviews WHERE reviewer = 'alice'")
               ) == 1


async def test_an_expired_session_sends_the_browser_to_sign_in_again(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, "support", equivalent=1)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    cookie, csrf = await browser_session(client, token)
    browser = {"Cookie": f"shadowproxy_session={cookie}", "X-CSRF-Token": csrf}
    item = await (await client.get("/api/review/next?tag=support", headers=browser)).json()
    rig.clock.advance(hours=12, seconds=1)
    resp = await client.post(f"/api/review/{item['item']}", json={"choice": "1"}, headers=browser)
    assert resp.status == 401
    # Signed in again, the same item is still there to label: nothing was lost.
    cookie, csrf = await browser_session(client, token)
    browser = {"Cookie": f"shadowproxy_session={cookie}", "X-CSRF-Token": csrf}
    again = await (await client.get("/api/review/next?tag=support", headers=browser)).json()
    assert again["item"] == item["item"]
    assert (await client.post(f"/api/review/{item['item']}", json={"choice": "1"},
                              headers=browser)).status == 201


async def test_a_label_for_a_pair_retention_deleted_is_a_404_that_says_so(
    rig: Rig, aiohttp_client: Any
) -> None:
    rows = await judged(rig.database_url, "support", equivalent=2)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    item = await next_item(client, token)
    # The fake pairs are from 2026-05; retention of 1 day deletes them all.
    assert await delete_expired(rig.database_url, 1) == len(rows)
    resp = await client.post(f"/api/review/{item['item']}", json={"choice": "1"},
                             headers=bearer(token))
    assert resp.status == 404
    assert "deleted (retention)" in (await resp.json())["error"]
    assert (await client.get("/api/review/next?tag=support",
                             headers=bearer(token))).status == 204


async def test_two_tabs_labelling_the_same_item_store_one_label(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, "support", equivalent=2)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    tab1, tab2 = await next_item(client, token), await next_item(client, token)
    assert tab1["item"] == tab2["item"]  # a reload or a second tab shows the open item
    first = await client.post(f"/api/review/{tab1['item']}", json={"choice": "1"},
                              headers=bearer(token))
    second = await client.post(f"/api/review/{tab2['item']}", json={"choice": "2"},
                               headers=bearer(token))
    assert (first.status, second.status) == (201, 409)
    assert "another tab" in (await second.json())["error"]
    (stored,) = await fetch(rig.database_url, "SELECT choice FROM reviews")
    assert stored["choice"] == "1"
    assert (await next_item(client, token))["item"] != tab1["item"]


@pytest.mark.parametrize(("note", "status", "says"), [
    ("x" * (1 << 20), 413, "at most 10,000 characters"),
    ("y" * 10_001, 413, "at most 10,000 characters"),
    ("fine\x00but a NUL", 400, "U+0000"),
    ("escape \x1b[31mred", 400, "U+001B"),
    ("lone \ud800 surrogate", 400, "U+D800"),
])
async def test_a_bad_note_is_refused_with_the_reason_and_the_item_stays_open(
    rig: Rig, aiohttp_client: Any, note: str, status: int, says: str
) -> None:
    await judged(rig.database_url, "support", equivalent=1)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    item = await next_item(client, token)
    body = json.dumps({"choice": "1", "note": note})  # lone surrogates as \ud800 escapes
    resp = await client.post(f"/api/review/{item['item']}", data=body,
                             headers={**bearer(token), "Content-Type": "application/json"})
    assert resp.status == status
    assert says in (await resp.json())["error"]
    assert await fetch(rig.database_url, "SELECT * FROM reviews") == []
    assert (await next_item(client, token))["item"] == item["item"]
    fixed = await client.post(f"/api/review/{item['item']}",
                              json={"choice": "1", "note": "line one\r\nline two\ttab"},
                              headers=bearer(token))
    assert fixed.status == 201
    (stored,) = await fetch(rig.database_url, "SELECT note FROM reviews")
    assert stored["note"] == "line one\nline two\ttab"


async def test_five_hundred_labels_in_a_minute_are_slowed_down_and_none_is_lost(
    rig: Rig, aiohttp_client: Any
) -> None:
    rig.rules = QueueRules(overlap=0.0, labels_per_minute=60, frame_cache_s=0)
    await judged(rig.database_url, "support", equivalent=500)
    token = await reviewer(rig.database_url, "bot")
    client = await client_for(rig, aiohttp_client)
    stored = limited = 0
    while (resp := await client.get("/api/review/next?tag=support",
                                    headers=bearer(token))).status == 200:
        item = (await resp.json())["item"]
        answer = await client.post(f"/api/review/{item}", json={"choice": "tie"},
                                   headers=bearer(token))
        if answer.status == 429:
            limited += 1
            wait = int(answer.headers["Retry-After"])
            assert 1 <= wait <= 60 and "send it again" in (await answer.json())["error"]
            rig.clock.advance(seconds=wait)  # the page waits, then sends it again
            continue
        assert answer.status == 201
        stored += 1
        rig.clock.advance(seconds=0.01)  # 500 labels in five seconds of the reviewer's time
    assert resp.status == 204
    assert stored == 500 and limited >= 8
    (count,) = await fetch(rig.database_url,
                           "SELECT count(*) AS labels, count(DISTINCT pair_id) AS pairs, "
                           "max(created_at) - min(created_at) AS span FROM reviews")
    assert (count["labels"], count["pairs"]) == (500, 500)
    assert count["span"] >= timedelta(minutes=8)  # at most 60 a minute


async def test_images_in_a_request_are_a_placeholder_never_the_bytes(
    rig: Rig, aiohttp_client: Any
) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40).decode()
    request = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Describe images."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image_url", "image_url": {"url": "https://cdn.example/cat.jpg?sig=SECRET"}},
        ]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "zoom", "arguments": '{"factor": 2}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [
            {"type": "text", "text": "zoomed"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": png}}]},
    ]}
    await write(rig.database_url, [(make_pair(tag="support", request=request), Judged("worse"))])
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    resp = await client.get("/api/review/next?tag=support", headers=bearer(token))
    raw = await resp.text()
    assert png[:40] not in raw and "base64" not in raw and "SECRET" not in raw
    body = await resp.json()
    assert "[image image/png, 10,248 bytes]" in body["conversation"]
    assert "[image by reference, not stored]" in body["conversation"]
    assert "(tool call zoom)" in body["conversation"]
    kinds = [[p["kind"] for p in t["parts"]] for t in body["turns"]]
    assert kinds == [["text"], ["text", "placeholder", "placeholder"], ["text", "tool_call"],
                     ["tool_result"]]
    assert "[image image/jpeg, 10,248 bytes]" in body["turns"][3]["parts"][0]["text"]
