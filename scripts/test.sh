#!/usr/bin/env bash
# The whole test suite: unit, integration (store conformance on SQLite and a real etcd) and
# end-to-end (the real binary with the installed kubectl and the Python client).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Two cores: run test binaries one at a time, each with two threads, so that end-to-end
# scenarios (each with its own server, and etcd) don't starve each other.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2
