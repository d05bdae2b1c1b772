#!/usr/bin/env bash
# README command (a): install what is missing, build, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh default
exec build/tools/usmc demo "$@"
