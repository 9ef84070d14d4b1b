#!/usr/bin/env bash
# Instructions per request of a postern binary, counted by valgrind's callgrind: the same
# figure on every run of the same binary, whatever else the machine is doing, so two
# builds can be compared on a busy machine where rates drift by 20-30 %.
#
#   benches/instructions/run.sh target/release/postern [N] [EXTRA_TOML]
#
# It seeds 100 accounts by first login, then starts the daemon under callgrind three
# times: idle, N policy requests (one persistent connection) and N userdb lookups (a new
# connection each), and prints (total - idle) / N for each. EXTRA_TOML is appended to the
# [registration] table (a build without the creation limits' keys needs none).
set -euo pipefail
bin=$(realpath "$1")
n=${2:-20000}
extra=${3-$'jit_per_minute = 0\nmax_new_per_hour = 0'}
here=$(dirname "$(realpath "$0")")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cat >"$out/postern.toml" <<T
domains = ["example.org"]
[database]
path = "$out/postern.db"
[listen]
dict = "$out/dict.sock"
auth = "$out/auth.sock"
policy = "$out/policy.sock"
[registration]
mode = "open"
$extra
[policy]
send_per_minute = 0
[log]
level = "warn"
target = "stderr"
T

wait_for() {
  for _ in $(seq 1 600); do
    python3 -c "import socket; socket.socket(socket.AF_UNIX).connect('$1')" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "postern did not start: $(tail -3 "$out/log")" >&2
  exit 1
}

"$bin" -c "$out/postern.toml" serve 2>"$out/log" &
pid=$!
wait_for "$out/dict.sock"
python3 "$here/client.py" jit "$out/dict.sock" 100
kill "$pid"; wait "$pid" || true

declare -A total
for phase in idle policy userdb; do
  rm -f "$out"/*.sock
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$phase" \
    "$bin" -c "$out/postern.toml" serve 2>"$out/log" &
  pid=$!
  wait_for "$out/dict.sock"
  case $phase in
    policy) python3 "$here/client.py" policy "$out/policy.sock" "$n" ;;
    userdb) python3 "$here/client.py" userdb "$out/dict.sock" "$n" ;;
  esac
  kill "$pid"; wait "$pid" || true
  total[$phase]=$(awk '/^summary:/ { print $2 }' "$out/cg.$phase")
done
for phase in policy userdb; do
  echo "$phase: $(( (total[$phase] - total[idle]) / n )) instructions per request ($n requests)"
done
