#!/bin/sh
# The runs behind docs/performance.md: the load tool at 100 000 and 1 000 000 accounts on
# SQLite, at 100 000 on PostgreSQL (a server of its own), and the metrics listener on and
# off, 4 client threads, the plots next to the tables. Needs root, Dovecot 2.3
# (dovecot-core, dovecot-imapd) and PostgreSQL (Debian's postgresql) for every phase;
# without them those phases are left out.
#
#   sh benches/performance.sh            # writes target/load/*.md, *.svg, uptime.txt
set -eu
cd "$(dirname "$0")/.."
out=target/load
mkdir -p "$out"
cargo bench --bench load --no-run
load() { cargo bench --bench load -- "$@"; }
uptime | tee "$out/uptime.txt"
load --accounts 100000 --seconds 5 --clients 4 --sweep 1,2,4,8,16 \
    --plot "$out/sqlite-100k.svg" | tee "$out/sqlite-100k.md"
uptime | tee -a "$out/uptime.txt"
load --accounts 1000000 --seconds 5 --clients 4 \
    --only userdb,warm,policy,sasl,get_new,admin \
    --plot "$out/sqlite-1m.svg" | tee "$out/sqlite-1m.md"
uptime | tee -a "$out/uptime.txt"
load --postgres --accounts 100000 --seconds 5 --clients 4 \
    --only userdb,warm,cold,policy,sasl,get_new,post_new,admin,imap \
    | tee "$out/postgres-100k.md"
uptime | tee -a "$out/uptime.txt"
# The spread: the socket phases on both backends and the Dovecot phases twice more.
for run in 1 2; do
    load --postgres --accounts 100000 --seconds 5 --clients 4 \
        --only userdb,warm,policy,sasl | tee "$out/postgres-rep-$run.md"
    load --accounts 100000 --seconds 5 --clients 4 \
        --only userdb,warm,policy,sasl,get_new | tee "$out/sqlite-rep-$run.md"
    load --accounts 100000 --seconds 5 --clients 4 \
        --only imap,imap_new,cold | tee "$out/imap-rep-$run.md"
done
uptime | tee -a "$out/uptime.txt"
for run in 1 2; do
    load --accounts 100000 --seconds 5 --clients 4 --only userdb,policy \
        | tee "$out/metrics-off-$run.md"
    load --accounts 100000 --seconds 5 --clients 4 --only userdb,policy --metrics \
        | tee "$out/metrics-on-$run.md"
done
uptime | tee -a "$out/uptime.txt"
