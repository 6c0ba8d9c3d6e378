#!/usr/bin/env bash
# RUN overhead (issue 8): what a RUN step costs beyond the command itself.
#
#   bench/run-overhead.sh [N] [--debian]     (N: RUN steps, default 20)
#
# Builds, with --no-cache, a Dockerfile of N `RUN true` steps and one of none
# on the busybox fixture (and with --debian on the Debian fixture too); the
# per-RUN time is the difference divided by N (median of 3 builds each). The
# same with `USER nobody` first measures RUNs that resolve a user.
# The command itself is a bare `runc run` of `true` on the same rootfs, with
# the same namespaces (no network namespace, as imgb's RUN), timed over N
# runs. Prints the per-RUN time, the bare runc time and their difference
# (the overhead) in ms.
#
# State lives under BENCH_DIR (default /tmp); put it on a journaled volume for
# stable figures (see /work/shared/ENVIRONMENT.md "Benchmark hygiene").
set -euo pipefail
n=20
debian=0
for arg in "$@"; do
  case "$arg" in
    --debian) debian=1 ;;
    *) n=$arg ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
imgb=${IMGB:-$root/target/release/imgb}
[ -n "${IMGB:-}" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d "${BENCH_DIR:-/tmp}/run-bench.XXXXXX")
cleanup() {
  kill "$(cat "$work/reg.pid" 2>/dev/null)" 2>/dev/null || true
  for m in $(grep -o "$work[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r); do umount "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bash "$root/fixtures/registry/start.sh" plain "$work/reg" "$port" --watch-pid $$ >/dev/null 2>&1 &
echo $! > "$work/reg.pid"
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

bases=(busybox)
[ "$debian" = 1 ] && bases+=(debian)
for base in "${bases[@]}"; do
  bash "$root/fixtures/images/$base/build.sh" "$work/$base-layout" >/dev/null
  IMGB_HOME="$work/push-home" "$imgb" push "oci:$work/$base-layout:latest" "127.0.0.1:$port/bench/$base:latest" >/dev/null 2>&1
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

# One bare runc bundle per base: the base's rootfs, `true`, no terminal, no
# network namespace.
bare_runc() {
  local base=$1 b=$work/bundle-$base
  mkdir -p "$b/rootfs"
  local layers
  layers=$(python3 - "$work/$base-layout" <<'PY'
import json, sys
d = sys.argv[1]
idx = json.load(open(f"{d}/index.json"))
desc = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest")
def blob(dg): return f"{d}/blobs/sha256/{dg.split(':')[1]}"
m = json.load(open(blob(desc["digest"])))
if "manifests" in m:
    m = json.load(open(blob(m["manifests"][0]["digest"])))
print(" ".join(blob(l["digest"]) for l in m["layers"]))
PY
)
  for l in $layers; do tar -xzf "$l" -C "$b/rootfs"; done
  (cd "$b" && runc spec)
  python3 - "$b/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
c["root"]["path"] = p.rsplit("/", 1)[0] + "/rootfs"
c["linux"]["namespaces"] = [x for x in c["linux"]["namespaces"] if x["type"] != "network"]
json.dump(c, open(p, "w"))
PY
  local s e
  runc --root "$work/runc-state" run -b "$b" "warm-$base" >/dev/null
  s=$(now)
  for i in $(seq "$n"); do runc --root "$work/runc-state" run -b "$b" "bench-$base-$i" >/dev/null; done
  e=$(now)
  echo "($e - $s) * 1000 / $n" | bc -l
}

build_time() {
  local ctx=$1 home=$2 s e
  s=$(now)
  IMGB_HOME="$home" "$imgb" build -q --no-cache -o "type=oci,dest=$work/out,tar=false" "$ctx" >/dev/null
  e=$(now)
  rm -rf "$work/out"
  echo "$e - $s" | bc -l
}

echo "RUN overhead, $n x RUN true, --no-cache, median of 3 ($(date -u +%F), load average $(cut -d' ' -f1-3 /proc/loadavg))"
for base in "${bases[@]}"; do
  from="FROM 127.0.0.1:$port/bench/$base:latest"
  mkdir -p "$work/ctx-$base-0" "$work/ctx-$base-n" "$work/ctx-$base-u"
  printf '%s\nENV BENCH=1\n' "$from" > "$work/ctx-$base-0/Dockerfile"
  { echo "$from"; echo "ENV BENCH=1"; for _ in $(seq "$n"); do echo "RUN true"; done; } > "$work/ctx-$base-n/Dockerfile"
  { echo "$from"; echo "USER nobody"; for _ in $(seq "$n"); do echo "RUN true"; done; } > "$work/ctx-$base-u/Dockerfile"
  home=$work/home-$base
  # Warm up: pull the base and unpack its layers once (as any later build
  # finds them).
  IMGB_HOME="$home" "$imgb" build -q -o "type=oci,dest=$work/out,tar=false" "$work/ctx-$base-n" >/dev/null
  rm -rf "$work/out"
  zero=(); many=(); user=()
  for _ in 1 2 3; do
    zero+=("$(build_time "$work/ctx-$base-0" "$home")")
    many+=("$(build_time "$work/ctx-$base-n" "$home")")
    user+=("$(build_time "$work/ctx-$base-u" "$home")")
  done
  z=$(printf '%s\n' "${zero[@]}" | median)
  m=$(printf '%s\n' "${many[@]}" | median)
  u=$(printf '%s\n' "${user[@]}" | median)
  per_run=$(echo "($m - $z) * 1000 / $n" | bc -l)
  per_user=$(echo "($u - $z) * 1000 / $n" | bc -l)
  bare=$(bare_runc "$base")
  printf '  %-8s imgb per RUN %7.1f ms (USER nobody: %7.1f ms)   bare runc run %6.1f ms   overhead %6.1f ms (USER: %6.1f ms)   (builds: %.2f s with, %.2f s without)\n' \
    "$base" "$per_run" "$per_user" "$bare" "$(echo "$per_run - $bare" | bc -l)" "$(echo "$per_user - $bare" | bc -l)" "$m" "$z"
done
