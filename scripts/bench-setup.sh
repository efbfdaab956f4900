#!/usr/bin/env bash
# Installs the Socket.IO peer of the benchmarks (bench/socketio) from the committed lockfile
# with `npm ci` (socket.io, @socket.io/redis-adapter, redis from the npm registry; nothing else
# is downloaded), and checks that node can load it. Needs node >= 18 and npm.
set -euo pipefail
cd "$(dirname "$0")/../bench/socketio"
command -v node >/dev/null || { echo "node is missing: apt-get install nodejs npm" >&2; exit 1; }
npm ci --no-audit --no-fund
node -e "require('socket.io'); require('@socket.io/redis-adapter'); require('redis')"
echo "Socket.IO peer installed in $(pwd)/node_modules" >&2
