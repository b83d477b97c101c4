"""Hostile and malformed input: garbage, oversized lines and literals, pipelining floods, deep
nesting, abandoned literals. After each test the server still serves a login and the store
process is the same one (it neither crashed nor was restarted)."""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time

import pytest

from hermes_testlib import RawImap, quote

ALICE = "alice@example.org"


@pytest.fixture(scope="module")
def store_pid(hermes_server):
    return hermes_server.store_pid()


@pytest.fixture(autouse=True)
def still_serving(hermes_server, store_pid):
    yield
    assert hermes_server.store_pid() == store_pid, "the store process was restarted"
    assert os.path.exists(f"/proc/{store_pid}"), "the store process is gone"
    r = hermes_server.raw(login=ALICE)
    r.ok("SELECT INBOX")
    r.ok("LOGOUT")
    r.close()


def read_until_closed_or(r: RawImap, pattern: bytes, timeout: float = 20) -> bytes | None:
    """Reads lines until one matches `pattern` (returned) or the server closes (None)."""
    r.sock.settimeout(timeout)
    try:
        while True:
            line = r.readline()
            if re.search(pattern, line):
                return line
    except (ConnectionError, OSError):
        return None


def inbox_count(h) -> int:
    c = h.imap(ALICE)
    typ, data = c.select("INBOX", readonly=True)
    c.logout()
    return int(data[0])


def test_garbage_bytes_get_bad(hermes_server):
    rnd = random.Random(7)
    r = hermes_server.raw()
    for i in range(50):
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))).replace(b"\r\n", b"")
        junk = junk.replace(b"\n", b"").replace(b"{", b"")  # no accidental literal announcements
        r.send(junk + b"\r\n")
        line = read_until_closed_or(r, rb"^(\S+ )?BAD|^\* BYE")
        if line is None or line.startswith(b"* BYE"):
            r.close()
            r = hermes_server.raw()  # closed cleanly: reconnect and go on
    # a well-formed command still works on the last connection
    r.ok("NOOP")
    r.close()
    # NUL bytes, bare LF, non-UTF-8 in a tag
    r = hermes_server.raw()
    for junk in [b"\x00\x00\x00\r\n", b"a1 NOOP\n", b"\xff\xfe LOGIN a b\r\n", b"* NOOP\r\n", b"+ NOOP\r\n"]:
        r.send(junk)
        if read_until_closed_or(r, rb"^(\S+ )?(BAD|OK)|^\* BYE", timeout=5) is None:
            r.close()
            r = hermes_server.raw()
    r.close()


@pytest.mark.parametrize("logged_in", [False, True])
def test_line_over_64_kib_gets_bad_or_a_clean_close(hermes_server, logged_in):
    r = hermes_server.raw(login=ALICE if logged_in else None)
    big = b"A1 NOOP " + b"x" * (200 * 1024) + b"\r\n"
    sender = threading.Thread(target=lambda: _send_quietly(r.sock, big))
    sender.start()
    line = read_until_closed_or(r, rb"BAD|^\* BYE")
    sender.join(30)
    if line is not None and b"BAD" in line:
        # connection kept: the rest of the line was discarded and framing is intact
        r.sock.settimeout(20)
        r.ok("NOOP")
    r.close()


def _send_quietly(sock: socket.socket, data: bytes):
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server may close before reading it all: that is allowed


@pytest.mark.parametrize("command", [
    "APPEND INBOX {4294967295}",
    "APPEND INBOX {18446744073709551615}",
    "APPEND INBOX {99999999999999999999999}",
    "APPEND INBOX {30000000}",  # above the default 25 MB message limit
    "APPEND INBOX (\\Seen) {2000000000+}",
])
def test_huge_literal_announcement_is_refused_without_continuation(hermes_server, command):
    r = hermes_server.raw(login=ALICE)
    rss_before = vm_rss_kib(hermes_server.store_pid())  # after the login (argon2 memory is not the point)
    t = r.tag()
    r.send(f"{t} {command}\r\n")
    r.sock.settimeout(20)
    try:
        line = r.readline()
    except (ConnectionError, OSError):
        line = None  # closed: acceptable for a non-synchronising literal we cannot skip
    if line is not None:
        assert not line.startswith(b"+"), f"server invited a {command} literal: {line!r}"
        assert re.match(rb"(%s|\*) (NO|BAD|BYE)" % t.encode(), line), line
    r.close()
    # the announced size was not allocated (a generous margin for ordinary growth)
    grown = vm_rss_kib(hermes_server.store_pid()) - rss_before
    assert grown < 64 * 1024, f"store RSS grew by {grown} KiB after announcing {command}"


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])


