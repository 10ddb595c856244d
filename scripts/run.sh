#!/usr/bin/env bash
# The main job: set up, then run the demonstration on the bundled digits data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/modelguard-fast demo "$@"
