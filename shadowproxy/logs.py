"""Logging: text for people, JSON lines for machines; credentials never reach either.

Nothing logs headers or bodies; :class:`_Scrub` is the second line of defence and masks
anything shaped like a credential in a message before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from shadowproxy.noise import quiet_third_party
from shadowproxy.settings import Settings

_CREDENTIAL = re.compile(
    r"(?i)(authorization|x-api-key|api-key|cookie)([\"']?\s*[:=]\s*[\"']?)"
    r"([^\s\"',;]+(?: [^\s\"',;]+)?)"
    r"|\b(sk-[A-Za-z0-9_-]{8,})"
)


def scrub(text: str) -> str:
    return _CREDENTIAL.sub(
        lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]" if m.group(1) else "[REDACTED]", text
    )


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
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
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc)


def setup_logging(settings: Settings, *, process: str = "proxy") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Scrub())
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
    quiet_third_party(settings, filters=[_Scrub()])
