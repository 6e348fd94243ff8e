"""Signing a browser in and out of the admin listener.

``/login`` takes the admin token or a reviewer's token once and gives a session cookie:
a random id (never the token) stored hashed in ``admin_sessions``, HttpOnly,
SameSite=Strict, ``Secure`` when the browser's connection is HTTPS (ours, or a trusted
proxy's ``X-Forwarded-Proto``/``Forwarded: proto=https``) or ``ADMIN_COOKIE_SECURE=always``.
The failed-attempt limit is checked before the token is compared, and the form is
refused from another origin. ``/logout`` ends the session on the server; it needs the
session's CSRF token, so another site cannot sign a user out.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from shadowproxy.proxy.admin_auth import COOKIE, safe_next, token_matches
from shadowproxy.store.pool import DATABASE_ERRORS

if TYPE_CHECKING:
    from shadowproxy.proxy.admin_guard import AdminGuard

__all__ = ["LOGIN_CSP", "Login", "database_unavailable", "login_page", "login_response"]

log = logging.getLogger("shadowproxy.proxy.admin")

LOGIN_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'")


def login_response(next_path: str, *, status: int, message: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=login_page(next_path=safe_next(next_path), message=message), status=status,
        content_type="text/html",
        headers={"Content-Security-Policy": LOGIN_CSP, "Cache-Control": "no-store",
                 **(headers or {})},
    )


def database_unavailable(exc: BaseException) -> web.HTTPServiceUnavailable:
    """503 while the database cannot answer: nobody can be signed in or looked up."""
    log.warning("admin listener: database unavailable: %s: %s", type(exc).__name__, exc)
    return web.HTTPServiceUnavailable(
        text="the database is unavailable, so no one can be signed in; try again shortly\n",
        headers={"Retry-After": "5"})


def _landing(next_path: str, reviewer: str | None) -> str:
    """Where a signed-in browser goes: a reviewer only ever to the review page."""
    if reviewer is None:
        return safe_next(next_path)
    target = safe_next(next_path, "/review")
    return target if target == "/review" or target.startswith("/review?") else "/review"


class Login:
    """``GET``/``POST /login`` and ``POST /logout``."""

    def __init__(self, guard: AdminGuard) -> None:
        self.guard = guard

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/login", self.form), web.post("/login", self.login),
                web.post("/logout", self.logout)]

    async def form(self, request: web.Request) -> web.Response:
        return login_response(request.query.get("next") or "/dashboard", status=200)

    async def login(self, request: web.Request) -> web.StreamResponse:
        guard = self.guard
        if not guard.from_our_origin(request):
            raise web.HTTPForbidden(text="cross-origin sign-in refused\n")
        form = await request.post()
        next_path = str(form.get("next") or "/dashboard")
        given = form.get("token")
        try:
            limited = await guard.blocked(request, next_path)
            if limited is not None:
                return limited
            principal = await guard.by_token(given) if isinstance(given, str) and given \
                else None
            if principal is None:
                await guard.failed(request)
                return login_response(next_path, status=401, message=(
                    "That token is neither the admin token nor a reviewer's."))
            session_id, _ = await guard.sessions.create(
                await guard.pool.get(), principal.reviewer, guard.access.clock())
        except DATABASE_ERRORS as exc:
            raise database_unavailable(exc) from None
        response = web.HTTPSeeOther(_landing(next_path, principal.reviewer))
        secure = guard.access.cookie_secure == "always" or guard.access.trust.https(
            request.remote, request.headers, tls=request.secure)
        response.set_cookie(COOKIE, session_id, max_age=int(guard.sessions.ttl.total_seconds()),
                            path="/", httponly=True, samesite="Strict", secure=secure)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        guard = self.guard
        cookie = request.cookies.get(COOKIE)
        try:
            pool = await guard.pool.get() if cookie else None
            session = (await guard.sessions.find(pool, cookie, guard.access.clock())
                       if pool is not None else None)
            if session is not None and pool is not None:
                form = await request.post()
                sent = request.headers.get("X-CSRF-Token") or form.get("csrf")
                if not guard.from_our_origin(request) or not isinstance(sent, str) or \
                        not token_matches(sent.encode("utf-8", "surrogateescape"),
                                          session.csrf_token):
                    raise web.HTTPForbidden(text="sign-out refused: missing or wrong CSRF "
                                                 "token (use the page's Sign out button)\n")
                await guard.sessions.end(pool, cookie)
        except DATABASE_ERRORS as exc:
            raise database_unavailable(exc) from None
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def login_page(*, next_path: str, message: str | None = None) -> str:
    """A small self-contained page: no script, no external resource, everything escaped."""
    note = (f'<p class="error" role="alert">{html.escape(message)}</p>' if message else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shadowproxy — sign in</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;background:#f6f7f9;color:#1b1f24;margin:0}}
main{{max-width:24rem;margin:12vh auto;background:#fff;border:1px solid #d8dde3;
border-radius:8px;padding:1.5rem 1.75rem}}
h1{{font-size:1.25rem;margin:0 0 .25rem}} p{{margin:.25rem 0 1rem;color:#4a5560}}
label{{display:block;font-weight:600;margin-bottom:.25rem}}
input{{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:1px solid #aab4be;
border-radius:4px}}
button{{margin-top:1rem;padding:.5rem 1rem;font:inherit;border:0;border-radius:4px;
background:#2753c5;color:#fff;cursor:pointer}}
.error{{color:#a1151c;background:#fdecec;border-radius:4px;padding:.5rem}}
</style></head>
<body><main>
<h1>shadowproxy</h1>
<p>Sign in with the admin token (<code>SHADOWPROXY_ADMIN_TOKEN</code>) for the dashboard,
or with your reviewer token to label pairs.</p>
{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required
 autofocus>
<button type="submit">Sign in</button>
</form>
</main></body></html>
"""
