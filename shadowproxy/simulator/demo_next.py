"""The demo's last words: how to open its report, query its database and export its
pairs after it has ended (its embedded database is stopped by then; the commands below
start it for themselves)."""

from __future__ import annotations

import shlex
from pathlib import Path


def next_steps(data_dir: Path, report: Path) -> str:
    """Commands that work as printed, from any directory, after the demo exits."""
    env = f"SHADOWPROXY_DATA_DIR={shlex.quote(str(data_dir.resolve()))}"
    query = "SELECT tag, count(*), avg(agree::int) FROM comparisons GROUP BY tag"
    return "\n".join([
        "demo: next",
        f"  open the report:  {report.resolve().as_uri()}",
        f"  query the pairs:  {env} shadowproxy psql -- -c {shlex.quote(query)}",
        f"  export the pairs: {env} shadowproxy export --format parquet "
        "--out demo-pairs.parquet",
        "  try serve live without keys: shadowproxy simulate --help",
    ])
