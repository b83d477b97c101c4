"""IMAP extensions of issue 3 with real clients against `hermes up`: a QRESYNC resync with
Python's imaplib (session A caches HIGHESTMODSEQ, session B changes flags and expunges, A
reselects and gets exactly VANISHED (EARLIER) plus the changed FETCHes), SORT/THREAD on a
small known mailbox, COMPRESS=DEFLATE over a raw socket with zlib (plain and IMAPS), and
GETQUOTAROOT following `hermes account quota`."""

from __future__ import annotations

import re
import socket
import ssl
import zlib

from hermes_testlib import addr, make_message, quote


def untagged(c, name: str) -> list[bytes]:
    """imaplib keeps untagged responses by name; take (and clear) one kind."""
    _, data = c._untagged_response("OK", [None], name)
    return [d for d in data if d is not None]


def modseq_of(lines: list[bytes]) -> int:
    for l in lines:
        m = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", l if isinstance(l, bytes) else b"")
        if m:
            return int(m.group(1))
    raise AssertionError(f"no HIGHESTMODSEQ in {lines!r}")


def select_raw(r, command: str) -> list[bytes]:
    untagged_lines, status = r.cmd(command)
    assert b" OK " in status, status
    return untagged_lines


def test_qresync_resync_after_flag_changes_and_expunges(hermes_server, fresh_user):
    user, pw = fresh_user("qr")
    b = hermes_server.imap(user, pw)
    for i in range(1, 7):
        typ, _ = b.append("INBOX", None, None, make_message(f"m{i}"))
        assert typ == "OK"

    # Session A: enables QRESYNC, selects, remembers UIDVALIDITY and HIGHESTMODSEQ.
    a = hermes_server.imap(user, pw)
    typ, data = a._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK", data
    assert untagged(a, "ENABLED") == [b"QRESYNC"]
    typ, _ = a.select("INBOX")
    assert typ == "OK"
    uidvalidity = int(untagged(a, "UIDVALIDITY")[0])
    cached = int(untagged(a, "HIGHESTMODSEQ")[0])
    a.close()

    # Session B: flags on 1 and 5, expunges 2 and 4.
    b.select("INBOX")
    assert b.uid("STORE", "1", "+FLAGS", r"(\Flagged)")[0] == "OK"
    assert b.uid("STORE", "5", "+FLAGS", r"(\Seen $Work)")[0] == "OK"
    assert b.uid("STORE", "2,4", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
    assert b.expunge()[0] == "OK"
    b.logout()

    # Session A resynchronises in one round trip (raw: imaplib has no QRESYNC SELECT).
    r = hermes_server.raw()
    r.ok(f"LOGIN {quote(user)} {quote(pw)}")
    r.ok("ENABLE QRESYNC")
    lines = select_raw(r, f"SELECT INBOX (QRESYNC ({uidvalidity} {cached} 1:6))")
    vanished = [l for l in lines if l.startswith(b"* VANISHED")]
    fetches = [l for l in lines if b" FETCH " in l]
    assert vanished == [b"* VANISHED (EARLIER) 2,4\r\n"], lines
    assert len(fetches) == 2, lines
    assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n", fetches[0]), fetches
    assert re.match(rb"\* 3 FETCH \(UID 5 FLAGS \(\$Work \\Seen\) MODSEQ \(\d+\)\)\r\n", fetches[1]), fetches
    assert any(l == b"* 4 EXISTS\r\n" for l in lines), lines
    new_modseq = modseq_of(lines)
    assert new_modseq > cached

    # Nothing changed since: the next resync is empty.
    lines = select_raw(r, f"SELECT INBOX (QRESYNC ({uidvalidity} {new_modseq}))")
    assert not [l for l in lines if l.startswith(b"* VANISHED") or b" FETCH " in l], lines

    # The same with UID FETCH CHANGEDSINCE ... VANISHED from the old state.
    lines, status = r.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {cached} VANISHED)")
    assert b" OK " in status, status
    assert lines[0] == b"* VANISHED (EARLIER) 2,4\r\n", lines
    assert len(lines) == 3, lines

    # While selected, another session's expunge arrives as VANISHED, not EXPUNGE.
    c = hermes_server.imap(user, pw)
    c.select("INBOX")
    c.uid("STORE", "3", "+FLAGS.SILENT", r"(\Deleted)")
    c.expunge()
    c.logout()
    lines = r.ok("NOOP")
    assert b"* VANISHED 3\r\n" in lines, lines
    assert not [l for l in lines if l.endswith(b" EXPUNGE\r\n")], lines
    r.close()
    a.logout()


def test_condstore_unchangedsince_with_imaplib(hermes_server, fresh_user):
    user, pw = fresh_user("cs")
    c = hermes_server.imap(user, pw)
    for i in range(3):
        c.append("INBOX", None, None, make_message(f"c{i}"))
    typ, data = c._simple_command("SELECT", "INBOX", "(CONDSTORE)")
    assert typ == "OK", data
    c.state = "SELECTED"  # imaplib's select() cannot pass SELECT parameters
    highest = int(untagged(c, "HIGHESTMODSEQ")[0])
    typ, data = c.fetch("1:*", "(MODSEQ)")
    assert typ == "OK"
    modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", d).group(1)) for d in data]
    assert max(modseqs) == highest
    # Another client changes message 2; a conditional store with the old value skips it.
    o = hermes_server.imap(user, pw)
    o.select("INBOX")
    o.store("2", "+FLAGS", r"(\Seen)")
    o.logout()
    typ, data = c._simple_command("STORE", "1:3", f"(UNCHANGEDSINCE {highest})", "+FLAGS", r"(\Flagged)")
    assert typ == "OK", data
    assert b"[MODIFIED 2]" in data[0], data
    c.logout()


