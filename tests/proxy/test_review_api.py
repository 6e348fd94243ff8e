"""The review API as a reviewer's script or the review page uses it: blind items from the
product's sample, one label per item, progress per tag."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowproxy.decision.review_frame import rank_of
from shadowproxy.records import Side
from shadowproxy.store.review_queue import QueueRules
from tests.fakes.database import make_pair
from tests.fakes.review import ADMIN_TOKEN, Rig, fetch, judged, reviewer
from tests.fakes.verdicts import Judged, pair, write


@pytest.fixture
def rig(database_url: str) -> Rig:
    return Rig(database_url)


async def client_for(rig: Rig, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(TestServer(rig.app()))
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def label(client: TestClient[Any, Any], token: str, item: str, choice: str,
                note: str | None = None) -> Any:
    return await client.post(f"/api/review/{item}", json={"choice": choice, "note": note},
                             headers=bearer(token))


async def test_a_reviewer_token_opens_the_review_api_and_page_only(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, "support", worse=1, equivalent=2)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    assert (await client.get("/api/review/next?tag=support")).status == 401
    for path in ("/api/review/next?tag=support", "/api/review/progress", "/review"):
        assert (await client.get(path, headers=bearer(token))).status == 200, path
        assert (await client.get(path, headers=bearer(ADMIN_TOKEN))).status == 200, path
    for path in ("/api/report", "/dashboard", "/"):
        resp = await client.get(path, headers=bearer(token))
        assert resp.status == 403, path
        assert "review page" in await resp.text()
        assert (await client.get(path, headers=bearer(ADMIN_TOKEN))).status == 200, path


async def test_next_is_blind_and_whole(rig: Rig, aiohttp_client: Any) -> None:
    long_answer = "Step.\n" * 20_000  # 120,000 characters: never cut
    record = make_pair(tag="support", shadow=Side(
        model="claude-haiku-4-5", status=200, text=long_answer, stop_reason="end_turn",
        tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "1234"}}]))
    await write(rig.database_url, [(record, Judged("worse", reason="JUDGE-REASON-SECRET"))])
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    resp = await client.get("/api/review/next?tag=support", headers=bearer(token))
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    raw = await resp.text()
    body = json.loads(raw)
    assert set(body) == {"item", "tag", "conversation", "turns", "answers"}
    assert body["tag"] == "support"
    for secret in ("gpt-4o", "claude", "haiku", "JUDGE-REASON-SECRET", "worse",
                   str(record.id), "primary", "shadow", "chatcmpl", "req_011"):
        assert secret not in raw.lower(), secret
    texts = {a["text"] for a in body["answers"]}
    assert long_answer in texts
    (stored,) = await fetch(rig.database_url,
                            "SELECT shadow_first FROM review_items WHERE id = $1", body["item"])
    shadow = body["answers"][0 if stored["shadow_first"] else 1]
    assert shadow["text"] == long_answer
    assert shadow["tool_calls"] == [{"name": "lookup_order", "arguments": {"order_id": "1234"}}]
    assert "[system]\nYou are a helpful support agent." in body["conversation"]
    assert [t["role"] for t in body["turns"]] == ["system", "user"]


async def test_labels_are_stored_from_the_shadows_side_once(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, "support", equivalent=3)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    seen = []
    for choice in ("1", "2", "tie"):
        body = await (await client.get("/api/review/next?tag=support",
                                       headers=bearer(token))).json()
        resp = await label(client, token, body["item"], choice, note="because")
        assert resp.status == 201
        assert (await label(client, token, body["item"], "2")).status == 409
        seen.append(body["item"])
    assert (await label(client, token, "no-such-item", "1")).status == 404
    rows = await fetch(rig.database_url,
                       "SELECT i.id, r.choice, r.verdict, r.shadow_first, r.note, r.reviewer "
                       "FROM reviews r JOIN review_items i USING (pair_id, reviewer)")
    by_item = {r["id"]: r for r in rows}
    assert set(by_item) == set(seen)
    for row in rows:
        expected = {"tie": "equivalent",
                    "1": "better" if row["shadow_first"] else "worse",
                    "2": "worse" if row["shadow_first"] else "better"}[row["choice"]]
        assert row["verdict"] == expected
        assert row["note"] == "because" and row["reviewer"] == "alice"
    assert (await client.get("/api/review/next?tag=support",
                             headers=bearer(token))).status == 204


async def test_the_queue_offers_the_frame_in_rank_order(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, "support", worse=3, better=3, equivalent=6)
    await judged(rig.database_url, "support", equivalent=5, first=100, method="exact")
    await judged(rig.database_url, "billing", equivalent=4, first=200)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    offered = []
    while (resp := await client.get("/api/review/next?tag=support",
                                    headers=bearer(token))).status == 200:
        item = (await resp.json())["item"]
        offered.append(item)
        assert (await label(client, token, item, "tie")).status == 201
    assert resp.status == 204
    ranks = await fetch(rig.database_url,
                        f"SELECT i.id, {rank_of('p')} AS rank FROM review_items i "
                        "JOIN pairs p ON p.id = i.pair_id")
    rank = {r["id"]: r["rank"] for r in ranks}
    assert len(offered) == 12  # the judged pairs only: exact equalities are no opinion
    assert [rank[i] for i in offered] == sorted(rank[i] for i in offered)


async def test_a_skip_goes_to_the_next_reviewer_never_back_to_the_skipper(
    rig: Rig, aiohttp_client: Any
) -> None:
    rig.rules = QueueRules(overlap=0.0, frame_cache_s=0)
    await judged(rig.database_url, "support", equivalent=2)
    alice = await reviewer(rig.database_url, "alice")
    bob = await reviewer(rig.database_url, "bob")
    client = await client_for(rig, aiohttp_client)
    first = await (await client.get("/api/review/next?tag=support", headers=bearer(alice))).json()
    assert (await label(client, alice, first["item"], "skip")).status == 201
    second = await (await client.get("/api/review/next?tag=support",
                                     headers=bearer(alice))).json()
    assert second["answers"] != first["answers"] or second["item"] != first["item"]
    assert (await label(client, alice, second["item"], "1")).status == 201
    assert (await client.get("/api/review/next?tag=support",
                             headers=bearer(alice))).status == 204
    # Bob gets the pair Alice skipped (it has no label), and not the one she labelled.
    for_bob = await (await client.get("/api/review/next?tag=support", headers=bearer(bob))).json()
    assert sorted(a["text"] for a in for_bob["answers"]) == sorted(
        a["text"] for a in first["answers"])
    assert (await label(client, bob, for_bob["item"], "tie")).status == 201
    assert (await client.get("/api/review/next?tag=support", headers=bearer(bob))).status == 204
    progress = await (await client.get("/api/review/progress", headers=bearer(bob))).json()
    (support,) = progress["tags"]
    assert (support["frame"], support["labels"], support["labelled_pairs"],
            support["skips"], support["mine"]) == (2, 2, 2, 1, 1)


async def test_an_item_someone_holds_goes_to_others_once_its_lease_ends(
    rig: Rig, aiohttp_client: Any
) -> None:
    rig.rules = QueueRules(overlap=0.0, frame_cache_s=0)
    await judged(rig.database_url, "support", equivalent=1)
    alice = await reviewer(rig.database_url, "alice")
    bob = await reviewer(rig.database_url, "bob")
    client = await client_for(rig, aiohttp_client)
    held = await client.get("/api/review/next?tag=support", headers=bearer(alice))
    assert held.status == 200  # and Alice closes the tab
    assert (await client.get("/api/review/next?tag=support", headers=bearer(bob))).status == 204
    rig.clock.advance(minutes=31)
    assert (await client.get("/api/review/next?tag=support", headers=bearer(bob))).status == 200


@pytest.mark.parametrize(("overlap", "second_looks"), [(0.0, 0), (1.0, 6)])
async def test_overlap_offers_items_to_a_second_reviewer(
    rig: Rig, aiohttp_client: Any, overlap: float, second_looks: int
) -> None:
    rig.rules = QueueRules(overlap=overlap, frame_cache_s=0)
    await judged(rig.database_url, "support", equivalent=6)
    alice = await reviewer(rig.database_url, "alice")
    bob = await reviewer(rig.database_url, "bob")
    client = await client_for(rig, aiohttp_client)
    for token in (alice, bob):
        while (resp := await client.get("/api/review/next?tag=support",
                                        headers=bearer(token))).status == 200:
            assert (await label(client, token, (await resp.json())["item"], "tie")).status == 201
    counts = await fetch(rig.database_url,
                         "SELECT reviewer, count(*) AS n FROM reviews GROUP BY reviewer")
    by = {r["reviewer"]: r["n"] for r in counts}
    assert by.get("alice") == 6 and by.get("bob", 0) == second_looks


async def test_overlap_is_a_reproducible_share_spread_over_the_rank_order(
    database_url: str
) -> None:
    """REVIEW_OVERLAP=0.1: the pairs whose overlap key is under a tenth of its range, about
    a tenth of any stretch of the queue, the same in every run (keys come from ids)."""
    from shadowproxy.decision.review_frame import OVERLAP_KEY, RANK, overlap_threshold

    rows = await fetch(
        database_url,
        f"SELECT {RANK} AS rank, ({OVERLAP_KEY} < $1) AS twice FROM (SELECT "
        "md5('pair-' || g)::uuid AS id FROM generate_series(1, 4000) AS g) AS p "
        "ORDER BY rank", overlap_threshold(0.1))
    twice = [r["twice"] for r in rows]
    assert 320 <= sum(twice) <= 480
    first, last = sum(twice[:1000]), sum(twice[-1000:])
    assert 60 <= first <= 140 and 60 <= last <= 140  # not bunched at the queue's start


def rank_in_python(pair_id: uuid.UUID) -> int:
    """decision/review_frame.RANK, computed here: 60 bits of the MD5 of the id's text."""
    return int(hashlib.md5(str(pair_id).encode()).hexdigest()[:15], 16)


