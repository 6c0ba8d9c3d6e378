#!/usr/bin/env bash
# Benchmark for issue 8: a multi-stage build whose two builder stages are
# independent and CPU-bound (busybox sha256sum, 8 times over a file of
# MB_PER_STAGE) uses both cores.
#
#   bench/parallel-stages.sh [MB_PER_STAGE]      (default 200)
#
# Builds the same Dockerfile with --no-cache under --jobs 1 and --jobs 2
# (3 runs each, median) and prints the wall time and how many cores were
# busy on average during the build (from /proc/stat: busy jiffies of the
# whole machine / wall time), so run it on an idle machine.
set -euo pipefail
mb=${1:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
imgb=${IMGB:-$root/target/release/imgb}
[ -x "$imgb" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The stages need only a static busybox: no registry, no network.
mkdir -p "$work/ctx"
cp /bin/busybox "$work/ctx/busybox"
stage() {
  # One process at a time per stage (a pipe would already keep two cores
  # busy): hash a file in the page cache several times.
  printf 'FROM tools AS %s\nRUN ["/bin/busybox", "sh", "-c", "/bin/busybox dd if=/dev/zero of=/z bs=1000000 count=%s 2>/dev/null && for i in 1 2 3 4 5 6 7 8; do /bin/busybox sha256sum /z; done > /out && rm /z"]\n' "$1" "$2"
}
{
  printf 'FROM scratch AS tools\nCOPY busybox /bin/busybox\n'
  stage one "$mb"
  stage two "$((mb + 1))"
  printf 'FROM scratch\nCOPY --from=one /out /one\nCOPY --from=two /out /two\n'
} > "$work/ctx/Dockerfile"

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() {
  local jobs=$1 s e b0 t0 b1 t1
  read -r b0 t0 < <(busy)
  s=$(date +%s.%N)
  IMGB_HOME="$work/home" "$imgb" build -q --no-cache --jobs "$jobs" "$work/ctx" >/dev/null
  e=$(date +%s.%N)
  read -r b1 t1 < <(busy)
  # wall seconds, and busy cores = busy jiffies / all jiffies * cores
  echo "$(echo "$e - $s" | bc) $(echo "($b1 - $b0) / ($t1 - $t0) * $(nproc)" | bc -l)"
}

# Warm up (pulls nothing; fills the page cache and the snapshot of `tools`).
IMGB_HOME="$work/home" "$imgb" build -q "$work/ctx" >/dev/null
echo "two independent stages, 8 x sha256sum of ${mb} MB each, --no-cache (median of 3); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for jobs in 1 2; do
  results=()
  for _ in 1 2 3; do results+=("$(run "$jobs")"); done
  wall=$(printf '%s\n' "${results[@]}" | awk '{print $1}' | median)
  cores=$(printf '%s\n' "${results[@]}" | awk '{print $2}' | median)
  printf '  --jobs %s  %6.2f s  %.2f cores busy\n' "$jobs" "$wall" "$cores"
  eval "wall$jobs=$wall"
done
printf '  speed-up --jobs 2 over --jobs 1: %.2fx\n' "$(echo "$wall1 / $wall2" | bc -l)"