def test_huge_literal_before_login_is_refused(hermes_server):
    r = hermes_server.raw()
    t = r.tag()
    r.send(f"{t} LOGIN {{1000000000}}\r\n")
    r.sock.settimeout(20)
    try:
        line = r.readline()
        assert not line.startswith(b"+"), line
        assert re.match(rb"(%s|\*) (NO|BAD|BYE)" % t.encode(), line), line
    except (ConnectionError, OSError):
        pass
    r.close()


def test_too_many_literals_in_one_command_are_refused(hermes_server):
    limit = 1000  # DEFAULT_MAX_LITERALS_PER_COMMAND
    r = hermes_server.raw(login=ALICE)
    t = r.tag()
    msg = b"Subject: x\r\n\r\n"
    parts = [f"{t} APPEND INBOX".encode()] + [f" {{{len(msg)}+}}\r\n".encode() + msg for _ in range(limit + 50)]
    payload = b"".join(parts) + b"\r\n"
    threading.Thread(target=lambda: _send_quietly(r.sock, payload), daemon=True).start()
    line = read_until_closed_or(r, rb"^%s " % t.encode() + rb"|^\* BYE", timeout=60)
    assert line is None or re.match(rb"(%s|\*) (NO|BAD|BYE)" % t.encode(), line), line
    r.close()


def test_ten_thousand_pipelined_noops(hermes_server):
    r = hermes_server.raw(login=ALICE)
    n = 10_000
    payload = b"".join(b"P%d NOOP\r\n" % i for i in range(n))
    sender = threading.Thread(target=lambda: r.sock.sendall(payload))
    sender.start()
    r.sock.settimeout(60)
    t0 = time.monotonic()
    for i in range(n):
        while True:
            line = r.readline()
            if line.startswith(b"*"):
                continue
            assert line.startswith(b"P%d OK" % i), (i, line)
            break
    sender.join()
    assert time.monotonic() - t0 < 60
    r.ok("LOGOUT")
    r.close()


@pytest.mark.parametrize("criteria", [
    "(" * 10_000 + "ALL" + ")" * 10_000,
    "NOT " * 10_000 + "ALL",
    "OR " * 5_000 + "ALL " * 5_001,
])
def test_deep_search_nesting_is_refused_or_answered(hermes_server, criteria):
    r = hermes_server.raw(login=ALICE)
    r.ok("SELECT INBOX")
    status = r.status_of(f"SEARCH {criteria}")
    assert status.startswith((b"BAD", b"NO", b"OK")), status
    # moderate nesting is fine
    r.ok("SEARCH " + "(" * 20 + "ALL" + ")" * 20)
    r.ok("SEARCH " + "NOT " * 20 + "DELETED")
    r.close()


def test_unterminated_literal_then_disconnect_stores_nothing(hermes_server):
    before = inbox_count(hermes_server)
    for _ in range(20):
        r = hermes_server.raw(login=ALICE)
        t = r.tag()
        r.send(f"{t} APPEND INBOX {{5000}}\r\n")
        assert r.readline().startswith(b"+")
        r.send(b"Subject: half\r\n\r\nonly part of it")
        r.close()
        r = hermes_server.raw(login=ALICE)
        r.send(f"{r.tag()} APPEND INBOX {{5000+}}\r\nSubject: half\r\n\r\n")
        r.close()
    # and pre-login: a LOGIN literal never finished
    for _ in range(20):
        r = hermes_server.raw()
        r.send(b"L1 LOGIN {20}\r\n")
        r.close()
    time.sleep(0.5)
    assert inbox_count(hermes_server) == before


def test_many_abandoned_connections(hermes_server):
    socks = []
    host, port = hermes_server.endpoints["imap"].rsplit(":", 1)
    for _ in range(300):
        socks.append(socket.create_connection((host, int(port)), timeout=10))
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b"A1 LOGIN " + quote(ALICE).encode())  # half a command, never finished
        s.close()


def test_lmtp_garbage_and_long_lines(hermes_server):
    host, port = hermes_server.endpoints["lmtp"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=20)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"\x00\xff garbage\r\n")
    assert f.readline()[:1] == b"5"
    threading.Thread(target=lambda: _send_quietly(s, b"LHLO " + b"a" * (100 * 1024) + b"\r\n"), daemon=True).start()
    line = f.readline()
    assert line == b"" or line[:1] == b"5", line
    s.close()
