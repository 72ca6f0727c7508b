#!/usr/bin/env bash
# Runs the benchmarks against real local nats-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
node --import tsx bench/discovery.ts
exec node --import tsx bench/kv.ts "$@"
