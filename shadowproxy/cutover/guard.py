"""The fallback guard: per tag, the share of the last N requests chosen for the shadow
model that fell back (or broke after their first byte). Pure and O(1) per request.

Each worker keeps its own windows: the guard acts on what this worker saw, and its
rollback is written to the shared plan, so one worker's trip rolls the tag back for
every worker and replica.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["FallbackGuard", "Trip"]


@dataclass(frozen=True, slots=True)
class Trip:
    tag: str
    failures: int
    window: int
    max_rate: float

    @property
    def rate(self) -> float:
        return self.failures / self.window

    def reason(self) -> str:
        return (f"guard: {self.failures} of the last {self.window} requests chosen for the "
                f"shadow fell back ({self.rate:.1%} > CUTOVER_MAX_FALLBACK_RATE "
                f"{self.max_rate:.1%})")


class _Window:
    __slots__ = ("failures", "outcomes")

    def __init__(self, size: int) -> None:
        self.outcomes: deque[bool] = deque(maxlen=size)
        self.failures = 0


class FallbackGuard:
    """Counts outcomes per tag; :meth:`record` says when a full window is over the rate."""

    def __init__(self, window: int, max_rate: float) -> None:
        if window < 1:
            raise ValueError("the guard window holds at least one request")
        self.window = window
        self.max_rate = max_rate
        self._windows: dict[str, _Window] = {}

    def record(self, tag: str, fell_back: bool) -> Trip | None:
        """One request chosen for the shadow; a :class:`Trip` when the tag must roll back
        (only once its window is full). The window starts again after a trip."""
        win = self._windows.get(tag)
        if win is None:
            win = self._windows[tag] = _Window(self.window)
        if len(win.outcomes) == self.window and win.outcomes[0]:
            win.failures -= 1
        win.outcomes.append(fell_back)
        win.failures += fell_back
        if len(win.outcomes) < self.window or win.failures / self.window <= self.max_rate:
            return None
        trip = Trip(tag, win.failures, self.window, self.max_rate)
        self.reset(tag)
        return trip

    def reset(self, tag: str) -> None:
        """Forget a tag's outcomes (after a trip, or when a new plan starts)."""
        self._windows.pop(tag, None)

    def failures(self, tag: str) -> tuple[int, int]:
        """(failures, requests) in the tag's window so far."""
        win = self._windows.get(tag)
        return (win.failures, len(win.outcomes)) if win else (0, 0)
