#!/usr/bin/env bash
# Benchmarks (not tests): prints API throughput/latency on SQLite and etcd, server memory per
# stored object, and raw etcd put throughput from the same run. Arguments go to tugboat-bench
# (--objects N --clients C --object-bytes B --paced-rate R).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --bin tugboat --bin tugboat-bench
exec target/release/tugboat-bench --tugboat target/release/tugboat "$@"
