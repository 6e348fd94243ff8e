"""``python -m shadowproxy.mirror``: the mirror process a proxy worker starts
(:mod:`shadowproxy.proxy.mirror_child`). Two things happen here, before the imports of
:mod:`.process` (the SDK alone is seconds of CPU on a small machine):

- the priority drops below the proxy's: on a busy machine the kernel gives the user's
  path the CPU first, a worker's own start-up included; shadows queue and, past
  ``SHADOW_QUEUE``, are dropped and counted;
- SIGINT and SIGTERM are ignored: the parent's close frame decides when the mirror
  stops, and a Ctrl-C reaches the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal

MIRROR_NICENESS = 10


def enter() -> None:
    with contextlib.suppress(OSError):
        os.nice(MIRROR_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from shadowproxy.mirror.process import main

    main()


if __name__ == "__main__":
    enter()
