"""Logging: text for people, JSON lines for machines; credentials never reach either.

Nothing of ours logs headers or bodies, but libraries do: aiohttp quotes the offending
header line in its "Error handling request" traceback, the SDKs log whole request
options at DEBUG. So one step, :class:`Redact`, sits on the root handler and sees every
record from every logger before any formatter does: it masks credential headers
(``Authorization``, ``Proxy-Authorization``, ``X-Api-Key``, ``Api-Key``,
``Ocp-Apim-Subscription-Key``, ``X-Goog-Api-Key``, ``Cookie``, ``Set-Cookie``),
credential-named keys (``"api_key": …``, ``token=…``) and anything shaped like a key
(the ``secrets`` redactor) in the message, its arguments, the traceback and the stack.

A malformed request (a stray CR in a header value, say) is not an error of ours: it
becomes one WARNING line without a traceback, at most one per
:data:`MALFORMED_EVERY_S` seconds, the next line saying how many were not logged, so
a client cannot flood the log.

This is independent of log levels (who sets them is a separate concern): the filter
runs on whatever records the levels let through.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time

from shadowproxy.noise import quiet_third_party
from shadowproxy.redact import Redactor
from shadowproxy.settings import Settings

CREDENTIAL_HEADERS = (
    "proxy-authorization", "authorization", "ocp-apim-subscription-key", "x-goog-api-key",
    "x-api-key", "api-key", "set-cookie", "cookie",
)
MALFORMED_EVERY_S = 10.0

_HEADER = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])(" + "|".join(map(re.escape, CREDENTIAL_HEADERS)) + r")"
    # The separator as a header line, a dict repr or a JSON document writes it.
    r"(\\?[\"']?\s*[:=]\s*(?:\\?[\"'])?)"
    # The value: up to the end of the line, quoted string or structure; a value that
    # ends in an escaped CR/LF (a repr of the raw line) ends there too.
    r"((?:[^\r\n\"'\\,}\]]|\\(?![rn\"']))+)"
)
# A quoted key whose name says it holds a credential, with a quoted value.
_KEYED = re.compile(
    r"(?i)([\"'][\w.-]*?(?:token|key|secret|passw(?:or)?d|pass|credential|bearer)[\"']"
    r"\s*:\s*[\"'])([^\"']+)"
)
_BARE_KEY = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,})")
_SECRETS = Redactor.from_names(["secrets"])
MASK = "[REDACTED]"


def scrub(text: str) -> str:
    """``text`` with every credential we can recognise masked."""
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _KEYED.sub(lambda m: f"{m[1]}{MASK}", text)
    text = _BARE_KEY.sub(MASK, text)
    return _SECRETS.text(text)


def _malformed(record: logging.LogRecord) -> BaseException | None:
    """The client's bad request behind an aiohttp "Error handling request" record."""
    if not record.name.startswith("aiohttp") or not record.exc_info:
        return None
    exc = record.exc_info[1]
    from aiohttp.http_exceptions import HttpProcessingError

    if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
        return exc
    return None


class Redact(logging.Filter):
    """The one redaction step; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._malformed_at = float("-inf")
        self._malformed_quiet = 0

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return self._redact(record)
        except Exception:  # a filter that raises would raise in the caller's code
            record.msg = f"unloggable record from {record.name} (redaction failed)"
            record.args, record.exc_info, record.exc_text, record.stack_info = (
                None, None, None, None)
            return True

    def _redact(self, record: logging.LogRecord) -> bool:
        exc = _malformed(record)
        if exc is not None:
            return self._one_line(record, exc)
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True

    def _one_line(self, record: logging.LogRecord, exc: BaseException) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._malformed_at < MALFORMED_EVERY_S:
                self._malformed_quiet += 1
                return False
            quiet, self._malformed_quiet, self._malformed_at = self._malformed_quiet, 0, now
        reason = str(getattr(exc, "message", "") or "").strip().splitlines()
        what = scrub(reason[0].rstrip(":"))[:120] if reason else type(exc).__name__
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed request from %s refused (%s: %s)%s"
        record.args = (peer, getattr(exc, "code", 400), what,
                       f"; {quiet} more in the last {MALFORMED_EVERY_S:g}s not logged"
                       if quiet else "")
        if record.levelno > logging.WARNING:  # not our error; a DEBUG stays DEBUG
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self._process,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        exchange = getattr(record, "exchange_id", None)
        if exchange:
            doc["exchange_id"] = exchange
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc)


def setup_logging(settings: Settings, *, process: str = "proxy") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redact())
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter(process))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {process}[%(process)d] %(name)s: %(message)s"
        ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    quiet_third_party(settings, filters=[Redact()])
