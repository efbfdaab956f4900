#!/usr/bin/env bash
# Installs what the demo-page browser test (operator/tests/e2e/browser.rs) needs when missing:
# Debian chromium and nodejs, npm if nodejs does not bring it (through install-deps.sh), and
# playwright-core, pinned by operator/tests/e2e/browser/package-lock.json, into that
# directory's node_modules.
# playwright-core drives the system chromium; it downloads no browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh chromium nodejs
# Some nodejs builds bundle npm (and conflict with Debian's npm package): add it only if missing.
command -v npm >/dev/null 2>&1 || scripts/install-deps.sh npm
dir=operator/tests/e2e/browser
if [[ ! -d $dir/node_modules/playwright-core ]]; then
  echo "install-browser-deps: npm ci in $dir" >&2
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
fi
