#!/usr/bin/env bash
# Side-by-side benchmark of the router (issue 4 point 10): Hermes (SMTP -> queue -> LMTP -> store)
# against Postfix -> Dovecot LMTP (../shared/peers), same workload, same run. Not a test: it
# measures and prints a table (docs/performance.md, "Router", explains the method).
#
#   scripts/bench-router.sh                         # defaults below
#   SESSIONS=20 MESSAGES=3000 SIZE=4096 USERS=20 SINK_PORT=20026 BUILD=1 scripts/bench-router.sh
#
# Phases, each Hermes then the peer:
#   1. end to end: MESSAGES messages over SESSIONS SMTP sessions to uN@domain; delivered when IMAP
#      STATUS of the recipients' INBOXes has counted every accepted copy;
#   2. acceptance into the queue alone: Postfix with MODE=discard (queue, then the discard agent)
#      against the router relaying to a discard sink (Postfix's smtp-sink) through a route: both
#      queue with fsync and then throw the mail away; the router's sink costs it an SMTP hop more.
# Output: a table on stdout, target/bench/router.md and target/bench/router-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SESSIONS=${SESSIONS:-20}
MESSAGES=${MESSAGES:-3000}
SIZE=${SIZE:-4096}
USERS=${USERS:-20}
SINK_PORT=${SINK_PORT:-20026}
PEERS=${PEERS:-$ROOT/../shared/peers}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/bench
mkdir -p "$OUT"

if [ "${BUILD:-1}" = 1 ]; then  # BUILD=0: use the release binaries already built
  echo "== building release binaries"
  cargo build --release -p hermes -p hermes-loadgen 2>&1 | tail -n 3
fi
HERMES=$TARGET/release/hermes
LOADGEN=$TARGET/release/hermes-loadgen
ulimit -n 65536 2>/dev/null || true

