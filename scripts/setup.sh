#!/usr/bin/env bash
# One command from a fresh machine to a running single-node Tugboat cluster.
#   scripts/setup.sh            # data in /var/lib/tugboat, API on :6443
# Then: export KUBECONFIG=/var/lib/tugboat/admin.kubeconfig; kubectl get ns
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${TUGBOAT_DATA_DIR:-/var/lib/tugboat}
scripts/install-deps.sh
cargo build --release --bin tugboat
install -m 0755 target/release/tugboat /usr/local/bin/tugboat

if [ -f "$DATA_DIR/tugboat.pid" ] && kill -0 "$(cat "$DATA_DIR/tugboat.pid")" 2>/dev/null; then
  echo "stopping the running tugboat server"
  kill "$(cat "$DATA_DIR/tugboat.pid")"
  sleep 1
fi
mkdir -p "$DATA_DIR"
nohup /usr/local/bin/tugboat server --data-dir "$DATA_DIR" "$@" >"$DATA_DIR/server.log" 2>&1 &
echo $! >"$DATA_DIR/tugboat.pid"

for _ in $(seq 1 100); do
  if [ -f "$DATA_DIR/admin.kubeconfig" ] && KUBECONFIG="$DATA_DIR/admin.kubeconfig" kubectl get --raw /readyz >/dev/null 2>&1; then
    echo "Tugboat is running (log: $DATA_DIR/server.log)."
    echo "    export KUBECONFIG=$DATA_DIR/admin.kubeconfig"
    echo "    kubectl get namespaces"
    exit 0
  fi
  sleep 0.2
done
echo "tugboat server did not become ready; see $DATA_DIR/server.log" >&2
tail -n 20 "$DATA_DIR/server.log" >&2
exit 1
