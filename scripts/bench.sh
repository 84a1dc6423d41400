#!/usr/bin/env bash
# Benchmarks (not tests): they print figures and assert nothing.
#   scripts/bench.sh [--objects N --clients C --object-bytes B --paced-rate R]
#       API throughput/latency on SQLite and etcd, server memory per stored object, and raw etcd
#       put throughput from the same run.
#   scripts/bench.sh pods [--bursts 1,10,50]
#       pod start latency (API create → Running seen by a watcher) beside the CRI floor measured
#       in the same run, and the agent's memory.
#   scripts/bench.sh scale [--nodes 100,1000,5000 --pods 30000 --replicas 10000 --total-pods 150000
#                           --clients 128 --connections 16]
#       the control plane with simulated nodes (`tugboat sim`): scheduling throughput and latency,
#       plain and with anti-affinity + topology spread, paced latency, a big Deployment's
#       rollout time, and the server's memory and store size at the total pod count.
#   scripts/bench.sh instructions [--nodes 100 --pods 2000 --tugboat BINARY]
#       the API server's instructions per pod over the scale bursts (valgrind's callgrind): a
#       figure this VM's changing speed does not move, for comparing two builds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${1:-}" = pods ]; then
  shift
  cargo build --release --bin tugboat --bin tugboat-bench-pods
  exec target/release/tugboat-bench-pods --tugboat target/release/tugboat "$@"
fi
if [ "${1:-}" = instructions ]; then
  shift
  command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
  cargo build --release --bin tugboat --bin tugboat-bench-scale
  exec python3 scripts/instructions.py "$@"
fi
if [ "${1:-}" = scale ]; then
  shift
  cargo build --release --bin tugboat --bin tugboat-bench-scale
  exec target/release/tugboat-bench-scale --tugboat target/release/tugboat "$@"
fi
cargo build --release --bin tugboat --bin tugboat-bench
exec target/release/tugboat-bench --tugboat target/release/tugboat "$@"
