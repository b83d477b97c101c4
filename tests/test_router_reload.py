"""Live reload and counters of the router, over its real control socket `run/router.sock`.

- `{"op":"stats"}`: cumulative counters move with real SMTP traffic (accepted, delivered,
  rejected, auth_failed) and `queue_size` is reported.
- `{"op":"reload"}`: an invalid `hermes.toml` is refused with its errors and changes nothing;
  a valid one is applied live (relay networks, limits) without dropping an open SMTP session;
  a changed listen port is reported in `restart_needed` and not applied.
- SIGHUP to the router process reloads too.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket

from hermes_testlib import DEFAULT_CONFIG, merge_config, to_toml, wait_for
from router_fixtures import *  # noqa: F401,F403
from router_fixtures import ALICE, no_verify, smtp, unique, wait_in_inbox


def control(h, req: dict) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(h.data / "run" / "router.sock"))
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf)
    finally:
        s.close()


def write_config(h, override: dict) -> None:
    (h.data / "config" / "hermes.toml").write_text(to_toml(merge_config(DEFAULT_CONFIG, override)))


def stats(h) -> dict:
    r = control(h, {"op": "stats"})
    assert r["ok"], r
    return r["stats"]


def rcpt_code(c: smtplib.SMTP, address: str) -> int:
    c.ehlo_or_helo_if_needed()
    c.mail("sender@remote.example")
    code, _ = c.rcpt(address)
    c.rset()
    return code


def test_stats_count_real_traffic(router):
    h = router
    s0 = stats(h)
    assert set(s0) == {"started_at", "accepted", "rejected", "delivered", "deferred", "bounced", "queue_size", "auth_failed"}
    assert abs(s0["started_at"] - __import__("time").time()) < 3600
    marker = unique("stats").encode()
    c = smtp(h)
    try:
        assert c.sendmail("sender@remote.example", [ALICE], b"Subject: " + marker + b"\r\n\r\nhi\r\n") == {}
        assert rcpt_code(c, "nobody-here@example.org") == 550
        assert rcpt_code(c, "someone@elsewhere.example") == 554
    finally:
        c.quit()
    wait_in_inbox(h, ALICE, marker)
    c2 = smtp(h, "submission")
    try:
        c2.starttls(context=no_verify())
        c2.ehlo()
        c2.user, c2.password = ALICE, "wrong password"
        try:
            c2.auth("PLAIN", c2.auth_plain)
            raise AssertionError("AUTH with a wrong password succeeded")
        except smtplib.SMTPAuthenticationError:
            pass
    finally:
        c2.close()
    s = wait_for(lambda: (lambda s: s if s["delivered"] >= s0["delivered"] + 1 else None)(stats(h)), 30,
                 what="delivered counter")
    assert s["accepted"] == s0["accepted"] + 1, (s0, s)
    assert s["rejected"] == s0["rejected"] + 2, (s0, s)
    assert s["auth_failed"] == s0["auth_failed"] + 1, (s0, s)
    assert s["started_at"] == s0["started_at"]
    assert s["queue_size"] >= 0


def test_reload_applies_live_and_refuses_invalid(hermes_factory):
    h = hermes_factory()
    outside = "friend@elsewhere.example"
    # A session opened before any reload must survive all of them.
    held = smtp(h)
    held.ehlo("held.example")
    c = smtp(h)
    try:
        assert rcpt_code(c, outside) == 554, "no relay for loopback by default"
    finally:
        c.quit()

    # Invalid: refused with its errors; nothing changes.
    (h.data / "config" / "hermes.toml").write_text('[router]\nrelay_networks = ["10.0.0.0/33"]\nbogus = 1\n')
    r = control(h, {"op": "reload"})
    assert r["ok"] is False, r
    assert r["errors"] and any("relay_networks" in e or "bogus" in e for e in r["errors"]), r
    assert "applied" not in r

    # Valid: loopback becomes a relay network, fewer recipients per message, a new SMTP port.
    port = h.endpoints["smtp"].rsplit(":", 1)[1]
    write_config(h, {"router": {"smtp_port": int(port) + 1 if int(port) < 65000 else int(port) - 1,
                                "submission_port": 0, "submissions_port": 0,
                                "relay_networks": ["127.0.0.0/8"], "max_recipients_mx": 2}})
    r = control(h, {"op": "reload"})
    assert r["ok"] is True, r
    assert "router.relay_networks" in r["applied"] and "router.max_recipients_mx" in r["applied"], r
    assert "tls.certificate" in r["applied"], r
    assert r["restart_needed"] == ["router.smtp_port"], r
    c = smtp(h)  # still on the old port: a port change needs a restart
    try:
        assert rcpt_code(c, outside) == 250, "relay_networks applied live"
        c.ehlo_or_helo_if_needed()
        c.mail("sender@remote.example")
        assert c.rcpt(ALICE)[0] == 250 and c.rcpt("bob@example.org")[0] == 250
        code, text = c.rcpt("carol@example.org")
        assert (code, text[:5]) == (452, b"4.5.3"), (code, text)
        c.rset()
    finally:
        c.quit()
    # The session opened before the reloads still works (with its own, earlier, settings).
    assert held.noop()[0] == 250
    marker = unique("held").encode()
    assert held.sendmail("sender@remote.example", [ALICE], b"Subject: " + marker + b"\r\n\r\nx\r\n") == {}
    held.quit()
    wait_in_inbox(h, ALICE, marker)

    # SIGHUP does the same: back to the defaults, loopback no longer trusted.
    write_config(h, {})
    os.kill(h.service_pids()["router"], signal.SIGHUP)

    def refused():
        c = smtp(h)
        try:
            return rcpt_code(c, outside) == 554
        finally:
            c.quit()

    wait_for(refused, 15, interval=0.2, what="relay refused again after SIGHUP")
    assert h.service_pids()["router"], "the router survived SIGHUP"
    assert control(h, {"op": "stats"})["ok"]
