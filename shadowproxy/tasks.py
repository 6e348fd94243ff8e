"""Named background tasks that are never garbage-collected mid-flight.

A bare ``asyncio.create_task`` keeps only a weak reference, so a task nobody holds can
vanish; every background job goes through :func:`spawn`, which names the task and keeps
it in a set until it finishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Stop a background task: cancel, await, swallow its cancellation."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a process's main coroutine on uvloop (asyncio's own loop where it is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; Windows lacks it
        return asyncio.run(coro)
    return uvloop.run(coro)
