#!/usr/bin/env bash
# Benchmark for issue 6: pushing a large image to a loopback registry with
# imgb and with skopeo, from the same OCI layout, each to a fresh repository.
# The registry (Debian's docker-registry) is the bottleneck when the two take
# about the same time.
#
#   bench/push.sh [SIZE_MB]      (default 1024)
#
# Each imgb push gets a fresh state dir, so it cannot mount blobs it pushed
# before (a real win, but not this measurement).
#
# Prints one line per tool: seconds (median of 3) and the ratio imgb/skopeo.
set -euo pipefail
size_mb=${1:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
imgb=${IMGB:-$root/target/release/imgb}
[ -x "$imgb" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'kill $(cat "$work/reg.pid" 2>/dev/null) 2>/dev/null; rm -rf "$work"' EXIT

# Every measurement gets an empty registry of its own: no tool can skip
# uploads by mounting blobs it pushed before (skopeo remembers blob
# locations across runs in its blob-info cache).
start_registry() {
  local n=$1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  bash "$root/fixtures/registry/start.sh" plain "$work/reg$n" "$port" --watch-pid $$ >/dev/null 2>&1 &
  echo $! > "$work/reg.pid"
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
}
stop_registry() {
  kill "$(cat "$work/reg.pid")" 2>/dev/null || true
  sleep 0.5
  # start.sh deletes its storage when it stops.
}

# A deterministic image: 4 layers of incompressible data plus small files.
mkdir -p "$work/ctx"
for i in 1 2 3 4; do
  head -c $((size_mb * 1024 * 1024 / 4)) /dev/urandom > "$work/ctx/blob$i"
done
printf 'FROM scratch\nCOPY blob1 /\nCOPY blob2 /\nCOPY blob3 /\nCOPY blob4 /\n' > "$work/ctx/Dockerfile"
IMGB_HOME="$work/home" "$imgb" build -q --compression uncompressed \
  -o "type=oci,dest=$work/layout,tar=false,name=bench:1" "$work/ctx" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

imgb_times=(); skopeo_times=()
for run in 1 2 3; do
  start_registry "i$run"
  imgb_times+=("$(timeit env IMGB_HOME="$work/push-home$run" "$imgb" push "oci:$work/layout:1" "127.0.0.1:$port/imgb/bench:1")")
  stop_registry
  start_registry "s$run"
  skopeo_times+=("$(timeit skopeo copy --insecure-policy --dest-tls-verify=false "oci:$work/layout:1" "docker://127.0.0.1:$port/skopeo/bench:1")")
  stop_registry
done
i=$(printf '%s\n' "${imgb_times[@]}" | median)
s=$(printf '%s\n' "${skopeo_times[@]}" | median)
echo "push of ${size_mb} MB to a loopback registry (median of 3, empty registry each):"
printf '  imgb    %6.2f s\n  skopeo  %6.2f s\n  ratio imgb/skopeo %.2f\n' "$i" "$s" "$(echo "$i / $s" | bc -l)"
