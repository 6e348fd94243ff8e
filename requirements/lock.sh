#!/usr/bin/env bash
# Re-make the lock files from pyproject.toml's ranges. Existing pins are kept; pass
# --upgrade (or --upgrade-package NAME) to move them. Upgrading is a deliberate commit:
# run this, run the tests, commit the changed *.lock with a message that says why.
#
# pip-tools writes plain requirements files with hashes, so installing needs nothing but
# pip (`pip install --require-hashes -r requirements/dev.lock`), in CI, the README's
# commands and the Dockerfile alike. The locks are resolved for Linux on CPython 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q 'pip-tools==7.7.0'
common=(--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
        --no-emit-find-links --quiet "$@")
# dev first (everything the tests need), then the runtime subset constrained to it, so
# a package has the same version in both.
"$tools/bin/pip-compile" "${common[@]}" --extra dev -o requirements/dev.lock \
    pyproject.toml requirements/build.in
"$tools/bin/pip-compile" "${common[@]}" -c requirements/dev.lock -o requirements/runtime.lock \
    pyproject.toml requirements/build.in
