"""Quota at the edge (IMAP APPEND and LMTP, exactly at and one byte over), the quota warning,
and `hermes undelete` (list and restore, with the server running and stopped), driven with
the real binary, Python's imaplib and smtplib.LMTP.
"""

from __future__ import annotations

import json
import re

from hermes_testlib import make_message

ALICE = "alice@example.org"
CAROL = "carol@example.org"


def inbox_sizes(h, user) -> dict[int, int]:
    """UID -> RFC822.SIZE of every INBOX message."""
    c = h.imap(user)
    try:
        c.select("INBOX")
        typ, data = c.uid("FETCH", "1:*", "(RFC822.SIZE)")
        assert typ == "OK", data
        out = {}
        for item in data:
            if not item:
                continue
            text = item.decode() if isinstance(item, bytes) else item[0].decode()
            m = re.search(r"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)", text)
            if m:
                uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
                out[int(uid)] = int(size)
        return out
    finally:
        c.logout()


def set_quota(h, user, size: int):
    h.cli("account", "quota", user, str(size))


def test_quota_edges_over_imap_and_lmtp(hermes_factory):
    h = hermes_factory()
    msg = make_message("fill", marker="quota-fill")
    # The first delivery applies the quota (LMTP reads the account at RCPT).
    set_quota(h, ALICE, 20_000)
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    used = sum(inbox_sizes(h, ALICE).values())
    room = 20_000 - used

    def append(size):
        body = b"Subject: edge\r\n\r\n"
        raw = body + b"x" * (size - len(body))
        c = h.imap(ALICE)
        try:
            return c.append("INBOX", None, None, raw)
        except Exception as e:  # imaplib raises on NO
            return ("NO", [str(e).encode()])
        finally:
            c.logout()

    typ, data = append(room + 1)
    assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
    typ, data = append(room)
    assert typ == "OK", (typ, data)
    # At 100 %: the 95 % warning arrived (exempt from the quota), so the mailbox is now over.
    sizes = inbox_sizes(h, ALICE)
    assert sum(sizes.values()) > 20_000
    c = h.imap(ALICE)
    c.select("INBOX", readonly=True)
    typ, data = c.search(None, "SUBJECT", '"Your mailbox is 95% full"')
    assert typ == "OK" and len(data[0].split()) == 1, data
    typ, data = c.search(None, "FROM", '"postmaster@"')
    assert len(data[0].split()) == 1, data
    c.logout()

    # LMTP: over quota now, refused at RCPT with 452 4.2.2.
    r = h.deliver(ALICE, msg)[ALICE]
    assert r[0] == 452 and r[1].startswith(b"4.2.2"), r
    # Exactly enough room for one delivery of the same size: accepted.
    one = sizes[min(sizes)]
    total = sum(sizes.values())
    set_quota(h, ALICE, total + one)
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    # One byte short: accepted at RCPT, refused after DATA, still 452 4.2.2.
    total = sum(inbox_sizes(h, ALICE).values())
    set_quota(h, ALICE, total + one - 1)
    r = h.deliver(ALICE, msg)[ALICE]
    assert r[0] == 452 and r[1].startswith(b"4.2.2"), r
    assert sum(inbox_sizes(h, ALICE).values()) == total


def test_quota_permanent_failure_config(hermes_factory):
    h = hermes_factory({"store": {"quota_permanent_failure": True}})
    set_quota(h, ALICE, 100)
    r = h.deliver(ALICE, make_message("big", body="y" * 500 + "\r\n"))[ALICE]
    assert r[0] == 552 and r[1].startswith(b"5.2.2"), r


def undelete(h, *args, check=True):
    return h.cli("undelete", *args, check=check)


