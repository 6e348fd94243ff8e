"""The lock files: every dependency pinned to one version with hashes, inside the ranges
pyproject.toml promises, and the installs (CI, the README, the image) reading them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)")


def pins(name: str) -> dict[str, tuple[Version, int]]:
    """package → (pinned version, number of hashes) as the lock file holds them."""
    found: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            found[current] = (Version(match[2]), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
        elif not line.startswith(" "):
            current = None
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = [*project["dependencies"]]
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    environment = default_environment()
    return [r for r in map(Requirement, listed)
            if r.marker is None or r.marker.evaluate(dict(environment))]


def test_every_dependency_is_pinned_with_hashes_inside_its_range() -> None:
    for lock, extras in (("dev.lock", ("dev",)), ("runtime.lock", ())):
        pinned = pins(lock)
        for requirement in requirements(*extras):
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{requirement.name} is not pinned in {lock}"
            version, hashes = pinned[name]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, outside pyproject's {requirement}")
            assert hashes >= 1, f"{lock} has no hash for {name}"
        assert all(hashes >= 1 for _, hashes in pinned.values()), f"{lock}: a pin lacks hashes"


def test_runtime_and_dev_locks_agree_on_every_shared_package() -> None:
    dev, runtime = pins("dev.lock"), pins("runtime.lock")
    assert set(runtime) <= set(dev)
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}


def test_the_build_backend_is_locked_and_installs_do_not_fetch_it() -> None:
    backend = Requirement(PYPROJECT["build-system"]["requires"][0])
    version, _ = pins("dev.lock")[canonicalize_name(backend.name)]
    assert backend.specifier.contains(version)


def test_ci_the_readme_and_the_image_install_from_the_locks() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    for text, lock in ((ci, "dev.lock"), (readme, "dev.lock"), (docker, "runtime.lock")):
        assert f"--require-hashes -r requirements/{lock}" in text
        assert "--no-deps --no-build-isolation" in text
    # The README's first two commands (demo, tests) both install from the lock.
    fences = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)[:2]
    assert len(fences) == 2
    assert all("requirements/dev.lock" in f and "-e '.[dev]'" not in f for f in fences)
    assert "demo" in fences[0] and "pytest" in fences[1]
    assert "pip install -q -e '.[dev]'" not in ci and "--upgrade pip" not in ci
