#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time, FUZZ_JOBS at
# a time. Fails on any crash or broken invariant, leaving the input in
# fuzz/artifacts/<target>/; prints the executions per target and in all.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_JOBS      targets run side by side (default: the number of CPUs)
#   FUZZ_TARGETS   space-separated subset (default: every target)
#   FUZZ_SANITIZER none (default: the crate forbids unsafe code) or address
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-$(nproc)}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

targets="${FUZZ_TARGETS:-$(cd fuzz && cargo +nightly fuzz list)}"
echo "fuzz: building ($(cargo +nightly --version))"
started=$(date +%s)
(cd fuzz && cargo +nightly fuzz build --sanitizer "$sanitizer" --debug-assertions </dev/null)
echo "fuzz: built in $(($(date +%s) - started)) s; $seconds s per target, $jobs at a time"

host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="fuzz/target/$host/release"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

run() {
  local target="$1"
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  local seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  if "$bin/$target" "fuzz/corpus/$target" "${seeds[@]}" \
    -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" \
    </dev/null >"$logs/$target.log" 2>&1; then
    echo ok >"$logs/$target.status"
  else
    echo failed >"$logs/$target.status"
  fi
}

running=0
for target in $targets; do
  run "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=0
total=0
for target in $targets; do
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -1)"
  runs="${runs:-0}"
  total=$((total + runs))
  if [ "$(cat "$logs/$target.status" 2>/dev/null)" = ok ]; then
    printf 'fuzz: %-14s ok      %10d executions\n' "$target" "$runs"
  else
    failed=1
    printf 'fuzz: %-14s FAILED  %10d executions\n' "$target" "$runs"
    grep -E 'panicked|ERROR|Test unit written|SUMMARY' "$logs/$target.log" | head -20 || true
    echo "fuzz: reproduce with: (cd fuzz && cargo +nightly fuzz run $target artifacts/$target/<file>)"
  fi
done
echo "fuzz: $total executions in all, $(($(date +%s) - started)) s"
exit "$failed"
