#!/usr/bin/env bash
# The side-by-side build benchmark: imgb against Buildah and BuildKit
# (issue #10). See bench/README.md for workloads, scenarios and hygiene.
#
#   bench/run.sh [WORKLOAD...]        app, bigctx, multistage (default: all)
#   bench/run.sh --clean              unmount and delete the benchmark volume
#
# Environment: RUNS (5), SCALE (1), TOOLS (imgb,buildah,buildkit),
# SCENARIOS (cold,noop,change,nocache,push,export), BENCH_DIR
# (/var/tmp/imgb-bench: a loop-mounted ext4 volume lives there), IDLE_BUSY
# (0.15), IDLE_MAX (10 s), RETRIES (2), VERIFY (first|each|none), FLOORS (1),
# TIMEOUT (900 s per command),
# IMGB (default: target/release/imgb, built here with cargo first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${BENCH_DIR:-/var/tmp/imgb-bench}
if [ "${1:-}" = --clean ]; then
  mountpoint -q "$dir/mnt" && umount "$dir/mnt"
  rm -rf "$dir"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (loop mount, runc, dockerd)" >&2; exit 2; }
need=(python3 tar skopeo docker-registry runc mkfs.ext4 gzip)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
[ ${#missing[@]} -eq 0 ] || { echo "run.sh: missing ${missing[*]}: run bench/setup.sh" >&2; exit 2; }
for t in buildah dockerd pigz zstd; do
  command -v "$t" >/dev/null || echo "run.sh: $t is not installed; bench/setup.sh installs it (measuring without it)" >&2
done
if [ -z "${IMGB:-}" ]; then
  # cargo decides whether anything changed (a no-op when up to date).
  (cd "$root" && cargo build --release --quiet)
fi
# The content checker must reject wrong images before it judges any.
python3 "$root/bench/image.py" >/dev/null
exec python3 "$root/bench/runner.py" "$@"
