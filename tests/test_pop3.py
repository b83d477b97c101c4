"""POP3 with real clients: Python's poplib (USER/PASS, STLS, POP3S, AUTH PLAIN, STAT/LIST/UIDL/
TOP/RETR, DELE/RSET/QUIT) checked byte for byte against what LMTP delivered and against IMAP, and
Debian's fetchmail downloading into an MDA with and without `keep`.

Endpoints come from endpoints.json ("pop3", "pop3s"); the server is started with POP3 on port 0
and clear-text login allowed on loopback (as the IMAP suites do).
"""

from __future__ import annotations

import base64
import os
import poplib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hermes_testlib import addr, make_message, split_trace_headers

POP3_CONFIG = {"pop3": {"port": 0, "tls_port": 0, "plaintext_auth_on_loopback": True}}
TLS_ONLY_CONFIG = {"pop3": {"port": 0, "tls_port": 0, "plaintext_auth_on_loopback": False}}


def endpoint(h, name: str) -> tuple[str, int]:
    assert name in h.endpoints, (
        f"endpoints.json has no {name!r} (POP3 not wired into the store service?): {sorted(h.endpoints)}"
    )
    return addr(h.endpoints[name])


def pop(h, user: str | None = None, password: str | None = None, mode: str = "plain") -> poplib.POP3:
    """A poplib client: mode plain | stls | ssl; logged in with USER/PASS when `user` is given."""
    if mode == "ssl":
        host, port = endpoint(h, "pop3s")
        c = poplib.POP3_SSL(host, port, context=h.ssl_context(), timeout=30)
    else:
        host, port = endpoint(h, "pop3")
        c = poplib.POP3(host, port, timeout=30)
        if mode == "stls":
            c.stls(context=h.ssl_context())
    if user is not None:
        c.user(user)
        c.pass_(password if password is not None else h.passwords[user])
    return c


def auth_plain(c: poplib.POP3, user: str, password: str) -> bytes:
    """AUTH PLAIN with an initial response (RFC 5034); poplib has no AUTH of its own."""
    ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    return c._shortcmd(f"AUTH PLAIN {ir}")


def retr_bytes(c: poplib.POP3, n: int) -> bytes:
    """RETR as the wire carried it, dot-unstuffed by poplib, with CRLF line ends restored."""
    _, lines, _ = c.retr(n)
    return b"".join(l + b"\r\n" for l in lines)


def imap_uids(h, user: str) -> list[int]:
    c = h.imap(user)
    try:
        c.select("INBOX")
        typ, data = c.uid("SEARCH", "ALL")
        assert typ == "OK", data
        return [int(x) for x in data[0].split()]
    finally:
        c.logout()


def imap_raw_messages(h, user: str) -> list[bytes]:
    c = h.imap(user)
    try:
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        return [d[1] for d in data if isinstance(d, tuple)]
    finally:
        c.logout()


@pytest.fixture(scope="module")
def server(hermes_factory_module):
    return hermes_factory_module(POP3_CONFIG)


@pytest.fixture
def user(server, fresh_user_on):
    return fresh_user_on(server)


@pytest.fixture
def fresh_user_on():
    n = iter(range(1, 1_000_000))

    def make(h) -> str:
        address = f"pop{os.getpid()}x{next(n)}x{time.time_ns() % 100000}@example.org"
        h.add_account(address, f"pw {address} with spaces")
        return address

    return make


def deliver_n(h, user: str, n: int, prefix: str = "m") -> list[bytes]:
    msgs = [make_message(f"{prefix} {i}", body=f"line one\r\n.starts with a dot\r\n..two dots\r\nmessage {i}\r\n")
            for i in range(n)]
    for m in msgs:
        r = h.deliver(user, m)
        assert r[user][0] == 250, r
    return msgs


# ------------------------------------------------------------------------------------------


def test_capa_greeting_and_user_pass(server, user):
    deliver_n(server, user, 2)
    c = pop(server)
    assert c.getwelcome() == b"+OK Hermes POP3 ready"
    caps = c.capa()
    for cap in ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL", "STLS",
                "IMPLEMENTATION"]:
        assert cap in caps, caps
    assert caps["SASL"] == ["PLAIN"]
    c.user(user)
    assert c.pass_(server.passwords[user]).startswith(b"+OK")
    assert c.stat()[0] == 2
    assert "STLS" not in c.capa() and "USER" not in c.capa()
    c.quit()


