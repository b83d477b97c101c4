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
