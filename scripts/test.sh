#!/usr/bin/env bash
# The whole chatcluster test suite: formatting, lints, Rust unit and integration tests (real
# redis-server and haproxy on loopback), then the Python checks of rendered manifests and the
# Helm chart. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --python
# chromium, node and playwright-core for the demo-page browser test (operator/tests/e2e).
scripts/install-browser-deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (binaries used by integration tests)" >&2
cargo build --workspace --bins --locked
echo "== cargo test" >&2
cargo test --workspace --locked
echo "== pytest (manifests, CRD, chart)" >&2
.venv/bin/pytest -q tests/
