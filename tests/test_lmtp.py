"""LMTP (RFC 2033) with smtplib.LMTP over TCP and the unix socket, and `hermes deliver`."""

from __future__ import annotations

import os
import re
import smtplib
from pathlib import Path

import pytest

from hermes_testlib import lmtp_send, make_message, split_trace_headers

ALICE = "alice@example.org"
BOB = "bob@example.org"


def inbox_messages(h, user) -> list[bytes]:
    c = h.imap(user)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK", data
    n = int(data[0])
    out = []
    if n:
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        out = [d[1] for d in data if isinstance(d, tuple)]
    c.logout()
    assert len(out) == n
    return out


def find_delivered(h, user, message: bytes) -> list[bytes]:
    """The stored copies of `message` in user's INBOX (trace headers stripped), checked byte for byte."""
    found = []
    for stored in inbox_messages(h, user):
        trace, original = split_trace_headers(stored)
        if original == message:
            found.append(trace)
    return found


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_reply_per_recipient_and_unknown_user(hermes_server, fresh_user, via):
    u1, _ = fresh_user()
    u2, _ = fresh_user()
    msg = make_message(f"per recipient over {via}")
    res = hermes_server.deliver([u1, "nobody@example.org", u2], msg, via=via)
    assert res[u1][0] == 250 and res[u2][0] == 250, res
    code, text = res["nobody@example.org"]
    assert code == 550 and b"5.1.1" in text, res
    assert len(find_delivered(hermes_server, u1, msg)) == 1
    assert len(find_delivered(hermes_server, u2, msg)) == 1


def test_lhlo_then_one_reply_per_recipient_on_one_connection(hermes_server, fresh_user):
    users = [fresh_user()[0] for _ in range(3)]
    c = hermes_server.lmtp()
    code, text = c.ehlo()  # smtplib's LMTP sends LHLO
    assert code == 250, text
    assert c.has_extn("pipelining") and c.has_extn("enhancedstatuscodes"), c.esmtp_features
    for i in range(3):  # several transactions on one connection
        msg = make_message(f"txn {i}")
        res = lmtp_send(c, "sender@example.net", users, msg)
        assert [res[u][0] for u in users] == [250, 250, 250], res
    c.quit()
    for u in users:
        assert len(inbox_messages(hermes_server, u)) == 3


def test_message_is_stored_byte_for_byte_with_trace_headers_on_top(hermes_server, fresh_user):
    user, _ = fresh_user()
    # 8-bit body, a long line, a line starting with a dot (dot-stuffed on the wire) and trailing spaces
    msg = (
        b"From: Somebody <sb@example.net>\r\nTo: " + user.encode() + b"\r\nSubject: exact bytes\r\n"
        b"Message-ID: <exact.1@example.net>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe   \r\n.leading dot\r\n..two dots\r\n" + b"x" * 990 + b"\r\n\r\n\r\n"
    )
    res = hermes_server.deliver(user, msg, sender="bounce@example.net")
    assert res[user][0] == 250, res
    stored = inbox_messages(hermes_server, user)
    assert len(stored) == 1
    trace, original = split_trace_headers(stored[0])
    assert original == msg
    assert trace.startswith(b"Return-Path: <bounce@example.net>\r\n"), trace
    assert re.search(rb"^Received: ", trace, re.M), trace


def test_too_large_is_refused_with_552_5_3_4(hermes_factory):
    h = hermes_factory(config={"limits": {"max_message_bytes": 20000}})
    small = make_message("small enough", body="s" * 1000 + "\r\n")
    big = make_message("too big", body=("b" * 998 + "\r\n") * 30)
    c = h.lmtp()
    res = lmtp_send(c, "sender@example.net", [ALICE, BOB], big)
    for r in (ALICE, BOB):
        code, text = res[r]
        assert code == 552 and b"5.3.4" in text, res
    # the session goes on
    res = lmtp_send(c, "sender@example.net", [ALICE], small)
    assert res[ALICE][0] == 250, res
    c.quit()
    # MAIL FROM with a SIZE above the limit is refused up front
    c = h.lmtp()
    c.ehlo()
    if c.has_extn("size"):
        code, text = c.mail("sender@example.net", ["SIZE=%d" % (len(big))])
        assert code == 552 and b"5.3.4" in text, (code, text)
    c.close()
    stored = inbox_messages(h, ALICE)
    assert [split_trace_headers(s)[1] for s in stored] == [small]
    assert inbox_messages(h, BOB) == []


def _inodes(root: Path) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if p.is_file():
                out.setdefault(st.st_ino, []).append(p)
    return out


def test_one_message_to_three_users_is_stored_once(hermes_server, fresh_user):
    users = [fresh_user()[0] for _ in range(3)]
    store = hermes_server.data / "store"
    # a body large and random enough that its compressed copy is clearly a message file
    body = "".join(f"{i:08x} {os.urandom(24).hex()}\r\n" for i in range(400))
    msg = make_message("to three", body=body)
    before = set(_inodes(store))
    res = hermes_server.deliver(users, msg)
    assert all(res[u][0] == 250 for u in users), res
    for u in users:
        assert len(find_delivered(hermes_server, u, msg)) == 1
    after = _inodes(store)
    new = {ino: paths for ino, paths in after.items() if ino not in before}
    # docs/store-format.md: a message is users/<user-id>/msgs/<file-id>.zst, hard-linked into
    # every recipient's msgs/ from one spooled copy (the spool name is removed after linking)
    new_msgs = {ino: paths for ino, paths in new.items() if any(p.parent.name == "msgs" for p in paths)}
    assert len(new_msgs) == 1, (
        "a delivery to three users must create exactly one message file (inode); new files: "
        f"{[(str(p[0].relative_to(store)), os.stat(p[0]).st_nlink) for p in new.values()]}")
    ino, paths = next(iter(new_msgs.items()))
    rel = [p.relative_to(store).parts for p in paths]
    assert len(paths) == 3 and os.stat(paths[0]).st_nlink == 3, rel
    assert all(parts[0] == "users" and parts[2] == "msgs" for parts in rel), rel
    assert len({parts[1] for parts in rel}) == 3, f"the links are not in three different users' folders: {rel}"
    spool = store / "spool"
    leftovers = list(spool.iterdir()) if spool.exists() else []
    assert not leftovers, f"spool names left after the delivery: {leftovers}"


