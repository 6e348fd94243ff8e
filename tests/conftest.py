"""Suite-wide set-up: the shared fixtures, and a temporary directory of this run's own."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.fakes.providers", "tests.fakes.database"]

_OWN_BASETEMP = "_shadowproxy_own_basetemp"


def pytest_configure(config: pytest.Config) -> None:
    """pytest's default base directory, /tmp/pytest-of-USER/pytest-N, keeps only the last
    three runs: a second run on the same machine deletes a running suite's embedded
    PostgreSQL from under it (seen as initdb "Permission denied"). A directory of our own
    per run cannot be taken away; ``--basetemp`` still wins."""
    if config.option.basetemp is None:
        path = tempfile.mkdtemp(prefix="shadowproxy-tests-")
        config.option.basetemp = path
        setattr(config, _OWN_BASETEMP, path)


def pytest_unconfigure(config: pytest.Config) -> None:
    path = getattr(config, _OWN_BASETEMP, None)
    session_failed = getattr(config, "_shadowproxy_failed", False)
    if path is not None and not session_failed:
        shutil.rmtree(Path(path), ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Keep the directory of a failed run for a look at the database's log.
    session.config._shadowproxy_failed = exitstatus != 0  # type: ignore[attr-defined]
