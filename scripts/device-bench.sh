#!/bin/bash
# The GPU benchmark (issue 7) on the device machine, in one call. See DEVELOPERS.md, "GPU benchmarks".
#
#   bash scripts/device-bench.sh prepare   here: builds dist/bench.mjs and packs .device/ (node, Dawn, GL loaders)
#   bash scripts/device-bench.sh run       there, as the device command, with carry [".device", "dist/bench.mjs"]:
#                                          writes $OUT/bench.json (after every item) and $OUT/bench.log
#
# BENCH_ARGS adds arguments to the benchmark (e.g. "--batches 1 --modes unet_only"); BENCH_BUDGET_S (default
# 420) is the time after which it starts no new item, so the call ends inside the device's 10-minute limit.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  # Minified, no source map: the whole carried tree must stay under 64 MiB.
  node scripts/build.mjs --production --only=bench
  node ../shared/device/pack.mjs .device
  # The bundle inlines tfjs; at run time it needs only Dawn (the `webgpu` package, dynamically imported).
  # Replace pack.mjs' archive of every production dependency (~19 MiB) with that one, linux-x64 only.
  tmp=$(mktemp -d)
  mkdir -p "$tmp/node_modules"
  cp -r node_modules/webgpu "$tmp/node_modules/"
  rm -rf "$tmp/node_modules/webgpu/node_modules" "$tmp/node_modules/webgpu/build"
  find "$tmp/node_modules/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  tar -C "$tmp" -cJf .device/node_modules.tar.xz node_modules
  rm -rf "$tmp"
  tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  carry=$(du -cb .device dist/bench.mjs | tail -1 | cut -f1)
  mib() { echo "$(( $1 / 1048576 )) MiB"; }
  echo "working tree $(mib "$tree") + carried .device and dist/bench.mjs $(mib "$carry") = $(mib $((tree + carry))) (device limit: 64 MiB)"
  if (( tree + carry > 64 * 1048576 )); then
    echo "TOO LARGE for the device machine: the tracked tree must shrink (largest files below) before the run can be sent." >&2
    git ls-files -co --exclude-standard -z | xargs -0 du -b 2>/dev/null | sort -rn | head -8 >&2
    exit 2
  fi
  echo 'now: device run, carry [".device", "dist/bench.mjs"], timeout_s 560, command: bash scripts/device-bench.sh run'
  ;;
run)
  [ -n "${OUT:-}" ] || { echo 'run: $OUT is not set (this half runs on the device machine)' >&2; exit 2; }
  [ -f dist/bench.mjs ] && [ -f .device/run.sh ] || { echo 'run: dist/bench.mjs or .device/ missing: run "prepare" here and carry both' >&2; exit 2; }
  set +e
  # shellcheck disable=SC2086
  bash .device/run.sh node dist/bench.mjs --out "$OUT/bench.json" --budget-s "${BENCH_BUDGET_S:-420}" --stock-step ${BENCH_ARGS:-} \
    > "$OUT/bench.stdout" 2> >(tee "$OUT/bench.log" >&2)
  rc=$?
  echo "bench exit status $rc; results in \$OUT/bench.json"
  exit $rc
  ;;
*)
  echo "usage: bash scripts/device-bench.sh prepare|run" >&2
  exit 2
  ;;
esac
