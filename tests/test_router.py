"""The router (issue 4) against real clients: smtplib, swaks and raw sockets.

MX delivery visible over IMAP, submission with STARTTLS + AUTH, the open-relay list (also from
127.0.0.2), SMTP smuggling, STARTTLS injection, limits, aliases, the queue CLI, and a second
hermes as a departmental server.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess

import pytest

from hermes_testlib import addr, make_message
from router_fixtures import *  # noqa: F401,F403
from router_fixtures import ALICE, BOB, RawSmtp, inbox, no_verify, smtp, submit, unique, wait_in_inbox


def test_mx_delivery_to_local_account_visible_over_imap(router):
    tag = unique("mx")
    msg = make_message(tag, sender="Stranger <stranger@remote.example>", to=ALICE)
    c = smtp(router)
    c.ehlo("client.remote.example")
    for ext in ["pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking", "dsn", "starttls"]:
        assert c.has_extn(ext), ext
    assert not c.has_extn("auth"), "no AUTH on the MX port"
    assert c.sendmail("stranger@remote.example", ["alice+news@example.org"], msg) == {}
    c.quit()
    [stored] = wait_in_inbox(router, ALICE, tag.encode())
    assert b"Return-Path: <stranger@remote.example>" in stored
    assert stored.count(b"Return-Path:") == 1, "Return-Path only at final delivery"
    assert b"by localhost (Hermes) with ESMTP id" in stored


def test_unknown_user_is_550_511(router):
    c = smtp(router)
    c.ehlo("x")
    c.mail("s@remote.example")
    code, text = c.rcpt("nobody@example.org")
    assert code == 550 and b"5.1.1" in text
    c.quit()


def test_submission_with_starttls_and_auth(router):
    tag = unique("sub")
    c = smtp(router, "submission")
    c.ehlo("laptop")
    assert c.has_extn("starttls") and not c.has_extn("auth")
    c.starttls(context=no_verify())
    c.ehlo("laptop")
    assert "PLAIN" in c.esmtp_features.get("auth", "").upper()
    c.login(ALICE, router.passwords[ALICE])
    msg = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {tag}\r\n\r\nhi\r\n".encode()
    assert c.sendmail(ALICE, [BOB], msg) == {}
    # Someone else's sender address is refused.
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        c.sendmail(BOB, [ALICE], msg)
    assert e.value.smtp_code == 553
    c.quit()
    [stored] = wait_in_inbox(router, BOB, tag.encode())
    assert b"(Authenticated sender: alice@example.org)" in stored
    assert b"with ESMTPSA" in stored and b"(using TLSv1." in stored
    assert b"\r\nMessage-ID: <" in stored and b"\r\nDate: " in stored, "added on submission"


def test_submissions_implicit_tls(router):
    tag = unique("smtps")
    c = smtp(router, "submissions")
    c.login(ALICE, router.passwords[ALICE])
    c.sendmail(ALICE, [ALICE], f"Subject: {tag}\r\n\r\nx\r\n".encode())
    c.quit()
    wait_in_inbox(router, ALICE, tag.encode())


def test_auth_before_tls_refused_and_mail_needs_auth(router):
    r = RawSmtp(router.endpoints["submission"])
    r.reply()
    r.cmd("EHLO x")
    code, text = r.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXNlY3JldC0x")
    assert code == 538, text
    code, _ = r.cmd("MAIL FROM:<alice@example.org>")
    assert code == 530
    r.close()


def test_wrong_password_is_535_and_delayed(router):
    c = smtp(router, "submission")
    c.starttls(context=no_verify())
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c.login(ALICE, "wrong")
    assert e.value.smtp_code == 535
    c.close()


RELAY_TRICKS = [
    "victim@elsewhere.example",
    "victim%elsewhere.example@example.org",
    "elsewhere.example!victim@example.org",
    '"victim@elsewhere.example"@example.org',
    '"victim%elsewhere.example"@example.org',
    "@example.org:victim@elsewhere.example",
    "@example.org,@localhost:victim@elsewhere.example",
    "victim@elsewhere.example@example.org",
    "victim@[127.0.0.1]",
]


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
def test_open_relay_list_refused(router, source):
    r = RawSmtp(router.endpoints["smtp"], source=source)
    r.reply()
    assert r.cmd("EHLO relay-test")[0] == 250
    assert r.cmd("MAIL FROM:<spammer@remote.example>")[0] == 250
    for rcpt in RELAY_TRICKS:
        code, text = r.cmd(f"RCPT TO:<{rcpt}>")
        assert code >= 500, (rcpt, text)
    assert r.cmd("DATA")[0] in (503, 554)
    r.close()


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"])
def test_smtp_smuggling_does_not_split_messages(router, smuggle):
    tag = unique("smuggle")
    r = RawSmtp(router.endpoints["smtp"])
    r.reply()
    r.cmd("EHLO x")
    assert r.cmd("MAIL FROM:<s@remote.example>")[0] == 250
    assert r.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    body = (f"Subject: {tag}\r\n\r\nfirst".encode() + smuggle
            + f"MAIL FROM:<admin@example.org>\r\nRCPT TO:<{BOB}>\r\nDATA\r\nSubject: {tag}-spoof\r\n\r\nspoof\r\n.\r\n".encode())
    r.send(body)
    code, _ = r.reply()
    assert code == 250
    r.send(b"QUIT\r\n")
    code, _ = r.reply()
    assert code == 221, "exactly one reply for the one message, then QUIT"
    r.close()
    [stored] = wait_in_inbox(router, ALICE, tag.encode())
    assert b"MAIL FROM:<admin@example.org>" in stored, "the smuggled text stays inside the message"
    assert not [m for m in inbox(router, BOB) if f"{tag}-spoof".encode() in m]


def test_starttls_injection_ignored(router):
    r = RawSmtp(router.endpoints["smtp"])
    r.reply()
    r.cmd("EHLO x")
    # Pipelined after STARTTLS in the same packet: must be discarded, never run after TLS.
    r.send(b"STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n")
    code, _ = r.reply()
    assert code == 220
    r.sock = no_verify().wrap_socket(r.sock)
    r.buf = b""
    assert r.cmd("EHLO x")[0] == 250
    code, text = r.cmd("MAIL FROM:<real@remote.example>")
    assert code == 250, f"an injected MAIL would make this a nested MAIL (503): {text!r}"
    r.close()


def test_oversize_is_552(hermes_factory):
    h = hermes_factory({"limits": {"max_message_bytes": 100_000}})
    c = smtp(h)
    c.ehlo("x")
    assert int(c.esmtp_features["size"]) == 100_000
    code, _ = c.docmd("MAIL FROM:<s@remote.example> SIZE=200000")
    assert code == 552
    c.quit()
    # Without SIZE= the data is read to its end (not buffered) and refused after the dot.
    r = RawSmtp(h.endpoints["smtp"])
    r.reply()
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<s@remote.example>")
    assert r.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 150 + b".\r\n")
    code, text = r.reply()
    assert code == 552 and b"5.3.4" in text
    assert r.cmd("NOOP")[0] == 250, "framing intact"
    r.close()


def test_recipient_limit_and_bdat(hermes_factory):
    h = hermes_factory({"router": {"max_recipients_mx": 2}})
    r = RawSmtp(h.endpoints["smtp"])
    r.reply()
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<s@remote.example>")
    assert r.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert r.cmd(f"RCPT TO:<{BOB}>")[0] == 250
    assert r.cmd("RCPT TO:<carol@example.org>")[0] == 452
    tag = unique("bdat").encode()
    chunk = b"Subject: " + tag + b"\r\n\r\nchunked\r\n"
    assert r.cmd(b"BDAT %d LAST\r\n" % len(chunk) + chunk)[0] == 250
    r.close()
    wait_in_inbox(h, BOB, tag)


def test_aliases_catch_all_and_bounce(router):
    router.cli("alias", "add", "team@example.org", ALICE, BOB)
    tag = unique("alias")
    c = smtp(router)
    c.sendmail("s@remote.example", ["team@example.org"], f"Subject: {tag}\r\n\r\nx\r\n".encode())
    wait_in_inbox(router, ALICE, tag.encode())
    wait_in_inbox(router, BOB, tag.encode())
    listed = json.loads(router.cli("alias", "list", "--json").stdout)
    assert any(a["address"] == "team@example.org" for a in listed)
    # Catch-all.
    router.cli("alias", "add", "@example.org", "carol@example.org")
    tag = unique("catchall")
    c.sendmail("s@remote.example", ["whoever@example.org"], f"Subject: {tag}\r\n\r\nx\r\n".encode())
    wait_in_inbox(router, "carol@example.org", tag.encode())
    router.cli("alias", "del", "@example.org")
    c.quit()


def test_queue_cli_json(router):
    out = json.loads(router.cli("queue", "list", "--json").stdout)
    assert out["ok"] is True and not out.get("offline")
    r = router.cli("queue", "show", "0000", check=False)
    assert r.returncode != 0


def test_swaks_mx_and_submission(router):
    assert shutil.which("swaks"), "swaks missing: scripts/test.sh installs it"
    tag = unique("swaks")
    host, port = addr(router.endpoints["smtp"])
    r = subprocess.run(["swaks", "--server", f"{host}:{port}", "--from", "s@remote.example", "--to", ALICE,
                        "--header", f"Subject: {tag}", "--silent", "2"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_in_inbox(router, ALICE, tag.encode())
    tag = unique("swaks-sub")
    host, port = addr(router.endpoints["submission"])
    r = subprocess.run(["swaks", "--server", f"{host}:{port}", "-tls", "--auth", "LOGIN", "--auth-user", ALICE,
                        "--auth-password", router.passwords[ALICE], "--from", ALICE, "--to", BOB,
                        "--header", f"Subject: {tag}", "--silent", "2"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_in_inbox(router, BOB, tag.encode())
    # Relay attempt without auth: swaks exits non-zero (24: RCPT refused).
    host, port = addr(router.endpoints["smtp"])
    r = subprocess.run(["swaks", "--server", f"{host}:{port}", "--from", "s@remote.example", "--to",
                        "victim@elsewhere.example", "--silent", "2"], capture_output=True, timeout=60)
    assert r.returncode != 0


def test_departmental_route_to_second_hermes(hermes_factory):
    dept = hermes_factory(accounts={})
    dept.add_domain("dept.example")
    dept.add_account("dora@dept.example", "dora-pw-1")
    host, port = addr(dept.endpoints["smtp"])
    hub = hermes_factory(start=False)
    with open(hub.data / "config" / "hermes.toml", "a") as f:
        f.write(f'\n[[router.routes]]\ndomain = "dept.example"\nhosts = ["{host}:{port}"]\ntls = "required"\n')
    hub.start()
    tag = unique("dept")
    c = smtp(hub)
    c.sendmail("s@remote.example", ["dora@dept.example"], f"Subject: {tag}\r\n\r\nx\r\n".encode())
    c.quit()
    [stored] = wait_in_inbox(dept, "dora@dept.example", tag.encode())
    assert stored.count(b"Received:") >= 2, "both hops recorded"
