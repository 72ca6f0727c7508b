#!/usr/bin/env bash
# Locate a usable nats-server (>= MIN_VERSION) and print its absolute path on stdout.
# Everything else goes to stderr so callers can do: NATS_SERVER_BIN="$(deploy/nats/ensure-nats-server.sh)".
# Binaries are only ever obtained from the OS package manager (apt-get); nothing is downloaded directly.
set -euo pipefail

MIN_VERSION="2.9.10"
APT_HINT="sudo apt-get update && sudo apt-get install -y nats-server"

log() { echo "ensure-nats-server: $*" >&2; }

find_bin() {
  if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
    # An explicit override must work as given; silently falling back to PATH would hide a misconfiguration.
    if [[ -x "$NATS_SERVER_BIN" ]]; then
      realpath "$NATS_SERVER_BIN"
    elif command -v "$NATS_SERVER_BIN" >/dev/null 2>&1; then
      realpath "$(command -v "$NATS_SERVER_BIN")"
    else
      log "NATS_SERVER_BIN=$NATS_SERVER_BIN is not an executable"
      exit 1
    fi
  elif command -v nats-server >/dev/null 2>&1; then
    realpath "$(command -v nats-server)"
  elif [[ -x /usr/sbin/nats-server ]]; then
    # Debian's package installs to /usr/sbin, which is not on a non-root user's PATH.
    echo /usr/sbin/nats-server
  fi
}

is_debian() {
  [[ -r /etc/os-release ]] || return 1
  # shellcheck disable=SC1091
  (. /etc/os-release && [[ " ${ID:-} ${ID_LIKE:-} " == *debian* ]])
}

# True when $1 >= $2 (dotted numeric versions).
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

bin="$(find_bin)"

if [[ -z "$bin" ]]; then
  if [[ "$(id -u)" -eq 0 ]] && is_debian && command -v apt-get >/dev/null 2>&1; then
    log "nats-server not found; installing it with apt-get"
    if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } >&2; then
      bin="$(find_bin)"
    else
      log "apt-get could not install nats-server"
    fi
  fi
  if [[ -z "$bin" ]]; then
    log "nats-server not found (looked at \$NATS_SERVER_BIN, PATH and /usr/sbin)."
    if is_debian; then
      log "Install it with: $APT_HINT"
    else
      log "Install nats-server >= $MIN_VERSION from your OS package manager and set NATS_SERVER_BIN to its path."
    fi
    exit 1
  fi
fi

# `nats-server --version` prints e.g. "nats-server: v2.9.10".
version="$("$bin" --version 2>&1 | sed -nE 's/.*v([0-9]+\.[0-9]+\.[0-9]+).*/\1/p' | head -n1)"
if [[ -z "$version" ]]; then
  log "could not parse the version of $bin (output: $("$bin" --version 2>&1 | head -n1))"
  exit 1
fi
if ! version_ge "$version" "$MIN_VERSION"; then
  log "$bin is version $version; version >= $MIN_VERSION is required."
  is_debian && log "Try: $APT_HINT (or set NATS_SERVER_BIN to a newer binary)"
  exit 1
fi

echo "$bin"
