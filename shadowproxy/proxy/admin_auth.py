"""Who may use the admin listener's dashboard and API, and how a browser logs in.

With ``ADMIN_TOKEN`` a client shows it either as a bearer header (scripts, the admin API)
or, in a browser, once on a login page: the token is compared in constant time and
becomes a session cookie holding a random id that is only known server-side (never the
token), HttpOnly and SameSite=Strict, with an expiry. Failed attempts are limited per
peer. Without a token only a loopback peer is trusted, and only one that connects
directly: a request carrying forwarding headers came through a proxy or a sidecar, which
would make anyone behind it look local.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "shadowproxy_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 1000
# Failed logins: at most this many per peer in the window, then 429 until it slides.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
MAX_TRACKED_PEERS = 10_000

# Headers a reverse proxy or a service-mesh sidecar adds; their presence means the
# peer address is not the client's.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host",
                      "x-envoy-external-address", "via")
# Exactly these peers, not all of 127/8: a mesh sidecar forwards outside traffic from
# 127.0.0.6, and anything else on 127/8 can be another tenant's listener.
TRUSTED_PEERS = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})

LOGIN_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'")


def trusted_without_token(peer: str | None, header_names: set[str]) -> bool:
    """A direct connection from 127.0.0.1 or ::1 (or 127.0.0.1 mapped into IPv6)."""
    if not peer or any(h in header_names for h in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in TRUSTED_PEERS


def token_matches(given: bytes, token: str) -> bool:
    return hmac.compare_digest(given, token.encode())


@dataclass
class Sessions:
    """Server-side sessions: random id → expiry. Bounded; the oldest go first."""

    ttl_s: float = SESSION_TTL_S
    clock: Callable[[], float] = time.monotonic
    _expiry: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def create(self) -> str:
        self._expire()
        while len(self._expiry) >= MAX_SESSIONS:
            self._expiry.popitem(last=False)
        session = secrets.token_urlsafe(32)
        self._expiry[session] = self.clock() + self.ttl_s
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        expiry = self._expiry.get(session)
        if expiry is None:
            return False
        if expiry <= self.clock():
            del self._expiry[session]
            return False
        return True

    def end(self, session: str | None) -> None:
        if session:
            self._expiry.pop(session, None)

    def _expire(self) -> None:
        now = self.clock()
        for session in [s for s, e in self._expiry.items() if e <= now]:
            del self._expiry[session]


@dataclass
class FailedLogins:
    """Sliding window of failed attempts per peer address."""

    limit: int = MAX_FAILURES
    window_s: float = FAILURE_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def retry_after(self, peer: str) -> float:
        """Seconds until ``peer`` may try again; 0 when it may now."""
        times = self._failures.get(peer)
        if not times:
            return 0.0
        now = self.clock()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return max(1.0, times[0] + self.window_s - now)

    def failed(self, peer: str) -> None:
        times = self._failures.pop(peer, None) or deque()
        times.append(self.clock())
        while len(times) > self.limit:
            times.popleft()
        self._failures[peer] = times
        while len(self._failures) > MAX_TRACKED_PEERS:
            self._failures.popitem(last=False)

    def succeeded(self, peer: str) -> None:
        self._failures.pop(peer, None)


def safe_next(value: str | None) -> str:
    """Where to go after login: a path on this listener only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/dashboard"
    if any(ord(c) < 0x20 for c in value):
        return "/dashboard"
    return value


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
<h1>shadowproxy dashboard</h1>
<p>Enter the admin token (<code>SHADOWPROXY_ADMIN_TOKEN</code>) to open the live report.</p>
{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required
 autofocus>
<button type="submit">Sign in</button>
</form>
</main></body></html>
"""