def test_wrong_password_is_an_auth_error(server, user):
    c = pop(server)
    c.user(user)
    with pytest.raises(poplib.error_proto) as e:
        c.pass_("wrong")
    assert e.value.args[0].startswith(b"-ERR [AUTH]"), e.value.args
    c.close()


def test_stls_pop3s_and_auth_plain(server, user):
    deliver_n(server, user, 1)
    c = pop(server, user, mode="stls")
    assert c.stat()[0] == 1
    c.quit()
    c = pop(server, user, mode="ssl")
    assert "STLS" not in c.capa()
    assert c.stat()[0] == 1
    c.quit()
    c = pop(server, mode="ssl")
    assert auth_plain(c, user, server.passwords[user]).startswith(b"+OK")
    assert c.stat()[0] == 1
    c.quit()
    # AUTH PLAIN with the "+ " continuation.
    c = pop(server)
    c._putcmd("AUTH PLAIN")
    assert c._getline()[0].startswith(b"+")
    c._putcmd(base64.b64encode(b"\0" + user.encode() + b"\0" + server.passwords[user].encode()).decode())
    assert c._getresp().startswith(b"+OK")
    assert c.stat()[0] == 1
    c.quit()


def test_clear_text_login_refused_without_tls(hermes_factory):
    h = hermes_factory(TLS_ONLY_CONFIG)
    address = "tlsonly@example.org"
    h.add_account(address, "tls only pw")
    c = pop(h)
    caps = c.capa()
    assert "STLS" in caps and "USER" not in caps, caps
    with pytest.raises(poplib.error_proto) as e:
        c.user(address)
    assert e.value.args[0].startswith(b"-ERR [AUTH] Plaintext authentication disallowed"), e.value.args
    c.stls(context=h.ssl_context())
    assert "USER" in c.capa()
    c.user(address)
    assert c.pass_("tls only pw").startswith(b"+OK")
    c.quit()


def test_stat_list_uidl_top_retr_byte_for_byte(server, user):
    sent = deliver_n(server, user, 3)
    stored = imap_raw_messages(server, user)
    assert len(stored) == 3
    c = pop(server, user)
    count, octets = c.stat()
    assert count == 3 and octets == sum(len(s) for s in stored)
    _, listing, _ = c.list()
    assert [l.split() for l in listing] == [[str(i + 1).encode(), str(len(s)).encode()] for i, s in enumerate(stored)]
    _, uidls, _ = c.uidl()
    ids = [l.split()[1] for l in uidls]
    assert len(set(ids)) == 3 and all(1 <= len(i) <= 70 for i in ids)
    assert c.uidl(2).split()[2] == ids[1]
    for i, (s, original) in enumerate(zip(stored, sent)):
        got = retr_bytes(c, i + 1)
        assert got == s, "RETR equals IMAP BODY[] byte for byte"
        trace, body = split_trace_headers(got)
        assert trace and body == original, "RETR equals what was delivered, after the trace headers"
    _, top, _ = c.top(1, 1)
    header, _, rest = stored[0].partition(b"\r\n\r\n")
    assert b"".join(l + b"\r\n" for l in top) == header + b"\r\n\r\n" + rest.split(b"\r\n")[0] + b"\r\n"
    c.quit()
    # RETR does not set \Seen.
    i = server.imap(user)
    i.select("INBOX", readonly=True)
    typ, data = i.search(None, "UNSEEN")
    assert len(data[0].split()) == 3
    i.logout()


def test_dele_quit_removes_and_imap_no_longer_sees_it(server, user):
    deliver_n(server, user, 3)
    before = imap_uids(server, user)
    c = pop(server, user)
    c.dele(2)
    c.quit()
    assert imap_uids(server, user) == [before[0], before[2]]
    c = pop(server, user)
    assert c.stat()[0] == 2
    c.quit()


def test_dele_rset_keeps(server, user):
    deliver_n(server, user, 2)
    c = pop(server, user)
    c.dele(1)
    c.dele(2)
    assert c.stat()[0] == 0
    c.rset()
    assert c.stat()[0] == 2
    c.quit()
    assert len(imap_uids(server, user)) == 2


def test_disconnect_without_quit_keeps(server, user):
    deliver_n(server, user, 2)
    c = pop(server, user)
    c.dele(1)
    c.sock.close()
    time.sleep(0.3)
    assert len(imap_uids(server, user)) == 2


