#!/usr/bin/env bash
# Side-by-side benchmark: Hermes vs Dovecot (../shared/peers) on the same workload in the same run.
# Not a test: it measures and prints a table (docs/performance.md explains the method).
#
#   scripts/bench.sh                      # defaults below
#   CLIENTS=20 LMTP_CLIENTS=20 DURATION=20 IDLE=5000 scripts/bench.sh
#
# Output: a table on stdout, and target/bench/results.json + target/bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLIENTS=${CLIENTS:-20}          # concurrent IMAP sessions (each loops login..logout)
LMTP_CLIENTS=${LMTP_CLIENTS:-20} # concurrent LMTP sessions
DURATION=${DURATION:-20}        # seconds per measured phase
PREFILL=${PREFILL:-10}          # messages appended to each INBOX before the IMAP phase
IDLE=${IDLE:-5000}              # idle IDLE connections for the memory measurement
IDLE_CONCURRENCY=${IDLE_CONCURRENCY:-4} # logins in flight while opening them (see docs/performance.md)
USERS=${USERS:-100}
PEERS=${PEERS:-$ROOT/../shared/peers}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/bench
mkdir -p "$OUT"

echo "== building release binaries"
cargo build --release -p hermes -p hermes-loadgen 2>&1 | tail -n 3
HERMES=$TARGET/release/hermes
LOADGEN=$TARGET/release/hermes-loadgen

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files limit: $(ulimit -n)"

