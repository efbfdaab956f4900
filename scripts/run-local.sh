#!/usr/bin/env bash
# Runs chatcluster on this machine, without Kubernetes: installs haproxy and redis-server when
# missing, builds the release binaries, and starts `chatcluster-operator local` with
# examples/chatcluster.yaml (or the file given with -f): a private Redis, one chat-node + sidecar
# pair per replica and HAProxy in front, all on 127.0.0.1. It prints the endpoint and the demo
# page URL once everything is ready; Ctrl-C drains the chat nodes and stops every process it
# started (see docs/local-mode.md).
#
#   bash scripts/run-local.sh                      # demo page on http://127.0.0.1:8000/
#   bash scripts/run-local.sh --port 9000          # any `chatcluster-operator local --help` flag
#   bash scripts/run-local.sh -f my-cluster.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
echo "run-local: building release binaries (chat-node, chatcluster-sidecar, chatcluster-operator)" >&2
cargo build --release --locked -p chat-node -p sidecar -p chatcluster-operator --bins

args=("$@")
has_file=0
for arg in "$@"; do
  case "$arg" in
    -f | --file | --file=* | -f?*) has_file=1 ;;
  esac
done
((has_file)) || args=(-f examples/chatcluster.yaml "$@")
# exec: Ctrl-C and SIGTERM reach local mode itself, which drains and stops its children.
exec target/release/chatcluster-operator local "${args[@]}"
