#!/usr/bin/env bash
# The main job: set up, then run the paper's table on the bundled digits data
# (`modelguard-fast run`; extra arguments go to it, e.g. --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/modelguard-fast run "$@"
