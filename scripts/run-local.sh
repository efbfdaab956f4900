#!/usr/bin/env bash
# Runs chatcluster on this machine (interim version, until the operator's `local` mode lands):
# a private redis-server on a free loopback port and one chat-node serving the demo page.
# Installs redis-server if missing, builds chat-node, prints the URL, and on Ctrl-C stops both
# processes (by PID) and removes the temporary directory.
#
# Environment: CHAT_PORT (default 8080, or a free port if taken), CHAT_ADMIN_PORT (default 8081,
# or a free port), CARGO_PROFILE (dev|release, default dev).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null 2>&1 || scripts/install-deps.sh

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local want=$1 p
  if [[ -n $want ]] && port_free "$want"; then echo "$want"; return; fi
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  echo "run-local: no free port found" >&2
  exit 1
}

profile=${CARGO_PROFILE:-dev}
echo "run-local: building chat-node ($profile)" >&2
cargo build -q -p chat-node --profile "$profile"
bin_dir=target/$([[ $profile == dev ]] && echo debug || echo "$profile")

ws_port=$(free_port "${CHAT_PORT:-8080}")
admin_port=$(free_port "${CHAT_ADMIN_PORT:-8081}")
redis_port=$(free_port "")
workdir=$(mktemp -d -t chatcluster-local.XXXXXX)
redis_pid="" node_pid=""

cleanup() {
  trap - INT TERM EXIT
  if [[ -n $node_pid ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  if [[ -n $redis_pid ]] && kill -0 "$redis_pid" 2>/dev/null; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
  echo "run-local: stopped" >&2
}
trap cleanup INT TERM EXIT

redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
  --dir "$workdir" --logfile "$workdir/redis.log" &
redis_pid=$!

"$bin_dir/chat-node" \
  --listen "127.0.0.1:$ws_port" \
  --admin-listen "127.0.0.1:$admin_port" \
  --redis-url "redis://127.0.0.1:$redis_port/" \
  --node-name local-0 \
  --drain-grace-seconds 2 &
node_pid=$!

for _ in $(seq 100); do
  port_free "$ws_port" || break
  sleep 0.1
done
cat <<MSG

  chatcluster is running (one chat-node, private Redis on 127.0.0.1:$redis_port)
    demo page:  http://127.0.0.1:$ws_port/
    WebSocket:  ws://127.0.0.1:$ws_port/ws?name=<you>
    admin:      http://127.0.0.1:$admin_port/stats  (/healthz /readyz /metrics /drain)
  Press Ctrl-C to stop.

MSG
wait "$node_pid"
