#!/usr/bin/env bash
# Installs what bench/run.sh needs besides imgb: the peers (Buildah, Debian's
# docker.io daemon with its built-in BuildKit) and the floor tools (pigz,
# zstd), plus the registry and skopeo it shares with the tests. Debian 12;
# run as root. CI does not run the benchmark, so nothing calls this there.
set -euo pipefail
pkgs=(buildah docker.io runc pigz zstd skopeo docker-registry time bc python3 e2fsprogs)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: everything is installed"
  exit 0
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# docker.io's postinst would start a system daemon where systemd exists; the
# benchmark starts its own dockerd with its own socket and data-root.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