DATA=$(mktemp -d /tmp/hermes-bench.XXXXXX)
HPID=
cleanup() {
  if [ -n "$HPID" ] && kill -0 "$HPID" 2>/dev/null; then
    kill -TERM "$HPID"; wait "$HPID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

mkdir -p "$DATA/config"
cat >"$DATA/config/hermes.toml" <<EOF
[server]
listen = "127.0.0.1"
[imap]
port = 0
tls_port = 0
plaintext_auth_on_loopback = true
[lmtp]
port = 0
[limits]
# 5,000 IDLE connections over $USERS users, all from 127.0.0.1
max_sessions_per_user = 1000
max_connections_per_ip = 20000
max_connections = 20000
EOF

echo "== accounts u1..u$USERS@example.org (one argon2id hash, imported)"
"$HERMES" domain add example.org --data "$DATA" >/dev/null
echo pass | "$HERMES" account add u1@example.org --password-stdin --data "$DATA" >/dev/null
HASH=$(python3 - "$DATA" <<'EOF'
import json, pathlib, sys
for f in pathlib.Path(sys.argv[1], "directory").rglob("u1.json"):
    rec = json.loads(f.read_text())
    print(next(v for v in rec.values() if isinstance(v, str) and v.startswith("$argon2id$")))
EOF
)
[ -n "$HASH" ] || { echo "no argon2id hash found for u1"; exit 1; }
for i in $(seq 2 "$USERS"); do printf 'u%d@example.org\t%s\n' "$i" "$HASH"; done >"$DATA/import.tsv"
"$HERMES" account import "$DATA/import.tsv" --data "$DATA" >/dev/null

echo "== starting hermes up"
"$HERMES" up --data "$DATA" >"$OUT/hermes-stdout.log" 2>"$OUT/hermes-stderr.log" &
HPID=$!
for _ in $(seq 300); do
  grep -q '^hermes: ready' "$OUT/hermes-stdout.log" 2>/dev/null && [ -f "$DATA/run/endpoints.json" ] && break
  kill -0 "$HPID" || { cat "$OUT/hermes-stdout.log" "$OUT/hermes-stderr.log"; exit 1; }
  sleep 0.1
done
ep() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DATA/run/endpoints.json" "$1"; }
H_IMAP=$(ep imap); H_LMTP=$(ep lmtp)
STORE_PID=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$DATA/run/endpoints.d/store.json")
echo "hermes: imap $H_IMAP lmtp $H_LMTP store pid $STORE_PID"

echo "== starting the Dovecot peer"
if ! ss -ltn | grep -q '127.0.0.1:20143 '; then "$PEERS/start.sh"; fi
D_IMAP=127.0.0.1:20143; D_LMTP=127.0.0.1:20024

run() { # name args...
  local name=$1; shift
  echo "-- $name"
  "$LOADGEN" --json "$@" >"$OUT/$name.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); s=r.get('imap') or r.get('lmtp'); print(f\"   {s['ops_per_sec']:.1f} ops/s, {s['sessions_per_sec']:.1f} sessions|msgs/s, p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, errors {s['errors']}\")" "$OUT/$name.json"
}

echo "== IMAP: $CLIENTS clients x ${DURATION}s (login, select, fetch flags, fetch body, store, append 10 KB, expunge, logout)"
run hermes-imap  --imap "$H_IMAP" --user-pattern 'u{n}@example.org' --user-count "$USERS" --clients "$CLIENTS" --duration "$DURATION" --prefill "$PREFILL"
run dovecot-imap --imap "$D_IMAP" --user-pattern 'u{n}' --user-count "$USERS" --clients "$CLIENTS" --duration "$DURATION" --prefill "$PREFILL"
echo "== LMTP: $LMTP_CLIENTS clients x ${DURATION}s, 10 KB messages, one recipient each"
run hermes-lmtp  --lmtp "$H_LMTP" --rcpt-pattern 'u{n}@example.org' --user-count "$USERS" --lmtp-clients "$LMTP_CLIENTS" --duration "$DURATION"
run dovecot-lmtp --lmtp "$D_LMTP" --rcpt-pattern 'u{n}@example.test' --user-count "$USERS" --lmtp-clients "$LMTP_CLIENTS" --duration "$DURATION"

echo "== IDLE: $IDLE connections to Hermes (store VmRSS before/after)"
"$LOADGEN" --json --imap "$H_IMAP" --user-pattern 'u{n}@example.org' --user-count "$USERS" \
  --idle "$IDLE" --idle-concurrency "$IDLE_CONCURRENCY" --rss-pid "$STORE_PID" --hold 3 >"$OUT/hermes-idle.json" || true
cat "$OUT/hermes-idle.json"

python3 - "$OUT" "$CLIENTS" "$LMTP_CLIENTS" "$DURATION" "$IDLE" <<'EOF'
import json, pathlib, sys, datetime, os
out = pathlib.Path(sys.argv[1]); clients, lmtp_clients, duration, idle = sys.argv[2:6]
j = lambda n: json.loads((out / f"{n}.json").read_text())
hi, di, hl, dl = j("hermes-imap")["imap"], j("dovecot-imap")["imap"], j("hermes-lmtp")["lmtp"], j("dovecot-lmtp")["lmtp"]
try:
    idle_r = j("hermes-idle")
except Exception:
    idle_r = {}
ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
rows = [
    ("IMAP ops/s", f"{hi['ops_per_sec']:.0f}", f"{di['ops_per_sec']:.0f}", ratio(hi['ops_per_sec'], di['ops_per_sec'])),
    ("IMAP sessions/s (full loop)", f"{hi['sessions_per_sec']:.1f}", f"{di['sessions_per_sec']:.1f}", ratio(hi['sessions_per_sec'], di['sessions_per_sec'])),
    ("IMAP p50 / p99 ms (per command)", f"{hi['p50_ms']:.2f} / {hi['p99_ms']:.2f}", f"{di['p50_ms']:.2f} / {di['p99_ms']:.2f}", ""),
    ("IMAP errors", str(hi['errors']), str(di['errors']), ""),
    ("LMTP msgs/s (10 KB)", f"{hl['sessions_per_sec']:.0f}", f"{dl['sessions_per_sec']:.0f}", ratio(hl['sessions_per_sec'], dl['sessions_per_sec'])),
    ("LMTP p50 / p99 ms", f"{hl['p50_ms']:.2f} / {hl['p99_ms']:.2f}", f"{dl['p50_ms']:.2f} / {dl['p99_ms']:.2f}", ""),
    ("LMTP errors", str(hl['errors']), str(dl['errors']), ""),
    (f"RSS per IDLE connection ({idle_r.get('idling', 0)}/{idle} idling)",
     f"{idle_r['rss_per_connection_kib']:.1f} KiB" if idle_r.get("rss_per_connection_kib") is not None else "failed",
     "not measured", ""),
]
per_op = lambda s: ", ".join(f"{o['op']} {o['p50_ms']:.2f}/{o['p99_ms']:.2f}" for o in s["per_op"])
md = [f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; "
      f"IMAP {clients} clients, LMTP {lmtp_clients} clients, {duration} s per phase.", "",
      "| metric | Hermes | Dovecot | Hermes/Dovecot |", "|---|---|---|---|"]
md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
md += ["", f"Per-command p50/p99 ms, Hermes: {per_op(hi)}", "", f"Per-command p50/p99 ms, Dovecot: {per_op(di)}",
       "", f"IDLE: {json.dumps(idle_r)}"]
(out / "results.md").write_text("\n".join(md) + "\n")
(out / "results.json").write_text(json.dumps({"hermes_imap": hi, "dovecot_imap": di, "hermes_lmtp": hl,
                                              "dovecot_lmtp": dl, "hermes_idle": idle_r}, indent=1))
w = [max(len(r[i]) for r in rows + [("metric", "Hermes", "Dovecot", "ratio")]) for i in range(4)]
print()
for r in [("metric", "Hermes", "Dovecot", "ratio")] + rows:
    print("  ".join(x.ljust(w[i]) for i, x in enumerate(r)))
print(f"\n(written to {out}/results.md)")
EOF
