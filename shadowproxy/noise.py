"""Quiet start-up: third-party set-up chatter goes to a file, not the terminal.

``serve`` used to print 68 lines before the one that matters: Alembic's plugin set-up,
pgserver's whole initdb and pg_ctl output (at INFO), then one ``HTTP Request: POST …``
line per shadow call from the SDK's HTTP client. Those records now go to
``DATA_DIR/logs/setup.log`` (for when the embedded database will not start) and reach the
terminal only with ``LOG_LEVEL=DEBUG``; the per-call HTTP lines are off below DEBUG.
Warnings and errors from all of them still reach the terminal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shadowproxy.settings import Settings

# Set-up chatter worth keeping somewhere: into the log file.
TO_FILE = ("alembic", "pgserver")
# One line per HTTP call (the SDKs' clients): off unless debugging.
PER_CALL = ("httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "openai")

SETUP_LOG = Path("logs") / "setup.log"


def quiet_third_party(settings: Settings, *, filters: list[logging.Filter] | None = None
                      ) -> Path | None:
    """Route the noisy loggers; returns the set-up log's path (None if it cannot be
    opened, in which case their INFO lines are simply dropped)."""
    debug = settings.log_level == "DEBUG"
    for name in PER_CALL:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    path = settings.data_dir / SETUP_LOG
    handler: logging.Handler | None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        handler = None
    if handler is not None:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        for item in filters or []:
            handler.addFilter(item)
    terminal = logging.getLogger().handlers
    for name in TO_FILE:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
        logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _ToTerminal)]
        if handler is not None:
            logger.handlers = [h for h in logger.handlers
                               if not isinstance(h, logging.FileHandler)] + [handler]
        # Not propagated to the terminal unless debugging; warnings still are, below.
        logger.propagate = debug
        if not debug:
            for term in terminal:
                logger.addHandler(_ToTerminal(term))
    return path if handler is not None else None


class _ToTerminal(logging.Handler):
    """Warnings and errors of a non-propagating logger, to the terminal handler."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(logging.WARNING)
        self._target = target

    def emit(self, record: logging.LogRecord) -> None:
        self._target.handle(record)
