"""A child process for :func:`shadowproxy.children.start_child` tests: it does what its
payload's ``behave`` says, through the real child-side :class:`StatusPipe`."""

from __future__ import annotations

import os
import sys
import time

from shadowproxy.children import StatusPipe


def main() -> None:
    status = StatusPipe.from_stdin()
    behave = status.payload["behave"]
    if behave == "exit":
        sys.exit(3)
    if behave == "silent":
        time.sleep(60)
    status.send(state="before ready")  # superseded by the ready message
    print("a line for humans, not a handshake", flush=True)
    status.ready(pid=os.getpid(), echo=status.payload["echo"])
    status.send(state="after ready")
    if behave == "orphan":
        time.sleep(60)  # must die with its parent, not sleep on


if __name__ == "__main__":
    main()