def test_undelete_with_server_running_and_stopped(hermes_factory):
    h = hermes_factory()
    for i in range(3):
        assert h.deliver(CAROL, make_message(f"keep me {i}", marker=f"undel-{i}"))[CAROL][0] == 250
    watcher = h.imap(CAROL)
    watcher.select("INBOX")
    c = h.imap(CAROL)
    c.select("INBOX")
    c.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged \Deleted)")
    c.expunge()
    assert c.uid("SEARCH", None, "ALL")[1][0].split() == [b"2", b"3"]

    listed = undelete(h, CAROL, "--list").stdout.decode()
    assert "1 restorable messages for carol@example.org" in listed, listed
    js = json.loads(undelete(h, CAROL, "--list", "--json", "--mailbox", "INBOX", "--since", "2000-01-01").stdout)
    assert js["ok"] and not js["offline"] and js["listed"]
    assert [(m["mailbox"], m["uid"], m["reason"]) for m in js["messages"]] == [("INBOX", 1, "expunged")]
    assert "\\Deleted" in js["messages"][0]["flags"]
    # A filter matching nothing restores nothing.
    assert "restored 0 messages" in undelete(h, CAROL, "--until", "2000-01-01").stdout.decode()
    assert undelete(h, CAROL, "--since", "tomorrow", check=False).returncode != 0

    out = undelete(h, CAROL).stdout.decode()
    assert "INBOX uid 1 -> INBOX uid 4" in out, out
    # The open session sees it as new mail; its flags come back without \Deleted.
    watcher.noop()
    typ, data = watcher.uid("FETCH", "4", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    text = b" ".join(x if isinstance(x, bytes) else x[0] + x[1] for x in data if x)
    assert b"\\Seen" in text and b"\\Flagged" in text and b"\\Deleted" not in text, text
    assert b"keep me 0" in text, text
    assert "no restorable messages" in undelete(h, CAROL, "--list").stdout.decode()
    watcher.logout()

    # Expunge another, stop the server: the CLI opens the store itself.
    c.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
    c.expunge()
    c.logout()
    assert h.stop() == 0
    js = json.loads(undelete(h, CAROL, "--list", "--json").stdout)
    assert js["offline"] and [m["uid"] for m in js["messages"]] == [2]
    js = json.loads(undelete(h, CAROL, "--json").stdout)
    assert js["offline"] and [(m["uid"], m["new_uid"]) for m in js["messages"]] == [(2, 5)]
    assert "no such account" in undelete(h, "nobody@example.org", "--list", check=False).stderr.decode()
    h.start()
    c = h.imap(CAROL)
    c.select("INBOX", readonly=True)
    assert c.uid("SEARCH", None, "ALL")[1][0].split() == [b"3", b"4", b"5"]
    c.logout()


def quota_of(h, user) -> bytes:
    """The QUOTA data of GETQUOTAROOT INBOX, e.g. b'"" (STORAGE 1 1048576 MESSAGE 1 2)'."""
    c = h.imap(user)
    try:
        typ, data = c.getquotaroot("INBOX")
        assert typ == "OK", data
        roots, quotas = data
        assert roots == [b'"INBOX" ""'], roots
        assert len(quotas) == 1, quotas
        return quotas[0]
    finally:
        c.logout()


def test_message_quota_set_live_from_the_cli(hermes_factory):
    h = hermes_factory()
    c = h.imap(ALICE)
    typ, caps = c.capability()
    assert b"QUOTA=RES-MESSAGE" in caps[0] and b"QUOTA=RES-STORAGE" in caps[0], caps
    c.logout()
    assert b"MESSAGE" not in quota_of(h, ALICE), "unlimited by default: MESSAGE not listed"
    # Set on the running server: the size stays ("-"), the message limit becomes 2.
    out = h.cli("account", "quota", ALICE, "-", "--messages", "2").stdout.decode()
    assert "message quota of alice@example.org set to 2" in out, out
    assert quota_of(h, ALICE).endswith(b"MESSAGE 0 2)")
    msg = make_message("count", marker="msg-quota")
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    # Exactly at the limit (2 of 2), plus the 95 % warning it triggered (exempt): now 3 of 2.
    assert quota_of(h, ALICE).endswith(b"MESSAGE 3 2)"), quota_of(h, ALICE)
    c = h.imap(ALICE)
    c.select("INBOX", readonly=True)
    typ, data = c.search(None, "SUBJECT", '"Your mailbox is 95% full"')
    assert len(data[0].split()) == 1, data
    c.logout()
    # One over: refused at LMTP (452 4.2.2) and at APPEND (NO [OVERQUOTA]).
    r = h.deliver(ALICE, msg)[ALICE]
    assert r[0] == 452 and r[1].startswith(b"4.2.2"), r
    c = h.imap(ALICE)
    try:
        typ, data = c.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
    except Exception as e:  # imaplib raises on NO
        typ, data = "NO", [str(e).encode()]
    c.logout()
    assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
    # `account list` shows it, as text and JSON.
    listing = h.cli("account", "list").stdout.decode()
    alice_line = next(line for line in listing.splitlines() if line.startswith(ALICE))
    assert "MESSAGES" in listing.splitlines()[0] and " 2 " in alice_line, listing
    rows = {r["address"]: r for r in json.loads(h.cli("account", "list", "--json").stdout)}
    assert rows[ALICE]["quota_messages"] == 2 and rows[CAROL]["quota_messages"] is None, rows
    # Unlimited: MESSAGE disappears and delivery works again.
    h.cli("account", "quota", ALICE, "1G", "--messages", "unlimited")
    assert b"MESSAGE" not in quota_of(h, ALICE)
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    rows = {r["address"]: r for r in json.loads(h.cli("account", "list", "--json").stdout)}
    assert rows[ALICE]["quota_messages"] == "unlimited", rows
    # `account add --quota-messages`, and bad values refused.
    out = h.cli("account", "add", "dora@example.org", "--password-stdin", "--quota-messages", "5", input="pw\n").stdout.decode()
    assert "messages 5" in out, out
    bad = h.cli("account", "quota", ALICE, "-", "--messages", "0", check=False)
    assert bad.returncode != 0 and b"greater than zero" in bad.stderr, bad.stderr
    assert h.cli("account", "quota", ALICE, "-", check=False).returncode != 0


def control(h, request: dict) -> dict:
    """One request on the store service's control socket."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(h.data / "run" / "store.sock"))
    try:
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        return json.loads(buf)
    finally:
        s.close()


def test_reload_and_stats_over_the_control_socket_and_sighup(hermes_factory):
    import os
    import signal

    from hermes_testlib import merge_config, to_toml, wait_for

    h = hermes_factory()
    stats = control(h, {"op": "stats"})["stats"]
    assert set(stats) == {"started_at", "logins_ok", "logins_failed", "imap_sessions", "pop3_sessions",
                          "lmtp_delivered", "lmtp_rejected", "messages_appended"}, stats
    msg = make_message("reload", marker="reload")
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    h.cli("account", "quota", ALICE, "100")
    assert h.deliver(ALICE, msg)[ALICE][0] == 452
    after = control(h, {"op": "stats"})["stats"]
    assert after["lmtp_delivered"] == stats["lmtp_delivered"] + 1, (stats, after)
    assert after["lmtp_rejected"] == stats["lmtp_rejected"] + 1, (stats, after)

    config_path = h.data / "config" / "hermes.toml"
    # An invalid file is refused; the server keeps running on the old one.
    config_path.write_text(to_toml(merge_config(h.config, {"store": {"retention_days": 99999}})))
    r = control(h, {"op": "reload"})
    assert r["ok"] is False and any(e.startswith("store.retention_days") for e in r["errors"]), r
    # Permanent over-quota failures, applied live; an IMAP port change needs a restart.
    config_path.write_text(to_toml(merge_config(h.config, {"store": {"quota_permanent_failure": True},
                                                           "imap": {"port": 1}})))
    r = control(h, {"op": "reload"})
    assert r["ok"] is True, r
    assert r["applied"] == ["store.quota_permanent_failure"] and r["restart_needed"] == ["imap.port"], r
    r = h.deliver(ALICE, msg)[ALICE]
    assert r[0] == 552 and r[1].startswith(b"5.2.2"), r
    quota_of(h, ALICE)  # IMAP still where it was
    # SIGHUP does the same: back to temporary failures.
    config_path.write_text(to_toml(h.config))
    os.kill(h.store_pid(), signal.SIGHUP)

    def temporary_again():
        return h.deliver(ALICE, msg)[ALICE][0] == 452

    wait_for(temporary_again, 10, what="SIGHUP reload")
    assert control(h, {"op": "reload"}) == {"ok": True, "account": "", "listed": False, "messages": [],
                                            "offline": False, "applied": [], "restart_needed": []}


def test_undelete_listing_shows_each_message_header(hermes_factory):
    """The listing carries Date, From and Subject (RFC 2047 decoded) and Message-ID, read from
    the retained message's header; a message with a malformed or missing header still lists."""
    h = hermes_factory()
    subject = "=?UTF-8?Q?Verl=C3=A4ngerung_Ihrer_Domain_?= =?utf-8?B?ZXhhbXBsZS5vcmcg4oCU?= bitte"
    sender = "=?iso-8859-1?Q?R=E9gistrar_S=E4rl?= <billing@registrar.example>"
    msg = make_message(subject, sender=sender, marker="registrar-1", date="Tue, 24 Nov 2026 09:15:00 +0100")
    assert h.deliver(CAROL, msg)[CAROL][0] == 250
    c = h.imap(CAROL)
    c.select("INBOX")
    # No field has a colon, the "header" has bytes that are not UTF-8, and there is no body.
    assert c.append("INBOX", None, None, b"garbage line \xff\xfe without colon\r\n=?utf-8?B?!!?=\r\n")[0] == "OK"
    # An empty header: the message starts with its blank line.
    assert c.append("INBOX", None, None, b"\r\nSubject: only in the body\r\n")[0] == "OK"
    c.uid("STORE", "1:*", "+FLAGS", r"(\Deleted)")
    c.expunge()
    c.logout()

    js = json.loads(undelete(h, CAROL, "--list", "--json").stdout)
    assert js["ok"] and not js["offline"], js
    by_uid = {m["uid"]: m for m in js["messages"]}
    assert sorted(by_uid) == [1, 2, 3], js
    m = by_uid[1]
    assert m["subject"] == "Verlängerung Ihrer Domain example.org — bitte", m
    assert m["from"] == "Régistrar Särl <billing@registrar.example>", m
    assert m["date"] == "Tue, 24 Nov 2026 09:15:00 +0100", m
    assert m["message_id"] == "<registrar-1@test.example.org>", m
    for uid in (2, 3):
        assert not any(by_uid[uid].get(k) for k in ("subject", "from", "date", "message_id")), by_uid[uid]
        assert by_uid[uid]["size"] > 0

    text = undelete(h, CAROL, "--list").stdout.decode()
    assert "3 restorable messages" in text, text
    assert "Subject: Verlängerung Ihrer Domain example.org — bitte" in text, text
    assert "From: Régistrar Särl <billing@registrar.example>" in text, text
    assert "Date: Tue, 24 Nov 2026 09:15:00 +0100" in text, text
    assert text.count("Subject: (none)") == 2, text

    # The same with the server stopped (the CLI reads the store itself).
    assert h.stop() == 0
    js = json.loads(undelete(h, CAROL, "--list", "--json", "--mailbox", "INBOX").stdout)
    assert js["offline"] and js["messages"][0]["subject"] == "Verlängerung Ihrer Domain example.org — bitte", js
    # A restore answers without the header fields (it need not read them).
    js = json.loads(undelete(h, CAROL, "--json").stdout)
    assert [m["uid"] for m in js["messages"]] == [1, 2, 3] and "subject" not in js["messages"][0], js
