"""The review API on the admin listener (a reviewer's or the admin's credentials):

- ``GET /api/review/next?tag=T`` (no ``tag``: the untagged pairs) → 200
  ``{"item", "tag", "conversation", "turns", "answers": [A1, A2]}``, each answer
  ``{"text", "tool_calls"}`` whole; 204 when the tag has nothing left for this reviewer.
  ``turns`` is the conversation's structure for the page (roles, text, tool calls and
  results, placeholders for images); ``conversation`` the same as text. Nothing says
  which answer is whose, and no verdict or reason of the judge is sent.
- ``POST /api/review/{item}`` ``{"choice": "1" | "2" | "tie" | "skip", "note"}`` → 201;
  409 when the item has its label, 404 when it is unknown (or its pair was deleted),
  429 with ``Retry-After`` past the labels-per-minute limit (the item stays open), 413
  for a note over the limit, 400 for anything else malformed.
- ``GET /api/review/progress`` → ``{"tags": [{"tag", "frame", "labels",
  "labelled_pairs", "skips", "mine", "labels_needed", "still_needed"}]}``.

Errors are JSON ``{"error": "…"}``, one sentence a reviewer can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from shadowproxy.proxy.admin_guard import PRINCIPAL
from shadowproxy.review_conversation import answer, conversation_text, conversation_turns
from shadowproxy.review_labels import NOTE_MAX_CHARS, LabelError, parse_label
from shadowproxy.store.pool import DATABASE_ERRORS, LazyPool
from shadowproxy.store.review_queue import (
    AlreadyLabelled,
    RateLimited,
    ReviewQueue,
    UnknownItem,
)

__all__ = ["MAX_LABEL_BYTES", "ReviewApi"]

# A label is a choice and a note of at most NOTE_MAX_CHARS characters (6 bytes each as
# JSON escapes at worst): anything larger is refused before it is read.
MAX_LABEL_BYTES = 128 * 1024
_ITEM = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _tag(request: web.Request) -> str | None:
    tag = request.query.get("tag")
    if tag is not None and ("\x00" in tag or len(tag) > 1000):
        raise web.HTTPBadRequest(text=json.dumps({"error": "tag: no NUL, at most 1000 "
                                                  "characters"}),
                                 content_type="application/json")
    return tag


async def _body(request: web.Request) -> Any:
    """The label's JSON; :class:`LabelError` when it is too large or not JSON."""
    too_large = LabelError(f"the label is larger than {MAX_LABEL_BYTES // 1024} KiB: a note "
                           f"holds at most {NOTE_MAX_CHARS:,} characters", too_large=True)
    if request.content_length is not None and request.content_length > MAX_LABEL_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_LABEL_BYTES:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise LabelError('the body must be JSON: {"choice": "1", "note": "…"}') from None


class ReviewApi:
    def __init__(self, pool: LazyPool, queue: ReviewQueue, clock: Callable[[], datetime]
                 ) -> None:
        self.pool = pool
        self.queue = queue
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/review/next", self.next),
                web.get("/api/review/progress", self.progress),
                web.post("/api/review/{item}", self.label)]

    async def next(self, request: web.Request) -> web.StreamResponse:
        principal = request[PRINCIPAL]
        tag = _tag(request)
        try:
            offered = await self.queue.next_item(await self.pool.get(), principal.labeller,
                                                 tag, self.clock())
        except DATABASE_ERRORS as exc:
            raise _unavailable(exc) from None
        if offered is None:
            return web.Response(status=204)
        turns = conversation_turns(offered.request)
        first, second = ((offered.shadow, offered.primary) if offered.shadow_first
                         else (offered.primary, offered.shadow))
        return web.json_response({
            "item": offered.item,
            "tag": offered.tag,
            "conversation": conversation_text(turns),
            "turns": [t.to_json() for t in turns],
            "answers": [answer(*first), answer(*second)],
        })

    async def label(self, request: web.Request) -> web.Response:
        principal = request[PRINCIPAL]
        item = request.match_info["item"]
        if not _ITEM.fullmatch(item):
            return _error(404, "no such item")
        try:
            label = parse_label(await _body(request))
        except LabelError as exc:
            return _error(413 if exc.too_large else 400, str(exc))
        try:
            await self.queue.label(await self.pool.get(), principal.labeller, item, label,
                                   self.clock())
        except UnknownItem:
            return _error(404, "no such item: it was not offered to you, or its pair has "
                               "since been deleted (retention); ask for the next one")
        except AlreadyLabelled:
            return _error(409, "this item already has your label (another tab?); ask for "
                               "the next one")
        except RateLimited as exc:
            wait = str(int(exc.retry_after_s + 0.999))
            return _error(429, f"too many labels in a minute; this one is not stored yet: "
                               f"send it again in {wait} s", headers={"Retry-After": wait})
        except DATABASE_ERRORS as exc:
            raise _unavailable(exc) from None
        return web.json_response({"item": item, "choice": label.choice}, status=201)

    async def progress(self, request: web.Request) -> web.Response:
        principal = request[PRINCIPAL]
        try:
            tags = await self.queue.progress(await self.pool.get(), principal.labeller)
        except DATABASE_ERRORS as exc:
            raise _unavailable(exc) from None
        return web.json_response({"reviewer": principal.labeller,
                                  "tags": [t.to_json() for t in tags]})


def _unavailable(exc: BaseException) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text=json.dumps({"error": f"the database is unavailable ({type(exc).__name__}); "
                                  "nothing was lost: try again shortly"}),
        content_type="application/json", headers={"Retry-After": "5"})
