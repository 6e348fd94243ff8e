"""The real clock and the installed lifecycle data, for the edge only (the CLI's
``report`` and ``demo``, and ``serve``'s mirror and dashboard); everything below them
takes a day and a :class:`~shadowproxy.lifecycle.LifecycleData` as arguments, so tests
choose both.

The SDK's data is read from the installed package's file, never imported: the proxy
process (the dashboard) must not load the SDK.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from shadowproxy.lifecycle import (
    SDK_SOURCE,
    LifecycleData,
    LifecycleView,
    ModelLifecycle,
    parse_sdk_source,
    parse_table,
)

__all__ = ["builtin_table", "current_lifecycle", "installed_data", "installed_sdk_path",
           "installed_sdk_table", "utc_today"]

TABLE_FILE = "model_lifecycle.toml"


def utc_today() -> date:
    """The real clock's day, in UTC (Anthropic's dates are UTC days)."""
    return datetime.now(UTC).date()


def installed_sdk_path() -> Path | None:
    """The installed anthropic SDK's ``_data/deprecated_models.py``; None without an SDK."""
    spec = importlib.util.find_spec("anthropic")  # locates the package, runs none of it
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "_data" / "deprecated_models.py"


_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def _sdk_version(data_file: Path) -> str | None:
    """The SDK's version from its ``_version.py``, read as text (importlib.metadata
    would cost serve's start more than the rest of this module)."""
    try:
        found = _VERSION.search((data_file.parent.parent / "_version.py").read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return found.group(1) if found else None


@functools.cache
def installed_sdk_table() -> Mapping[str, str]:
    """The installed SDK's ``DEPRECATED_MODELS``; empty when the SDK is missing or ships
    no such data (then our table and the Models API decide)."""
    path = installed_sdk_path()
    if path is None:
        return {}
    try:
        return parse_sdk_source(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}


@functools.cache
def builtin_table() -> Mapping[str, ModelLifecycle]:
    """Our table of known deprecations and retirements (``model_lifecycle.toml``)."""
    import tomllib

    text = (Path(__file__).parent / TABLE_FILE).read_text("utf-8")
    return parse_table(tomllib.loads(text), TABLE_FILE)


@functools.cache
def installed_data() -> LifecycleData:
    path = installed_sdk_path()
    version = _sdk_version(path) if path is not None else None
    source = f"anthropic SDK {version}" if version else SDK_SOURCE
    return LifecycleData(builtin_table(), installed_sdk_table(), source)


def current_lifecycle() -> LifecycleView:
    """The installed data judged today: what a report made now says."""
    return installed_data().as_of(utc_today())
