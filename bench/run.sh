#!/usr/bin/env bash
# Runs the benchmarks against real local nats-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
# `bash bench/run.sh cache [--count N]` runs the cache service benchmark instead.
if [[ "${1:-}" == cache ]]; then
  shift
  exec node --import tsx bench/cache.ts "$@"
fi
exec node --import tsx bench/kv.ts "$@"