async def test_a_pair_that_arrives_later_takes_its_place_by_rank(
    rig: Rig, aiohttp_client: Any
) -> None:
    """The queue skips what it has offered (a floor per tag) yet a pair judged later,
    ranked below that floor, is the next one offered: the sample stays the lowest ranks."""
    rows = await judged(rig.database_url, "support", equivalent=40)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    for _ in range(5):
        item = (await (await client.get("/api/review/next?tag=support",
                                        headers=bearer(token))).json())["item"]
        assert (await label(client, token, item, "tie")).status == 201
    (labelled,) = await fetch(
        rig.database_url, f"SELECT max({rank_of('p')}) AS top FROM reviews r "
        "JOIN pairs p ON p.id = r.pair_id")
    # A pair judged now whose rank falls among those already labelled, and one above.
    low = next(i for i in iter(uuid.uuid4, None) if rank_in_python(i) < labelled["top"])
    high = next(i for i in iter(uuid.uuid4, None) if rank_in_python(i) > labelled["top"])
    late = [(replace(pair("support", 500 + n), id=pair_id), Judged("worse"))
            for n, pair_id in enumerate((low, high))]
    await write(rig.database_url, late)
    body = await (await client.get("/api/review/next?tag=support", headers=bearer(token))).json()
    (offered,) = await fetch(rig.database_url,
                             "SELECT pair_id FROM review_items WHERE id = $1", body["item"])
    assert offered["pair_id"] == low
    assert len(rows) == 40


