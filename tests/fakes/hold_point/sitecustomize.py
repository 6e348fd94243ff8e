"""Hold a real ``serve`` at a known point of its start, from outside its code.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; a test puts this
directory there (:meth:`tests.fakes.holds.Holds.env`) and every process of the serve
tree (serve, its workers, their mirrors) loads it. It holds, while the file
``HOLD_DIR/hold-<point>`` exists, at:

- ``listen``: the audit event ``shadowproxy.listen`` (PEP 578) that a listener raises
  just before its port accepts, for the port in ``HOLD_LISTEN_PORT``;
- ``mirror``: the start of a mirror process (``python -m shadowproxy.mirror…``).

On arriving it writes ``HOLD_DIR/held-<point>-<pid>`` so the test knows where the
process is. Nothing of our code is replaced: the process runs as it would, and waits.
"""

from __future__ import annotations

import os
import sys
import time

_DIR = os.environ.get("HOLD_DIR")


def _hold(point: str) -> None:
    if _DIR is None:
        return
    gate = os.path.join(_DIR, f"hold-{point}")
    if not os.path.exists(gate):
        return
    with open(os.path.join(_DIR, f"held-{point}-{os.getpid()}"), "w"):
        pass
    while os.path.exists(gate):
        time.sleep(0.02)


def _on_audit(event: str, args: tuple[object, ...]) -> None:
    if event != "shadowproxy.listen":
        return
    address = args[0]
    if isinstance(address, tuple) and str(address[1]) == os.environ.get("HOLD_LISTEN_PORT"):
        _hold("listen")


if _DIR is not None:
    sys.addaudithook(_on_audit)
    if any(arg.startswith("shadowproxy.mirror") for arg in sys.orig_argv):
        _hold("mirror")
