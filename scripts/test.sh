#!/usr/bin/env bash
# The test suite: set up, then run pytest (the default run leaves out `slow` tests
# and benchmarks; see pyproject.toml). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The pytest script (not `python -m pytest`) keeps the source folder, which has
# no compiled module, off sys.path: tests import the installed package.
.venv/bin/pytest "$@"