async def test_untagged_pairs_are_a_stratum_of_their_own(
    rig: Rig, aiohttp_client: Any
) -> None:
    await judged(rig.database_url, None, equivalent=2)
    await judged(rig.database_url, "support", equivalent=1, first=10)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    body = await (await client.get("/api/review/next", headers=bearer(token))).json()
    assert body["tag"] is None
    progress = await (await client.get("/api/review/progress", headers=bearer(token))).json()
    assert [(t["tag"], t["frame"]) for t in progress["tags"]] == [("support", 1), (None, 2)]
    assert all(t["labels_needed"] == t["frame"] for t in progress["tags"])  # small frames
    assert (await client.get("/api/review/next?tag=%00", headers=bearer(token))).status == 400


async def test_progress_asks_fewer_labels_of_people_who_agree_with_the_judge(
    rig: Rig, aiohttp_client: Any
) -> None:
    """The bar's target is the calibration's: labels that agree with the judge make its
    verdicts worth more, so far fewer are needed than labels that contradict it."""
    from shadowproxy.decision.calibration import Stratum, labels_needed
    from shadowproxy.simulator.reviewers import label_in_queue_order
    from tests.fakes.verdicts import START

    rig.rules = QueueRules(overlap=0.0, frame_cache_s=0)
    await judged(rig.database_url, "agree", worse=600, equivalent=2400)
    await judged(rig.database_url, "disagree", worse=600, equivalent=2400, first=10_000)
    verdicts = {row["id"]: row["verdict"] for row in await fetch(
        rig.database_url, "SELECT pair_id AS id, verdict FROM scores")}

    def person(pair: Any, _: str) -> tuple[str, None]:
        judge = verdicts[pair.id]
        if pair.tag == "agree":
            return judge, None
        return ("equivalent" if judge == "worse" else "worse"), None

    await label_in_queue_order(rig.database_url, 80, person, reviewers=("ana",),
                               overlap=0.0, start=START)
    token = await reviewer(rig.database_url, "alice")
    client = await client_for(rig, aiohttp_client)
    progress = await (await client.get("/api/review/progress", headers=bearer(token))).json()
    needed = {t["tag"]: t["labels_needed"] for t in progress["tags"]}
    before = labels_needed([Stratum({}, {"worse": 600, "equivalent": 2400}, {})])
    assert needed["agree"] < needed["disagree"] <= before  # before: a coin's worst case
    assert {t["tag"]: t["labelled_pairs"] for t in progress["tags"]} == {
        "agree": 80, "disagree": 80}
