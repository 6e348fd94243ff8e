"""The layering is a checked contract, and the package docstrings name real modules."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import shadowproxy

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_tree_keeps_every_import_contract() -> None:
    result = _lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("proxy/handler.py", "import sqlalchemy", "The proxy process imports neither"),
    ("wire/sse.py", "import aiohttp", "Pure modules do no I/O"),
    ("decision/gate.py", "import shadowproxy.mirror.engine", "The decision never imports"),
])
def test_a_broken_contract_fails(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """The same check CI runs, on a copy of the package with one forbidden import."""
    copy = tmp_path / "shadowproxy"
    shutil.copytree(Path(shadowproxy.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = _lint_imports(tmp_path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert contract in result.stdout.split("Broken contracts", 1)[1]


def _packages() -> list[str]:
    base = Path(shadowproxy.__file__).parent
    return ["shadowproxy"] + [
        "shadowproxy." + ".".join(p.parent.relative_to(base).parts)
        for p in sorted(base.rglob("__init__.py")) if p.parent != base
    ]


@pytest.mark.parametrize("package", _packages())
def test_package_docstrings_name_modules_that_exist(package: str) -> None:
    module = importlib.import_module(package)
    doc = module.__doc__ or ""
    assert doc.strip(), f"{package} has no docstring saying what runs where"
    for name in re.findall(r":mod:`\.([\w.]+)`", doc):
        importlib.import_module(f"{package}.{name}")
