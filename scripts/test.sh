#!/usr/bin/env bash
# The README's test command (and what .ci/run calls): bootstrap Node 24, install the npm
# dependencies and the real services (Temporal dev server, Kafka, Redis, PostgreSQL), then
# `npm run check` = typecheck + lint + format check + every test. The test harness starts the
# services on free loopback ports and stops them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
phase_t0=$(date +%s)
phase() { local now; now=$(date +%s); echo "=== [$(( now - phase_t0 ))s] $*" >&2; }

phase "node"
source scripts/node-env.sh
echo "node $(node --version) at $(command -v node)" >&2
phase "npm dependencies"
source scripts/deps.sh
phase "services: install or find (Temporal CLI, Kafka jars, Redis, PostgreSQL)"
bash scripts/services.sh install
phase "npm run check"
rm -f .vigil-test/results.json
rc=0; npm run check --silent || rc=$?
if [ -f .vigil-test/results.json ]; then
  node -e 'const r=require("./.vigil-test/results.json");console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests+r.numTodoTests} skipped`)'
fi
phase "done (exit $rc)"
exit $rc
