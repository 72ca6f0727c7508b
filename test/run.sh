#!/usr/bin/env bash
# The test command (`npm test`): installs what is missing, regenerates the contracts'
# code, checks types, then runs unit and integration tests (real 3-node NATS clusters)
# with node's runner.
# Arguments, if any, replace the default list of test files.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
npx tsc -p . --noEmit
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
if [[ $# -eq 0 ]]; then
  set -- test/unit/*.test.ts test/integration/*.test.ts
fi
exec node --import tsx --test "$@"
