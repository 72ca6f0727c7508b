#!/usr/bin/env bash
# Builds the JavaScript that every component, the CLI and the examples run with plain
# `node` (`npm run build`): regenerates proto/gen/, compiles bus/, services/ and examples/
# to dist/ with source maps (tsconfig.build.json), and copies next to the compiled code
# what it reads at run time: the contracts' generated code and descriptor
# (dist/proto/gen/) and the console's static files.
#   bash deploy/build.sh             builds
#   bash deploy/build.sh --if-stale  builds only when dist/ is missing or older than a source
# dist/.built is stamped when a build starts, and the build replaces dist/ only once it
# succeeded, so a failed build never counts as fresh and an edit made during a build
# counts as newer. A source is any file or directory under bus/, services/, examples/ or
# proto/ (proto/gen/ excepted: it is generated), tsconfig*.json or package-lock.json;
# directories count, so a deleted or renamed file rebuilds too.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=dist/.built

fresh() {
  [[ -f $stamp ]] || return 1
  [[ -z $(find bus services examples proto tsconfig.json tsconfig.build.json package-lock.json \
    \( -path proto/gen -o -path examples/python \) -prune -o -newer "$stamp" -print -quit) ]]
}

# One build at a time: a second one waits here, then finds dist/ fresh.
exec 9<deploy/build.sh
flock 9
if [[ ${1:-} == --if-stale ]] && fresh; then
  exit 0
fi
echo "building dist/ (the JavaScript Halyard runs)" >&2
next=dist.next
rm -rf "$next"
mkdir -p "$next/proto/gen"
touch "$next/.built"
bash proto/generate.sh
node_modules/.bin/tsc -p tsconfig.build.json --outDir "$next"
cp proto/gen/halyard.js proto/gen/halyard.json "$next/proto/gen/"
cp -r services/console/static "$next/services/console/"
# Processes running from dist/ keep their loaded modules; the swap leaves no window
# without a complete dist/ for the ones starting meanwhile.
rm -rf dist.old
[[ -d dist ]] && mv dist dist.old
mv "$next" dist
rm -rf dist.old
