#!/usr/bin/env bash
# The README's start command: Vigil with the embedded defaults (Temporal dev server, embedded
# store, in-process counters, local event file, a demo origin and sample rulesets).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
source scripts/deps.sh
[ -n "${TEMPORAL_ADDRESS:-}" ] || bash scripts/temporal.sh install
exec node --experimental-strip-types --no-warnings=ExperimentalWarning cli/main.ts start "$@"
