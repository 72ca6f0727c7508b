#!/usr/bin/env bash
# The test command (`npm test`): installs what is missing, regenerates the contracts'
# code, checks types, builds the JavaScript when dist/ is stale (`halyard up` and the
# mesh configs run it), then runs unit and integration tests (real 3-node NATS clusters)
# with node's runner; the tests themselves run the TypeScript sources through tsx.
# Arguments, if any, replace the default list of test files.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash proto/generate.sh
npx tsc -p . --noEmit
bash deploy/build.sh --if-stale
NATS_SERVER_BIN="$(bash deploy/nats/ensure-nats-server.sh)"
export NATS_SERVER_BIN
# The console's browser tests drive Debian's chromium, headless.
if [[ -z "${CHROMIUM_BIN:-}" && ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the console's browser tests" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      echo "could not install chromium: the console's browser tests will say so" >&2
  else
    echo "the console's browser tests need chromium: apt-get install chromium (as root), or set CHROMIUM_BIN" >&2
  fi
fi
if [[ $# -eq 0 ]]; then
  set -- test/unit/*.test.ts test/integration/*.test.ts
fi
# A test that hangs fails after 5 minutes instead of holding the whole run.
exec node --import tsx --test --test-timeout=300000 "$@"
