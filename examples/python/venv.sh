#!/usr/bin/env bash
# Makes (once) the virtual environment of the Python example and prints its python's
# path: `"$(bash examples/python/venv.sh)" examples/python/greeter.py`.
# The venv lives under ${HALYARD_PYTHON_CACHE:-~/.cache/halyard/python-example}, in a
# folder named after requirements.txt's digest, so a change of pins makes a new one; it
# counts as made only once every package is installed (a half-made one is made again).
# Needs python3 (≥ 3.10) with its venv module. Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
digest="$(sha256sum "$here/requirements.txt" | cut -c1-16)"
venv="${HALYARD_PYTHON_CACHE:-$HOME/.cache/halyard/python-example}/$digest"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9 # one maker at a time; the others then find it made
if [[ ! -f "$venv/.installed" ]]; then
  python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || { echo "venv.sh: $python not found" >&2; exit 1; }
  echo "venv.sh: making $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-virtualenv -r "$here/requirements.txt" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/python"
