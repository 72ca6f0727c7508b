#!/usr/bin/env bash
# Runs a benchmark against real local nats-server processes:
#   bash bench/run.sh [all|<name>] [its options]   (default: all; `npm run bench` runs this)
# <name> is one of BENCHES below; `all` runs every one in turn with its defaults (takes
# about 20 minutes on 2 cores) and says at the end which, if any, failed.
# Each bench/<name>.ts prints its own table; figures go into bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every benchmark, in the order `all` runs them; the other .ts files here are helpers.
BENCHES=(kv failover watch-stall replay cache discovery sticky launcher gateway gateway-workers mesh-rss start-time)
usage="usage: bash bench/run.sh [all|$(
  IFS='|'
  echo "${BENCHES[*]}"
)] [options]"
name=all
if [[ $# -gt 0 && "$1" != -* ]]; then
  name="$1"
  shift
fi
if [[ "$name" != all && ! " ${BENCHES[*]} " =~ [[:space:]]${name}[[:space:]] ]]; then
  echo "no benchmark '$name'; $usage" >&2
  exit 2
fi
if [[ "$name" == all && $# -gt 0 ]]; then
  echo "options go to one benchmark: $usage" >&2
  exit 2
fi
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
# Some benchmarks run the built JavaScript (dist/), as the mesh does.
bash deploy/build.sh --if-stale
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN

run() {
  # The gateway is compared with nginx grpc_pass and HAProxy under h2load.
  [[ "$1" == gateway ]] && bash bench/ensure-load-tools.sh
  node --import tsx "bench/$1.ts" "${@:2}"
}

if [[ "$name" != all ]]; then
  run "$name" "$@"
  exit
fi
failed=()
for bench in "${BENCHES[@]}"; do
  echo "=== bench/$bench.ts ($(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg))"
  run "$bench" || failed+=("$bench")
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