def test_message_expunged_by_imap_during_pop_session(server, user):
    deliver_n(server, user, 2)
    c = pop(server, user)
    i = server.imap(user)
    i.select("INBOX")
    i.store("1", "+FLAGS", "\\Deleted")
    i.expunge()
    i.logout()
    assert c.stat()[0] == 2, "the POP session keeps its login-time numbering"
    with pytest.raises(poplib.error_proto) as e:
        c.retr(1)
    assert b"No such message" in e.value.args[0]
    assert retr_bytes(c, 2)
    c.quit()


def test_pipelined_commands(server, user):
    deliver_n(server, user, 2)
    host, port = endpoint(server, "pop3")
    s = socket.create_connection((host, port), timeout=30)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(f"USER {user}\r\nPASS {server.passwords[user]}\r\nSTAT\r\nUIDL 1\r\nNOOP\r\nQUIT\r\n".encode())
    lines = [f.readline() for _ in range(6)]
    assert all(l.startswith(b"+OK") for l in lines), lines
    assert lines[2].startswith(b"+OK 2 ")
    s.close()


def test_uidls_stable_across_restart(hermes_factory):
    h = hermes_factory(POP3_CONFIG)
    address = "restart@example.org"
    h.add_account(address, "restart pw")
    deliver_n(h, address, 3)
    c = pop(h, address)
    before = c.uidl()[1]
    c.quit()
    assert h.stop() == 0
    h.start()
    c = pop(h, address)
    assert c.uidl()[1] == before
    c.quit()


# ------------------------------------------------------------------------------------------
# fetchmail

FETCHMAIL = shutil.which("fetchmail")


def run_fetchmail(h, user: str, workdir: Path, outdir: Path, keep: bool) -> subprocess.CompletedProcess:
    host, port = endpoint(h, "pop3")
    rc = workdir / "fetchmailrc"
    rc.write_text(
        f'set no syslog\n'
        f'poll {host} service {port} protocol pop3 uidl auth password\n'
        f'  user "{user}" there with password "{h.passwords[user]}" is "tester" here\n'
        f'  {"keep" if keep else "nokeep fetchall"}\n'
        # No opportunistic STLS: the self-signed certificate would not verify; clear text is
        # allowed on loopback by this server's config.
        f"  sslproto ''\n"
        f'  mda "cat > {outdir}/msg.$$"\n'
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(workdir))
    return subprocess.run(
        [FETCHMAIL, "-f", str(rc), "-i", str(workdir / "fetchids"), "--nodetach", "-v"],
        capture_output=True, env=env, timeout=120,
    )


def test_fetchmail_keep_then_nokeep(server, user, tmp_path):
    assert FETCHMAIL is not None, "fetchmail missing: scripts/test.sh installs it"
    sent = deliver_n(server, user, 3, prefix="fetch")
    out = tmp_path / "out"
    out.mkdir()
    r = run_fetchmail(server, user, tmp_path, out, keep=True)
    log = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, log
    files = sorted(out.iterdir())
    assert len(files) == 3, log
    bodies = sorted(split_trace_headers(f.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))[1]
                    for f in files)
    for m in sent:
        assert any(m.split(b"\r\n\r\n", 1)[1] in b for b in bodies), "each delivered body arrives intact"
    assert len(imap_uids(server, user)) == 3, "keep leaves the messages on the server"

    # Second run with keep: UIDLs say everything was seen, nothing is fetched again.
    r = run_fetchmail(server, user, tmp_path, out, keep=True)
    assert r.returncode == 1, (r.stdout + r.stderr).decode(errors="replace")  # 1: no mail
    assert len(list(out.iterdir())) == 3

    # A new message arrives: only it is fetched.
    deliver_n(server, user, 1, prefix="late")
    r = run_fetchmail(server, user, tmp_path, out, keep=True)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    assert len(list(out.iterdir())) == 4

    # Without keep (fetchall): everything is downloaded and deleted at QUIT.
    out2 = tmp_path / "out2"
    out2.mkdir()
    r = run_fetchmail(server, user, tmp_path, out2, keep=False)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    assert len(list(out2.iterdir())) == 4
    assert imap_uids(server, user) == []
    c = pop(server, user)
    assert c.stat() == (0, 0)
    c.quit()
