"""Where every process of one ``serve`` writes its metrics, set up before any of them
imports prometheus_client (which picks its storage at import, so this module must not
import it, nor :mod:`shadowproxy.metrics`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["prepare_metrics_dir"]


def prepare_metrics_dir(data_dir: Path) -> None:
    """Must run before prometheus_client is imported: it picks its storage at import."""
    path = data_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
