#!/usr/bin/env bash
# Runs the benchmarks against real local nats-server processes.
# `bench/run.sh [--count N]`: bus KV; `bench/run.sh launcher [--crashes N]`: the launcher.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
if [[ "${1:-}" == launcher ]]; then
  shift
  exec node --import tsx bench/launcher.ts "$@"
fi
exec node --import tsx bench/kv.ts "$@"
