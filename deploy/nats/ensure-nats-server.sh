#!/usr/bin/env bash
# Locate a usable nats-server (>= MIN_VERSION) and print its absolute path on stdout.
# Everything else goes to stderr so callers can do: NATS_SERVER_BIN="$(deploy/nats/ensure-nats-server.sh)".
#
# Order: $NATS_SERVER_BIN, then a `nats-server` on PATH, then the per-user cache of the
# pinned version; when none is usable and Go is installed, the pinned version is built
# from its official Go module into that cache (shared by every checkout of Halyard).
set -euo pipefail

# The oldest server Halyard supports. Per-message TTLs and expiry markers arrived in 2.11;
# 2.12 is the oldest release line Halyard is supported on.
MIN_VERSION="2.12.0"
# The server Halyard is tested and benchmarked on; one constant, bumped deliberately.
PINNED_VERSION="2.15.2"
MODULE="github.com/nats-io/nats-server/v2"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/halyard/nats-server/v$PINNED_VERSION"

log() { echo "ensure-nats-server: $*" >&2; }

# True when $1 >= $2 (dotted numeric versions).
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# `nats-server --version` prints e.g. "nats-server: v2.15.2".
version_of() { "$1" --version 2>&1 | sed -nE 's/.*v([0-9]+\.[0-9]+\.[0-9]+).*/\1/p' | head -n1; }

# Prints the path if $1 is a nats-server >= MIN_VERSION; explains a refusal otherwise.
usable() {
  local bin="$1" version
  version="$(version_of "$bin")"
  if [[ -z "$version" ]]; then
    log "could not read the version of $bin (it printed: $("$bin" --version 2>&1 | head -n1))"
    return 1
  fi
  if ! version_ge "$version" "$MIN_VERSION"; then
    log "refusing $bin: version $version is older than $MIN_VERSION, which Halyard needs for per-message TTLs, and enforced compare-and-set on replicated streams"
    return 1
  fi
  echo "$bin"
}

if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
  # An explicit choice must work as given; falling back silently would hide a misconfiguration.
  bin="$(command -v "$NATS_SERVER_BIN" || true)"
  if [[ -z "$bin" || ! -x "$bin" ]]; then
    log "NATS_SERVER_BIN=$NATS_SERVER_BIN is not an executable"
    exit 1
  fi
  usable "$(realpath "$bin")" || exit 1
  exit 0
fi

if command -v nats-server >/dev/null 2>&1 && usable "$(realpath "$(command -v nats-server)")"; then
  exit 0
fi

cached="$CACHE_DIR/nats-server"
if [[ -x "$cached" ]] && usable "$cached"; then
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "no nats-server >= $MIN_VERSION found (looked at \$NATS_SERVER_BIN, PATH and $CACHE_DIR)."
  log "Either install Go (https://go.dev/doc/install) and run this again, which builds v$PINNED_VERSION with"
  log "  go install $MODULE@v$PINNED_VERSION"
  log "or put nats-server >= $MIN_VERSION on PATH (or set NATS_SERVER_BIN to its path)."
  exit 1
fi

log "building nats-server v$PINNED_VERSION from its Go module into $CACHE_DIR"
log "(once per machine; about a minute on 2 cores: go install $MODULE@v$PINNED_VERSION)"
mkdir -p "$CACHE_DIR"
# A build into a scratch directory, moved into place whole: a checkout that runs this
# at the same time never sees a half-written binary.
scratch="$(mktemp -d "$CACHE_DIR/.build.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
if ! GOBIN="$scratch" GOFLAGS=-mod=mod go install "$MODULE@v$PINNED_VERSION" >&2; then
  log "go install $MODULE@v$PINNED_VERSION failed (output above); is the Go module proxy reachable?"
  exit 1
fi
mv -f "$scratch/nats-server" "$cached"
usable "$cached"
