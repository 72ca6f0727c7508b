#!/usr/bin/env bash
# Runs a benchmark against real local nats-server processes:
#   bash bench/run.sh [kv|gateway|discovery|launcher|cache|sticky] [its options]   (default: kv)
# Each bench/<name>.ts prints its own table; figures go into bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
# Some benchmarks run the built JavaScript (dist/), as the mesh does.
bash deploy/build.sh --if-stale
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
name=kv
if [[ $# -gt 0 && "$1" != -* ]]; then
  name="$1"
  shift
fi
if [[ ! -f "bench/$name.ts" ]]; then
  echo "no benchmark bench/$name.ts; there are: $(cd bench && ls ./*.ts | sed 's#./##; s#\.ts##' | tr '\n' ' ')" >&2
  exit 2
fi
# The gateway is compared with nginx grpc_pass and HAProxy under h2load.
[[ "$name" == gateway ]] && bash bench/ensure-load-tools.sh
exec node --import tsx "bench/$name.ts" "$@"
