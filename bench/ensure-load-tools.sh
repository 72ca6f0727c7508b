#!/usr/bin/env bash
# Makes sure the gateway benchmark's load driver and comparators are installed:
# h2load (nghttp2-client), nginx and HAProxy, from Debian's packages only.
set -euo pipefail
missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || missing+=(nginx)
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null || missing+=(haproxy)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "the gateway benchmark needs: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
apt-get update >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
