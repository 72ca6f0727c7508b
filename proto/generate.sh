#!/usr/bin/env bash
# Generates proto/gen/ from every .proto file: static JavaScript classes, their
# TypeScript declarations and a JSON descriptor (for gRPC service definitions).
# protobufjs-cli only, so nothing is downloaded. proto/gen/ is never edited by hand.
set -euo pipefail
cd "$(dirname "$0")"
bin=../node_modules/.bin
# demo/ holds the demo service of the local mesh (`halyard up`).
# grpc/ holds vendored upstream contracts (grpc.health.v1) the gateway serves itself.
mapfile -t files < <(find halyard grpc demo -name '*.proto' | sort)
mkdir -p gen
"$bin/pbjs" -t static-module -w es6 --es6 --force-number --no-delimited --no-verify --no-service \
  -p . -o gen/halyard.js "${files[@]}"
"$bin/pbts" -o gen/halyard.d.ts gen/halyard.js
"$bin/pbjs" -t json -p . -o gen/halyard.json "${files[@]}"
