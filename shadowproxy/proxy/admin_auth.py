"""Who is asking the admin listener, and from where: pure decisions on a request's
peer address and headers (no I/O; the guard in :mod:`.admin_guard` does the lookups).

- **Principal.** The admin token opens everything; a reviewer token (``reviewer add``)
  opens the review page and ``/api/review/*`` only. Either is shown as a bearer header
  or, in a browser, once on the login page, which gives a session cookie.
- **Trusted proxies** (``ADMIN_TRUSTED_PROXIES``, empty by default): only a peer in
  those networks may tell us the client's address (``Forwarded: for=``,
  ``X-Forwarded-For``, ``X-Real-IP``), its scheme (``proto=https``,
  ``X-Forwarded-Proto``) and the host it asked for (``X-Forwarded-Host``). From anyone
  else these headers are ignored and the peer is the client.
- **Without a token** only a direct connection from 127.0.0.1 or ::1 is trusted: no
  forwarding header of any kind (a proxy or sidecar would make everyone behind it look
  local) and a loopback ``Host`` (so a web page whose name was re-bound to 127.0.0.1
  cannot read the dashboard through the user's browser).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "COOKIE",
    "FORWARDING_HEADERS",
    "IpNetwork",
    "Principal",
    "ProxyTrust",
    "forwarded_elements",
    "parse_networks",
    "safe_next",
    "same_origin",
    "token_matches",
    "trusted_without_token",
]

COOKIE = "shadowproxy_session"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Headers that reverse proxies, CDNs, load balancers and service-mesh sidecars add; any
# of them means the peer address is not the client's. (An ssh tunnel, socat or a bare
# proxy_pass adds none: such a client does look local. Set ADMIN_TOKEN.)
FORWARDING_HEADERS = (
    "forwarded", "via",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
    "x-forwarded-server", "x-forwarded-prefix", "x-forwarded-ssl", "x-forwarded-scheme",
    "x-original-forwarded-for", "x-original-host", "x-original-url",
    "x-real-ip", "x-client-ip", "x-cluster-client-ip", "client-ip",
    "true-client-ip", "cf-connecting-ip", "cf-connecting-ipv6", "cf-ray", "cf-visitor",
    "fastly-client-ip", "akamai-origin-hop", "x-azure-clientip", "x-azure-socketip",
    "x-appengine-user-ip", "x-envoy-external-address", "x-envoy-original-path",
    "x-amzn-trace-id",
)
# Exactly these peers, not all of 127/8: a mesh sidecar forwards outside traffic from
# 127.0.0.6, and anything else on 127/8 can be another tenant's listener.
TRUSTED_PEERS = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as. ``reviewer`` None: the admin (token, session or loopback)."""

    reviewer: str | None
    via: str  # "bearer" | "session" | "loopback"
    csrf_token: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.reviewer is None

    @property
    def labeller(self) -> str:
        """The name labels are stored under ("admin" for the admin)."""
        return self.reviewer or "admin"


def _address(value: str) -> IpAddress | None:
    """An address as forwarding headers write it: ``1.2.3.4``, ``1.2.3.4:5``,
    ``[::1]:5``, ``::1``; None for ``unknown``, obfuscated ids and garbage."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``ADMIN_TRUSTED_PROXIES`` entries (addresses or CIDR blocks); ValueError names
    the first bad one."""
    networks: list[IpNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value.strip()!r:.60} is not an IP address or network "
                             "(e.g. 10.0.0.5 or 10.0.0.0/8)") from None
    return tuple(networks)


def forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per hop, lower-case keys, quotes removed.
    Tolerates anything (a malformed pair is left out)."""
    elements: list[dict[str, str]] = []
    for element in value.split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            key, sep, raw = pair.partition("=")
            if sep and key.strip():
                pairs[key.strip().lower()] = raw.strip().strip('"')
        elements.append(pairs)
    return elements


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """The peers allowed to speak for the client (``ADMIN_TRUSTED_PROXIES``)."""

    networks: tuple[IpNetwork, ...] = field(default_factory=tuple)

    def trusts(self, peer: str | None) -> bool:
        address = _address(peer) if peer else None
        return address is not None and any(address in n for n in self.networks)

    def client(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The client's address: the peer's, unless a trusted proxy forwarded the
        request; then the nearest hop (from the right) that is not a trusted proxy."""
        if not self.trusts(peer):
            return _shown(peer)
        hops: list[str] = []
        if "forwarded" in headers:
            hops = [e.get("for", "") for e in forwarded_elements(headers["forwarded"])]
        elif "x-forwarded-for" in headers:
            hops = headers["x-forwarded-for"].split(",")
        elif "x-real-ip" in headers:
            hops = [headers["x-real-ip"]]
        for hop in reversed(hops):
            if not self.trusts(hop.strip().strip('"')):
                address = _address(hop)
                return str(address) if address is not None else (hop.strip()[:64] or "?")
        return _shown(hops[0] if hops else peer)

    def https(self, peer: str | None, headers: Mapping[str, str], *, tls: bool) -> bool:
        """The browser's connection is HTTPS: ours is TLS, or a trusted proxy says so."""
        if tls:
            return True
        if not self.trusts(peer):
            return False
        if "forwarded" in headers:
            first = forwarded_elements(headers["forwarded"])[0]
            return first.get("proto", "").lower() == "https"
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"

    def host(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The host (and port) the browser asked for."""
        if self.trusts(peer):
            forwarded = headers.get("x-forwarded-host", "").split(",")[0].strip()
            if forwarded:
                return forwarded
            if "forwarded" in headers:
                named = forwarded_elements(headers["forwarded"])[0].get("host")
                if named:
                    return named
        return headers.get("host", "")


def _shown(peer: str | None) -> str:
    address = _address(peer) if peer else None
    return str(address) if address is not None else (peer or "unknown")[:64]


def trusted_without_token(peer: str | None, header_names: set[str], host: str = "localhost"
                          ) -> bool:
    """A direct connection from 127.0.0.1 or ::1 (or 127.0.0.1 mapped into IPv6), with
    no forwarding header, that asked for a loopback host name."""
    if not peer or any(h in header_names for h in FORWARDING_HEADERS):
        return False
    address = _address(peer)
    if address not in TRUSTED_PEERS:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOOPBACK_HOSTS


def token_matches(given: bytes, token: str) -> bool:
    return hmac.compare_digest(given, token.encode())


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def same_origin(origin: str | None, fetch_site: str | None, host: str) -> bool:
    """Whether a state-changing request comes from our own pages: ``Sec-Fetch-Site``, when
    the browser sends it, says same-origin, and ``Origin``, when sent, names ``host`` (the
    scheme is not compared: behind a TLS-terminating proxy we may not know it). A request
    with neither is not from a browser's cross-site page (scripts)."""
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    if origin is None:
        return True
    if origin == "null":  # a page whose referrer policy hides even its origin
        return fetch_site == "same-origin"
    try:
        parts = urlsplit(origin)
        asked = urlsplit(f"//{host}")
        if parts.scheme not in ("http", "https") or not parts.hostname or not asked.hostname:
            return False
        default = _default_port(parts.scheme)
        return (parts.hostname.lower() == asked.hostname.lower()
                and (parts.port or default) == (asked.port or default))
    except ValueError:
        return False


def safe_next(value: str | None, default: str = "/dashboard") -> str:
    """Where to go after login: a path on this listener only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    return value