DATA=$(mktemp -d /tmp/hermes-bench-router.XXXXXX)
HPID=
SINKPID=
cleanup() {
  if [ -n "$HPID" ] && kill -0 "$HPID" 2>/dev/null; then kill -TERM "$HPID"; wait "$HPID" 2>/dev/null || true; fi
  if [ -n "$SINKPID" ] && kill -0 "$SINKPID" 2>/dev/null; then kill "$SINKPID"; wait "$SINKPID" 2>/dev/null || true; fi
  # Leave the peers in their default (lmtp) mode for the next user.
  MODE=lmtp "$PEERS/setup-postfix.sh" >/dev/null 2>&1 && postfix -c "${PEERS_DIR:-/tmp/hermes-peers}/postfix/etc" reload >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

mkdir -p "$DATA/config"
cat >"$DATA/config/hermes.toml" <<EOF
[server]
listen = "127.0.0.1"
hostname = "bench.example.org"
[imap]
port = 0
tls_port = 0
plaintext_auth_on_loopback = true
[lmtp]
port = 0
[pop3]
port = 0
tls_port = 0
[limits]
max_connections = 20000
max_connections_per_ip = 20000
max_sessions_per_user = 1000
[router]
smtp_port = 0
submission_port = 0
submissions_port = 0
max_connections_per_ip = 1000
[[router.routes]]
domain = "sink.test"
hosts = ["127.0.0.1:$SINK_PORT"]
tls = "none"
verify_recipients = false
EOF

echo "== accounts u1..u$USERS@example.test (one argon2id hash, imported)"
"$HERMES" domain add example.test --data "$DATA" >/dev/null
echo pass | "$HERMES" account add u1@example.test --password-stdin --data "$DATA" >/dev/null
HASH=$(python3 - "$DATA" <<'EOF'
import json, pathlib, sys
for f in pathlib.Path(sys.argv[1], "directory").rglob("u1.json"):
    rec = json.loads(f.read_text())
    print(next(v for v in rec.values() if isinstance(v, str) and v.startswith("$argon2id$")))
EOF
)
[ -n "$HASH" ] || { echo "no argon2id hash found for u1"; exit 1; }
for i in $(seq 2 "$USERS"); do printf 'u%d@example.test\t%s\n' "$i" "$HASH"; done >"$DATA/import.tsv"
[ "$USERS" -lt 2 ] || "$HERMES" account import "$DATA/import.tsv" --data "$DATA" >/dev/null

echo "== starting hermes up"
"$HERMES" up --data "$DATA" >"$OUT/router-hermes-stdout.log" 2>"$OUT/router-hermes-stderr.log" &
HPID=$!
for _ in $(seq 300); do
  grep -q '^hermes: ready' "$OUT/router-hermes-stdout.log" 2>/dev/null && [ -f "$DATA/run/endpoints.json" ] && break
  kill -0 "$HPID" || { cat "$OUT/router-hermes-stdout.log" "$OUT/router-hermes-stderr.log"; exit 1; }
  sleep 0.1
done
ep() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DATA/run/endpoints.json" "$1"; }
H_IMAP=$(ep imap); H_SMTP=$(ep smtp)
echo "hermes: smtp $H_SMTP imap $H_IMAP"

echo "== starting the peers (Postfix -> Dovecot LMTP)"
if ! ss -ltn | grep -q '127.0.0.1:20143 ' || ! ss -ltn | grep -q '127.0.0.1:20025 '; then "$PEERS/start.sh"; fi
MODE=lmtp "$PEERS/setup-postfix.sh" >/dev/null && postfix -c "${PEERS_DIR:-/tmp/hermes-peers}/postfix/etc" reload >/dev/null 2>&1
sleep 1
P_SMTP=127.0.0.1:20025; D_IMAP=127.0.0.1:20143

common=(--smtp-sessions "$SESSIONS" --messages "$MESSAGES" --message-size "$SIZE" --user-count "$USERS" --password pass)
run() { # name args...
  local name=$1; shift
  echo "-- $name"
  "$LOADGEN" --json "${common[@]}" "$@" >"$OUT/router-$name.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"   accepted {r['accepted']} ({r['accepted_per_sec']:.1f}/s, p50 {r['accept_p50_ms']:.1f} ms), delivered {r['delivered']} ({r['delivered_per_sec'] or 0:.1f}/s end to end), errors {r['errors']}\")" "$OUT/router-$name.json"
}

echo "== end to end: $MESSAGES messages of $SIZE bytes, $SESSIONS sessions, one recipient each (u1..u$USERS)"
run hermes-e2e  --smtp "$H_SMTP" --rcpt-pattern 'u{n}@example.test' --verify-imap "$H_IMAP" --user-pattern 'u{n}@example.test'
run postfix-e2e --smtp "$P_SMTP" --rcpt-pattern 'u{n}@example.test' --verify-imap "$D_IMAP" --user-pattern 'u{n}'

echo "== acceptance into the queue alone (Postfix MODE=discard; the router relaying to smtp-sink)"
smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 1000 >"$OUT/router-sink.log" 2>&1 &
SINKPID=$!
MODE=discard "$PEERS/setup-postfix.sh" >/dev/null && postfix -c "${PEERS_DIR:-/tmp/hermes-peers}/postfix/etc" reload >/dev/null 2>&1
sleep 1
run hermes-accept  --smtp "$H_SMTP" --rcpt-pattern 'u{n}@sink.test'
run postfix-accept --smtp "$P_SMTP" --rcpt-pattern 'u{n}@example.test'
# Let the router drain its queue into the sink before stopping (not measured).
for _ in $(seq 600); do "$HERMES" queue list --data "$DATA" 2>/dev/null | grep -q 'queue is empty' && break; sleep 0.1; done

python3 - "$OUT" "$SESSIONS" "$MESSAGES" "$SIZE" <<'EOF'
import json, pathlib, sys, datetime, os
out = pathlib.Path(sys.argv[1]); sessions, messages, size = sys.argv[2:5]
j = lambda n: json.loads((out / f"router-{n}.json").read_text())
he, pe, ha, pa = j("hermes-e2e"), j("postfix-e2e"), j("hermes-accept"), j("postfix-accept")
ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "n/a"
rows = [
    ("end to end msgs/s (SMTP -> queue -> LMTP -> store)", f"{he['delivered_per_sec']:.0f}", f"{pe['delivered_per_sec']:.0f}",
     ratio(he['delivered_per_sec'], pe['delivered_per_sec'])),
    ("  accepted msgs/s during that run", f"{he['accepted_per_sec']:.0f}", f"{pe['accepted_per_sec']:.0f}",
     ratio(he['accepted_per_sec'], pe['accepted_per_sec'])),
    ("  SMTP p50 / p99 ms per message", f"{he['accept_p50_ms']:.1f} / {he['accept_p99_ms']:.1f}",
     f"{pe['accept_p50_ms']:.1f} / {pe['accept_p99_ms']:.1f}", ""),
    ("  delivered / accepted, errors", f"{he['delivered']}/{he['accepted']}, {he['errors']}",
     f"{pe['delivered']}/{pe['accepted']}, {pe['errors']}", ""),
    ("acceptance into the queue alone msgs/s", f"{ha['accepted_per_sec']:.0f}", f"{pa['accepted_per_sec']:.0f}",
     ratio(ha['accepted_per_sec'], pa['accepted_per_sec'])),
    ("  SMTP p50 / p99 ms per message", f"{ha['accept_p50_ms']:.1f} / {ha['accept_p99_ms']:.1f}",
     f"{pa['accept_p50_ms']:.1f} / {pa['accept_p99_ms']:.1f}", ""),
]
md = [f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; "
      f"{messages} messages of {size} bytes over {sessions} SMTP sessions per phase.", "",
      "| metric | Hermes router | Postfix -> Dovecot | Hermes/Postfix |", "|---|---|---|---|"]
md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
(out / "router.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
EOF
