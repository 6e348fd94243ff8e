"""``--since`` and ``?since=``: an ISO date/time, or an age such as ``30m``, ``24h``, ``7d``.
Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """The cut-off as an aware datetime; ``ValueError`` with a readable message if bad."""
    if value is None or not value.strip():
        return None
    if match := _AGE.fullmatch(value.strip()):
        try:
            return (now or datetime.now(UTC)) - timedelta(
                seconds=float(match[1]) * _UNITS[match[2]])
        except OverflowError:  # 99999999d: before year 1
            raise ValueError(f"{value!r} reaches back before year 1") from None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO date/time nor an age like 24h or 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
