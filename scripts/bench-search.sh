#!/usr/bin/env bash
# SEARCH / SORT / THREAD latency on large mailboxes and POP3 download throughput, Hermes beside
# Dovecot (../shared/peers) in the same run (issue 3, points 6 and 9). Not a test: it measures
# and prints a table (docs/performance.md, "Search, sort and thread", explains the method).
#
#   scripts/bench-search.sh                          # 10,000 and 100,000 messages, POP3 1,000
#   SIZES=10000,50000 POP=1000 scripts/bench-search.sh
#   KEEP=1 DATA=/tmp/hermes-search-bench scripts/bench-search.sh   # reuse a filled Hermes folder
#
# Mailboxes: Hermes u1.., Dovecot u$((DOVECOT_BASE+1)).. (default u97..u99, away from the u1..u100
# that scripts/bench.sh's loadgen touches most). A mailbox that already holds enough messages is
# not filled again, so a second run only measures. Output: target/bench/search.{log,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SIZES=${SIZES:-10000,100000}
POP=${POP:-1000}
RUNS=${RUNS:-5}
FILL_SESSIONS=${FILL_SESSIONS:-4}
DOVECOT_BASE=${DOVECOT_BASE:-96}
PEERS=${PEERS:-$ROOT/../shared/peers}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/bench
mkdir -p "$OUT"

echo "== building release binaries"
cargo build --release -p hermes 2>&1 | tail -n 2
cargo build --release -p hermes-svc-store --example search_bench 2>&1 | tail -n 2
HERMES=$TARGET/release/hermes
BENCH=$TARGET/release/examples/search_bench

DATA=${DATA:-$(mktemp -d /tmp/hermes-search-bench.XXXXXX)}
KEEP=${KEEP:-0}
HPID=
cleanup() {
  if [ -n "$HPID" ] && kill -0 "$HPID" 2>/dev/null; then
    kill -TERM "$HPID"; wait "$HPID" 2>/dev/null || true
  fi
  [ "$KEEP" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT

if [ ! -f "$DATA/config/hermes.toml" ]; then
  mkdir -p "$DATA/config"
  cat >"$DATA/config/hermes.toml" <<EOF
[server]
listen = "127.0.0.1"
[imap]
port = 0
tls_port = 0
plaintext_auth_on_loopback = true
[pop3]
port = 0
tls_port = 0
plaintext_auth_on_loopback = true
[lmtp]
port = 0
EOF
  "$HERMES" domain add example.org --data "$DATA" >/dev/null
  for i in 1 2 3 4 5; do
    echo pass | "$HERMES" account add "u$i@example.org" --password-stdin --data "$DATA" >/dev/null
    "$HERMES" account quota "u$i@example.org" 100G --data "$DATA" >/dev/null 2>&1 || true
  done
fi

start_hermes() {
  rm -f "$DATA/run/endpoints.json"
  "$HERMES" up --data "$DATA" >"$OUT/search-hermes-stdout.log" 2>"$OUT/search-hermes-stderr.log" &
  HPID=$!
  for _ in $(seq 600); do
    grep -q '^hermes: ready' "$OUT/search-hermes-stdout.log" 2>/dev/null && [ -f "$DATA/run/endpoints.json" ] && break
    kill -0 "$HPID" || { cat "$OUT/search-hermes-stdout.log" "$OUT/search-hermes-stderr.log"; exit 1; }
    sleep 0.1
  done
  ep() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DATA/run/endpoints.json" "$1"; }
  H_IMAP=$(ep imap); H_LMTP=$(ep lmtp); H_POP3=$(ep pop3)
  echo "hermes: imap $H_IMAP lmtp $H_LMTP pop3 $H_POP3 (data $DATA)"
}
stop_hermes() {
  kill -TERM "$HPID"; wait "$HPID" 2>/dev/null || true; HPID=
}

echo "== starting hermes up"
start_hermes
echo "== the Dovecot peer"
if ! ss -ltn | grep -q '127.0.0.1:20143 '; then "$PEERS/start.sh"; fi

H_SPEC() { echo "hermes,$H_IMAP,$H_LMTP,$H_POP3,u{n}@example.org,u{n}@example.org,0"; }
D_SPEC="dovecot,127.0.0.1:20143,127.0.0.1:20024,127.0.0.1:20110,u{n},u{n}@example.test,$DOVECOT_BASE"

echo "== fill (both servers at once) and the cold-index run"
"$BENCH" --sizes "$SIZES" --pop "$POP" --runs "$RUNS" --fill-sessions "$FILL_SESSIONS" --password pass \
  --server "$(H_SPEC)" --server "$D_SPEC" | tee "$OUT/search-fill.log"

echo "== restart hermes (the index is loaded from disk, not rebuilt), then the measured run"
stop_hermes
start_hermes
"$BENCH" --sizes "$SIZES" --pop "$POP" --runs "$RUNS" --fill-sessions "$FILL_SESSIONS" --password pass \
  --server "$(H_SPEC)" --server "$D_SPEC" | tee "$OUT/search.log"

python3 - "$OUT/search.log" "$OUT/search.md" <<'EOF'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"server"')]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["messages"], r["op"])][r["server"]] = r
out = ["| messages | operation | Hermes cold ms | Hermes warm ms | Dovecot cold ms | Dovecot warm ms | warm ratio (Dovecot/Hermes) |",
       "|---|---|---|---|---|---|---|"]
f = lambda x: "" if x is None else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")
for (n, op), s in by.items():
    h, d = s.get("hermes", {}), s.get("dovecot", {})
    if op.startswith("POP3"):
        hm, dm = h.get("cold_ms"), d.get("cold_ms")
        ratio = f"{hm / dm:.2f}x (MB/s)" if hm and dm else ""
        out.append(f"| {n} | POP3 RETR all: MB/s, msgs/s | {f(hm)} MB/s | {f(h.get('warm_ms'))} msgs/s | {f(dm)} MB/s | {f(d.get('warm_ms'))} msgs/s | {ratio} |")
        continue
    hw, dw = h.get("warm_ms"), d.get("warm_ms")
    hc, dc = h.get("cold_ms"), d.get("cold_ms")
    if hw is not None and dw is not None:
        ratio = f"{dw / hw:.1f}x"
    elif hc and dc:
        ratio = f"{dc / hc:.1f}x (cold)"
    else:
        ratio = ""
    out.append(f"| {n} | {op} | {f(hc)} | {f(hw)} | {f(dc)} | {f(dw)} | {ratio} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