SORT_MAILBOX = [
    ("Zed <zed@example.org>", "Re: Lunch", "Wed, 3 Jan 2024 12:00:00 +0000", "m2", "<m1@t>"),
    ("Adam <adam@example.org>", "Lunch", "Tue, 2 Jan 2024 12:00:00 +0000", "m1", ""),
    ("Emile <emile@example.org>", "[list] Budget (fwd)", "Mon, 1 Jan 2024 09:00:00 +0100", "m3", ""),
    ("bob@example.org", "Re: Re: Lunch", "Thu, 4 Jan 2024 12:00:00 +0000", "m4", "<m1@t> <m2@t>"),
]


def test_sort_and_thread_on_a_known_mailbox(hermes_server, fresh_user):
    user, pw = fresh_user("so")
    c = hermes_server.imap(user, pw)
    for sender, subject, date, mid, refs in SORT_MAILBOX:
        extra = f"References: {refs}\r\n" if refs else ""
        msg = make_message(subject, sender=sender, date=date, marker=mid, extra_headers=extra)
        # make_message's Message-ID is <marker@test.example.org>: rewrite to the ids above.
        msg = msg.replace(f"<{mid}@test.example.org>".encode(), f"<{mid}@t>".encode())
        assert c.append("INBOX", None, None, msg)[0] == "OK"
    c.select("INBOX")
    typ, data = c.sort("(DATE)", "UTF-8", "ALL")
    assert (typ, data) == ("OK", [b"3 2 1 4"])
    typ, data = c.sort("(SUBJECT REVERSE DATE)", "UTF-8", "ALL")
    assert (typ, data) == ("OK", [b"3 4 1 2"])
    typ, data = c.uid("SORT", "(FROM)", "UTF-8", "ALL")
    assert (typ, data) == ("OK", [b"2 4 3 1"])
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert (typ, data) == ("OK", [b"(3)(2 1 4)"])
    typ, data = c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert (typ, data) == ("OK", [b"(3)(2 (1)(4))"])
    typ, data = c._simple_command("SORT", "RETURN", "(MIN MAX COUNT)", "(DATE)", "UTF-8", "ALL")
    assert typ == "OK"
    assert untagged(c, "ESEARCH")[0].endswith(b"MIN 3 MAX 4 COUNT 4")
    c.logout()


class ZRaw:
    """A raw IMAP client that turns on COMPRESS=DEFLATE and speaks deflate with zlib."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.comp = None
        self.decomp = None

    def send(self, text: str):
        data = text.encode()
        if self.comp is not None:
            data = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += self.decomp.decompress(chunk) if self.decomp is not None else chunk
        i = self.buf.index(b"\r\n") + 2
        l, self.buf = self.buf[:i], self.buf[i:]
        return l

    def until(self, tag: str) -> list[bytes]:
        out = []
        while True:
            l = self.line()
            out.append(l)
            if l.startswith(tag.encode() + b" "):
                return out


def _compress_session(hermes_server, sock, user, pw):
    z = ZRaw(sock)
    assert z.line().startswith(b"* OK")
    z.send(f"a LOGIN {quote(user)} {quote(pw)}\r\n")
    assert z.until("a")[-1].startswith(b"a OK")
    z.send("b COMPRESS DEFLATE\r\n")
    # Read exactly the OK line uncompressed; what follows it is deflate.
    while b"\r\n" not in z.buf:
        z.buf += sock.recv(1)
    assert z.line() == b"b OK DEFLATE active\r\n"
    z.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    z.decomp = zlib.decompressobj(-15)
    z.buf = z.decomp.decompress(z.buf)
    z.send("c COMPRESS DEFLATE\r\n")
    assert z.until("c")[-1] == b"c NO [COMPRESSIONACTIVE] Compression is already active\r\n"
    z.send("d SELECT INBOX\r\n")
    assert z.until("d")[-1].startswith(b"d OK [READ-WRITE]")
    z.send("e FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    lines = z.until("e")
    assert lines[-1] == b"e OK FETCH completed\r\n", lines
    assert any(b"Subject: zipped" in l for l in lines), lines
    z.send("f LOGOUT\r\n")
    assert z.until("f")[-1] == b"f OK LOGOUT completed\r\n"
    sock.close()


def test_compress_deflate_with_zlib_plain_and_tls(hermes_server, fresh_user):
    user, pw = fresh_user("zc")
    c = hermes_server.imap(user, pw)
    c.append("INBOX", None, None, make_message("zipped", body="x" * 20000 + "\r\n"))
    c.logout()
    plain = socket.create_connection(addr(hermes_server.endpoints["imap"]), timeout=30)
    _compress_session(hermes_server, plain, user, pw)
    tls = hermes_server.ssl_context().wrap_socket(
        socket.create_connection(addr(hermes_server.endpoints["imaps"]), timeout=30),
        server_hostname="localhost",
    )
    _compress_session(hermes_server, tls, user, pw)


def test_getquotaroot_follows_the_cli(hermes_server, fresh_user):
    user, pw = fresh_user("qt")
    c = hermes_server.imap(user, pw)
    msg = make_message("quota", body="y" * 3000 + "\r\n")
    c.append("INBOX", None, None, msg)
    used = -(-len(msg) // 1024)
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[0] == [b'"INBOX" ""'], data
    assert data[1] == [f'"" (STORAGE {used} 1048576)'.encode()], data
    hermes_server.cli("account", "quota", user, "20K")
    typ, data = c.getquota('""')
    assert (typ, data) == ("OK", [f'"" (STORAGE {used} 20)'.encode()])
    typ, data = c.setquota('""', "(STORAGE 1)")
    assert typ == "NO"
    c.logout()
