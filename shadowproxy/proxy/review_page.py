"""``/review``: the page people label pairs on (behind a reviewer's or the admin's login).

The HTML is a shell; ``/review/app.js`` (served from this package, the only script the
strict CSP allows) fetches the queue and builds every element with ``textContent``, so
no model-written string is ever parsed as HTML. The session's CSRF token rides in a
``<meta>`` for the script's POSTs and in the sign-out form.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files

from aiohttp import web

from shadowproxy.proxy.admin_guard import PRINCIPAL

__all__ = ["REVIEW_CSP", "ReviewPage"]

REVIEW_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
              "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_ASSETS = {"app.js": "application/javascript", "app.css": "text/css"}


@cache
def _asset(name: str) -> str:
    return files("shadowproxy.proxy").joinpath("static", f"review.{name.split('.')[1]}"
                                               ).read_text(encoding="utf-8")


def review_html(*, reviewer: str, csrf: str | None) -> str:
    token = html.escape(csrf or "")
    sign_out = (
        '<form method="post" action="/logout" class="signout">'
        f'<input type="hidden" name="csrf" value="{token}">'
        '<button type="submit">Sign out</button></form>') if csrf else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{token}">
<title>Review pairs — shadowproxy</title>
<link rel="stylesheet" href="/review/app.css">
<script src="/review/app.js" defer></script>
</head>
<body>
<header class="bar">
  <h1>Which answer is better?</h1>
  <span class="who">Signed in as <b>{html.escape(reviewer)}</b></span>
  {sign_out}
</header>
<div class="layout">
<nav class="tags" aria-label="Use cases">
  <h2>Use case</h2>
  <ul id="tags"><li class="muted">Loading…</li></ul>
  <p class="help">Labelled pairs against the labels needed. Pairs come in a fixed random
  order: you pick the use case, never the pair.</p>
</nav>
<main>
  <section id="item" hidden>
    <h2 class="section">Conversation</h2>
    <div id="conversation" class="conversation"></div>
    <h2 class="section">The assistant's next turn: which would serve the user better?</h2>
    <p class="hint">Correct, complete, follows the system prompt, calls the right tools with
    the right arguments. Length and style matter only when the conversation asks for them.</p>
    <div class="answers">
      <article class="answer"><h3>Answer 1</h3><div id="answer1"></div></article>
      <article class="answer"><h3>Answer 2</h3><div id="answer2"></div></article>
    </div>
  </section>
  <section id="done" class="done" hidden></section>
</main>
</div>
<footer id="choose" class="choose" hidden>
  <div class="buttons">
    <button type="button" data-choice="1"><kbd>1</kbd> Answer 1 is better</button>
    <button type="button" data-choice="tie"><kbd>t</kbd> Equally good</button>
    <button type="button" data-choice="2"><kbd>2</kbd> Answer 2 is better</button>
    <p id="status" class="status" role="status" aria-live="polite"></p>
    <button type="button" data-choice="skip" class="skip"><kbd>s</kbd> Skip</button>
  </div>
  <label class="note">Note (optional): <textarea id="note" rows="1" maxlength="10000"
    placeholder="What made the difference? Esc to leave the note, then 1, 2, t or s"></textarea>
  </label>
  <p id="error" class="error" role="alert" hidden></p>
</footer>
</body></html>
"""


class ReviewPage:
    def routes(self) -> list[web.RouteDef]:
        return [web.get("/review", self.page), web.get("/review/{asset}", self.asset)]

    async def page(self, request: web.Request) -> web.Response:
        principal = request[PRINCIPAL]
        return web.Response(
            text=review_html(reviewer=principal.labeller, csrf=principal.csrf_token),
            content_type="text/html", headers={"Content-Security-Policy": REVIEW_CSP})

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        if name not in _ASSETS:
            raise web.HTTPNotFound()
        return web.Response(text=_asset(name), content_type=_ASSETS[name])
