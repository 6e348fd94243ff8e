"""The one way we start child processes: JSON payload in, JSON ready message out on a
dedicated pipe, and a child that does not start is reported and reaped, not left."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from shadowproxy.children import ChildFailed, start_child
from shadowproxy.proxy.mirror_child import Backoff

CHILD = "tests.fakes.child"


async def test_the_ready_message_is_json_on_its_own_pipe_and_later_messages_follow() -> None:
    child = await start_child("test", CHILD, {"behave": "ready", "echo": "x\ny"})
    try:
        assert child.ready == {"ready": True, "pid": child.pid, "echo": "x\ny"}
        after = [m async for m in child.messages()]
        assert after == [{"state": "after ready"}]
        assert await child.proc.wait() == 0
    finally:
        await child.stop(signal.SIGKILL, 5)


@pytest.mark.parametrize(("behave", "timeout"), [("exit", 30.0), ("silent", 1.0)])
async def test_a_child_that_does_not_start_is_reported_and_reaped(
    behave: str, timeout: float
) -> None:
    with pytest.raises(ChildFailed, match=r"the test process did not start \(exit -?\d+\)"):
        await start_child("test", CHILD, {"behave": behave, "echo": ""},
                          ready_timeout_s=timeout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
async def test_a_child_dies_with_its_parent() -> None:
    """The parent here is a middle process that starts the child and is then killed."""
    script = (
        "import asyncio, os, sys\n"
        "from shadowproxy.children import start_child\n"
        "async def main():\n"
        f"    c = await start_child('t', {CHILD!r}, {{'behave': 'orphan', 'echo': ''}})\n"
        "    print('grandchild', c.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    middle = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert middle.stdout is not None
    line = b""
    while not line.startswith(b"grandchild "):  # the child's own human line comes too
        line = await asyncio.wait_for(middle.stdout.readline(), 30)
    grandchild = int(line.split()[-1])
    middle.kill()
    await middle.wait()
    for _ in range(600):  # up to 30 s
        if not _alive(grandchild):
            break
        await asyncio.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_backoff_restarts_at_once_then_doubles_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=4.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
