#!/usr/bin/env bash
# Installs what Tugboat needs on a fresh Debian machine. Idempotent: skips what is present.
set -euo pipefail

packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
need etcd etcd-server
need protoc protobuf-compiler
need containerd containerd
need runc runc
need iptables iptables
need skopeo skopeo
need docker-registry docker-registry
[ -x /usr/lib/cni/bridge ] || packages+=(containernetworking-plugins)
# The test image needs a static busybox; the plain `busybox` package also installs
# /bin/busybox, but dynamically linked (useless in an image without a libc).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || packages+=(busybox-static)

if [ ${#packages[@]} -gt 0 ]; then
  echo "installing: ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The Python client is the second, independent client of the end-to-end tests.
python3 -c 'import kubernetes' 2>/dev/null || python3 -m pip install -q kubernetes