def test_hermes_deliver_cli_with_server_running(hermes_server, fresh_user):
    user, _ = fresh_user()
    msg = make_message("via the cli, running")
    r = hermes_server.deliver_cli(user, msg)
    assert r.returncode == 0
    assert f"{user}: 250".encode() in r.stdout, r.stdout
    assert len(find_delivered(hermes_server, user, msg)) == 1
    # an unknown recipient fails with a non-zero exit
    r = hermes_server.deliver_cli("nobody@example.org", msg, check=False)
    assert r.returncode != 0


def test_hermes_deliver_cli_with_server_stopped(hermes_factory):
    h = hermes_factory()
    assert h.stop() == 0
    msg = make_message("via the cli, stopped")
    r = h.deliver_cli(ALICE, msg)
    assert r.returncode == 0, r
    h.start()
    assert len(find_delivered(h, ALICE, msg)) == 1
    # a delivery through the running server lands after it, with the next UID
    msg2 = make_message("after restart")
    assert h.deliver(ALICE, msg2)[ALICE][0] == 250
    stored = [split_trace_headers(s)[1] for s in inbox_messages(h, ALICE)]
    assert stored == [msg, msg2]


def test_garbage_and_out_of_order_commands_get_5xx(hermes_server):
    c = hermes_server.lmtp()
    c.ehlo()
    code, _ = c.docmd("RCPT TO:<alice@example.org>")  # before MAIL
    assert code == 503, code
    code, _ = c.docmd("DATA")
    assert code == 503, code
    code, _ = c.docmd("FOOBAR")
    assert 500 <= code < 600, code
    code, _ = c.docmd("MAIL FROM:<not an address")
    assert 500 <= code < 600, code
    c.quit()
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        c = hermes_server.lmtp()
        c.sendmail("a@example.net", ["nobody@example.org"], make_message("x"))


def test_subaddress_is_delivered_to_the_account(hermes_server, fresh_user):
    user, _ = fresh_user()
    local, domain = user.split("@")
    msg = make_message("plus addressing")
    res = hermes_server.deliver(f"{local}+lists@{domain}", msg)
    assert res[f"{local}+lists@{domain}"][0] == 250, res
    assert len(find_delivered(hermes_server, user, msg)) == 1


def test_xdedup_suppresses_redelivery_even_after_kill_9(hermes_factory):
    """The router's duplicate suppression contract: XDEDUP in LHLO, `MAIL FROM:<> XDEDUP=token`,
    a second delivery of the token to the same account answered 250 and not stored; the
    record survives the store process being killed with SIGKILL (and restarted)."""
    import json
    import signal

    from hermes_testlib import wait_for

    h = hermes_factory()
    msg = make_message("once only", marker="xdedup-1")

    def send(rcpts, token):
        c = h.lmtp("unix")  # the socket path survives a restart; a TCP port 0 would not
        try:
            c.ehlo_or_helo_if_needed()
            assert "xdedup" in c.esmtp_features, c.esmtp_features
            code, text = c.mail("router@example.net", [f"XDEDUP={token}"])
            if code != 250:
                return code, text
            for r in rcpts:
                assert c.rcpt(r)[0] == 250
            assert c.docmd("DATA")[0] == 354
            c.send(msg + b".\r\n")
            return [c.getreply() for _ in rcpts]
        finally:
            c.quit()

    first = send([ALICE, BOB], "q-20261128.0001")
    assert all(code == 250 and b"Delivered" in text for code, text in first), first
    again = send([ALICE, BOB], "q-20261128.0001")
    assert again == [(250, b"2.0.0 <alice@example.org> already delivered (duplicate suppressed)"),
                     (250, b"2.0.0 <bob@example.org> already delivered (duplicate suppressed)")], again
    assert len(find_delivered(h, ALICE, msg)) == 1
    other = send([ALICE], "q-20261128.0002")
    assert other[0][0] == 250 and b"Delivered" in other[0][1], other
    assert len(find_delivered(h, ALICE, msg)) == 2
    code, text = send([ALICE], "bad/token")
    assert code == 501 and text.startswith(b"5.5.4"), (code, text)

    # kill -9 right after an acknowledged delivery: the record is durable.
    third = send([BOB], "q-20261128.0003")
    assert third[0][0] == 250 and b"Delivered" in third[0][1], third
    old = h.store_pid()
    os.kill(old, signal.SIGKILL)

    def restarted():
        try:
            if h.store_pid() == old:
                return False
            c = h.lmtp("unix")
            c.quit()
            return True
        except (AssertionError, OSError, smtplib.SMTPException):
            return False

    wait_for(restarted, 30, what="store restart after SIGKILL")
    # The restarted store listens on new TCP ports (port 0): follow them for IMAP.
    store = json.loads((h.data / "run" / "endpoints.d" / "store.json").read_text())
    h.endpoints["imap"] = store["tcp"]["imap"]
    again = send([BOB], "q-20261128.0003")
    assert again == [(250, b"2.0.0 <bob@example.org> already delivered (duplicate suppressed)")], again
    assert len(find_delivered(h, BOB, msg)) == 2
