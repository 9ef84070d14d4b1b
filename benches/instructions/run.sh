#!/usr/bin/env bash
# Instructions per request of a postern binary, counted by valgrind's callgrind: the same
# figure on every run of the same binary, whatever else the machine is doing, so two
# builds can be compared on a busy machine where rates drift by 20-30 %.
#
#   benches/instructions/run.sh target/release/postern [N] [EXTRA_TOML]
#
# It seeds 100 accounts by first login, then starts the daemon under callgrind five
# times: idle, N policy requests (one persistent connection), N userdb lookups (a new
# connection each), and the 100 accounts' first SASL logins alone and followed by N warm
# ones (one persistent connection). It prints (total - idle) / N for policy and userdb,
# and the difference of the two SASL runs over N for a warm SASL login. argon2 runs at
# its lowest cost here: a warm login does not hash, and the first ones would otherwise
# take minutes under callgrind. EXTRA_TOML is appended to the [registration] table (a
# build without the creation limits' keys needs none).
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
[argon2]
memory_kib = 64
iterations = 1
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
for phase in idle policy userdb sasl_first sasl; do
  rm -f "$out"/*.sock
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$phase" \
    "$bin" -c "$out/postern.toml" serve 2>"$out/log" &
  pid=$!
  wait_for "$out/dict.sock"
  case $phase in
    policy) python3 "$here/client.py" policy "$out/policy.sock" "$n" ;;
    userdb) python3 "$here/client.py" userdb "$out/dict.sock" "$n" ;;
    sasl_first) python3 "$here/client.py" sasl "$out/auth.sock" 100 ;;
    sasl) python3 "$here/client.py" sasl "$out/auth.sock" $((n + 100)) ;;
  esac
  kill "$pid"; wait "$pid" || true
  total[$phase]=$(awk '/^summary:/ { print $2 }' "$out/cg.$phase")
done
for phase in policy userdb; do
  echo "$phase: $(( (total[$phase] - total[idle]) / n )) instructions per request ($n requests)"
done
echo "sasl: $(( (total[sasl] - total[sasl_first]) / n )) instructions per warm login ($n logins)"
