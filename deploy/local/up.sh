#!/usr/bin/env bash
# `npm start`: a local Halyard mesh (`halyard up`): the bus, then one launcher with
# deploy/local/mesh.yaml (discovery, gateways, cache, demo greeters). Installs what is
# missing (npm packages; nats-server, built once from its Go module when none ≥ 2.12 is
# found: deploy/nats/ensure-nats-server.sh), builds the JavaScript when dist/ is missing or
# older than the sources (deploy/build.sh --if-stale), then runs `halyard up` from dist/ in
# the foreground; arguments are passed on
# (`npm start -- --single-node`, `--bus-only`, `--data-dir DIR`, `--base-port N`). Ctrl-C stops it.
# stdout carries only the summary of `up`; everything else goes to stderr. `up` idles once
# the mesh runs: 1 MB semi-spaces keep it ~15 MB smaller (bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund >&2
bash deploy/build.sh --if-stale >&2
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
exec node --enable-source-maps --max-semi-space-size=1 dist/services/cli/main.js up "$@"
