"""IMAP with Python's imaplib (and a raw socket where imaplib cannot go): login over plain/STARTTLS/
IMAPS, capabilities, folders, APPEND, FETCH, SEARCH, STORE/COPY/MOVE/EXPUNGE, STATUS, MULTIAPPEND,
IDLE, concurrent sessions, failed logins and per-user isolation."""

from __future__ import annotations

import imaplib
import re
import socket
import time

import pytest

from conftest import ACCOUNTS
from hermes_testlib import make_message, mutf7_encode, mutf7_decode, quote

ALICE = "alice@example.org"
BOB = "bob@example.org"

REQUIRED_CAPS = [
    "IMAP4REV1", "IMAP4REV2", "IDLE", "UIDPLUS", "MOVE", "LITERAL+", "NAMESPACE",
    "ENABLE", "ID", "UNSELECT", "CHILDREN", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE",
    "ESEARCH", "MULTIAPPEND", "BINARY",
]


def caps_of(lines: list[bytes], status: bytes = b"") -> set[str]:
    """Capabilities from `* CAPABILITY ...` lines or a `[CAPABILITY ...]` response code."""
    caps = set()
    for l in lines + [status]:
        m = re.search(rb"(?:^\* CAPABILITY |\[CAPABILITY )([^\]\r\n]*)", l)
        if m:
            caps |= {c.upper() for c in m.group(1).decode().split()}
    return caps


def parse_list(lines: list[bytes]) -> dict[str, tuple[set[str], str]]:
    """`* LIST (attrs) "delim" name` lines -> {name: ({attrs lowercased}, delim)}."""
    out = {}
    for l in lines:
        m = re.match(rb'\* LIST \(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*") (.*)\r\n', l, re.S)
        if not m:
            continue
        attrs = {a.lower() for a in m.group(1).decode().split()}
        delim = m.group(2).decode().strip('"').replace("\\\\", "\\")
        name = m.group(3)
        # strip LIST-EXTENDED extended data such as ("CHILDINFO" ("SUBSCRIBED"))
        if name.startswith(b"{"):
            name = name.split(b"\r\n", 1)[1]
        elif name.startswith(b'"'):
            nm = re.match(rb'"((?:[^"\\]|\\.)*)"', name)
            name = nm.group(1).replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        else:
            name = name.split(b" ")[0]
        out[name.decode()] = (attrs, delim)
    return out


def uid_fetch_literal(c: imaplib.IMAP4, uid: int | str, item: str) -> bytes:
    typ, data = c.uid("FETCH", str(uid), item)
    assert typ == "OK", (typ, data)
    for d in data:
        if isinstance(d, tuple):
            return d[1]
    raise AssertionError(f"no literal in FETCH {item} response: {data!r}")


def uid_fetch_text(c: imaplib.IMAP4, uid: int | str, item: str) -> bytes:
    typ, data = c.uid("FETCH", str(uid), item)
    assert typ == "OK", (typ, data)
    return b"".join(d if isinstance(d, bytes) else b"".join(d) for d in data if d is not None)


def appenduid(resp) -> tuple[int, int]:
    typ, data = resp
    assert typ == "OK", resp
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, f"APPEND OK without APPENDUID: {data!r}"
    return int(m.group(1)), int(m.group(2))


def uid_search(c: imaplib.IMAP4, *criteria: str, charset=None) -> list[int]:
    typ, data = c.uid("SEARCH", *(["CHARSET", charset] if charset else []), *criteria)
    assert typ == "OK", (typ, data)
    return sorted(int(x) for x in (data[0] or b"").split())


# ----------------------------------------------------------------------------------------------
# Login and capabilities


@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
def test_login_over_plain_starttls_and_imaps(hermes_server, mode):
    c = hermes_server.imap(ALICE, mode=mode)
    assert c.state == "AUTH"
    typ, _ = c.noop()
    assert typ == "OK"
    typ, data = c.select("INBOX")
    assert typ == "OK"
    assert c.logout()[0] == "BYE"


def test_authenticate_plain_with_sasl_ir(hermes_server):
    r = hermes_server.raw()
    import base64
    tok = base64.b64encode(f"\0{ALICE}\0{ACCOUNTS[ALICE]}".encode()).decode()
    assert r.status_of(f"AUTHENTICATE PLAIN {tok}").startswith(b"OK")
    r.ok("SELECT INBOX")
    r.close()


def test_logindisabled_before_tls_when_loopback_plaintext_is_off(hermes_factory):
    h = hermes_factory(config={"imap": {"plaintext_auth_on_loopback": False}})
    r = h.raw()
    caps = caps_of(r.ok("CAPABILITY"))
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps, caps
    assert "AUTH=PLAIN" not in caps, caps
    status = r.status_of(f"LOGIN {quote(ALICE)} {quote(ACCOUNTS[ALICE])}")
    assert status.startswith((b"NO", b"BAD")), status
    r.close()

    # after STARTTLS the same login works, and LOGINDISABLED is gone
    c = h.imap(mode="starttls")
    typ, data = c.capability()
    assert "LOGINDISABLED" not in data[0].decode().upper().split()
    c.login(ALICE, ACCOUNTS[ALICE])
    c.logout()
    # implicit TLS too
    h.imap(ALICE, mode="ssl").logout()


def test_capabilities_list_every_required_extension(hermes_server):
    r = hermes_server.raw()
    pre = caps_of([r.greeting] + r.ok("CAPABILITY"))
    assert "STARTTLS" in pre, pre
    assert "IMAP4REV1" in pre and "IMAP4REV2" in pre, pre
    assert "AUTH=PLAIN" in pre and "SASL-IR" in pre, pre  # authentication capabilities: before login
    untagged, status = r.cmd(f"LOGIN {quote(ALICE)} {quote(ACCOUNTS[ALICE])}")
    assert status.split(b" ")[1] == b"OK", status
    post = caps_of(r.ok("CAPABILITY"))
    missing = [c for c in REQUIRED_CAPS if c not in post]
    assert not missing, f"missing after login: {missing}; got {sorted(post)}"
    assert any(c.startswith("APPENDLIMIT") for c in post), post
    r.close()


# ----------------------------------------------------------------------------------------------
# Folders


def test_default_folders_with_special_use(hermes_server, fresh_user):
    user, _ = fresh_user()
    r = hermes_server.raw(login=user)
    boxes = parse_list(r.ok('LIST "" "*"'))
    expected = {"Drafts": "\\drafts", "Sent": "\\sent", "Trash": "\\trash", "Junk": "\\junk", "Archive": "\\archive"}
    assert "INBOX" in boxes, boxes
    for name, attr in expected.items():
        assert name in boxes, boxes
        assert attr in boxes[name][0], (name, boxes[name])
    # RFC 6154 LIST (SPECIAL-USE) returns exactly the special-use mailboxes
    special = parse_list(r.ok('LIST (SPECIAL-USE) "" "*"'))
    assert set(special) == set(expected), special
    r.close()


def test_create_rename_delete_with_hierarchy_and_non_ascii(hermes_server, fresh_user):
    user, _ = fresh_user()
    r = hermes_server.raw(login=user)
    delim = parse_list(r.ok('LIST "" ""'))
    d = next(iter(delim.values()))[1] if delim else "/"
    assert d in ("/", "."), delim

    r.ok('CREATE "Projects"')
    r.ok(f'CREATE "Projects{d}2026"')
    boxes = parse_list(r.ok('LIST "" "*"'))
    assert f"Projects{d}2026" in boxes and "Projects" in boxes, boxes
    assert "\\haschildren" in boxes["Projects"][0], boxes["Projects"]
    assert "\\hasnochildren" in boxes[f"Projects{d}2026"][0]

    tiny = b"Subject: a\r\n\r\n"
    r.ok(f'APPEND "Projects{d}2026" {{{len(tiny)}+}}\r\n'.encode() + tiny)
    r.ok('RENAME "Projects" "Work"')
    boxes = parse_list(r.ok('LIST "" "*"'))
    assert "Projects" not in boxes and f"Projects{d}2026" not in boxes, boxes
    assert "Work" in boxes and f"Work{d}2026" in boxes, boxes
    st = r.ok(f'STATUS "Work{d}2026" (MESSAGES)')
    assert re.search(rb"MESSAGES 1\b", b"".join(st)), st  # the child's mail moved with it

    # non-ASCII names travel as modified UTF-7
    name = f"Reçus{d}Été 日本"
    enc = mutf7_encode(name)
    r.ok(f"CREATE {quote(enc)}")
    boxes = parse_list(r.ok('LIST "" "*"'))
    assert enc in boxes, (enc, boxes)
    assert mutf7_decode(enc) == name
    assert mutf7_encode("Reçus") in boxes
    r.ok(f"SELECT {quote(enc)}")
    r.ok("UNSELECT")
    renamed = mutf7_encode(f"Reçus{d}Überarbeitet")
    r.ok(f"RENAME {quote(enc)} {quote(renamed)}")
    boxes = parse_list(r.ok('LIST "" "*"'))
    assert renamed in boxes and enc not in boxes, boxes

    r.ok(f'DELETE "Work{d}2026"')
    r.ok('DELETE "Work"')
    r.ok(f"DELETE {quote(renamed)}")
    boxes = parse_list(r.ok('LIST "" "*"'))
    assert "Work" not in boxes and f"Work{d}2026" not in boxes and renamed not in boxes, boxes
    # INBOX cannot be deleted; a missing mailbox cannot be selected
    assert r.status_of("DELETE INBOX").startswith(b"NO")
    assert r.status_of('SELECT "Work"').startswith(b"NO")
    r.close()


# ----------------------------------------------------------------------------------------------
# APPEND and FETCH

MULTIPART = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: Structure test\r\n"
    b"Date: Mon, 02 Mar 2026 09:30:00 +0100\r\n"
    b"Message-ID: <structure.1@test.example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Hello Bob, see the attachment.\r\n"
    b"--XYZ\r\n"
    b"Content-Type: application/octet-stream; name=\"blob.bin\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgcICf/+/fz7+g==\r\n"
    b"--XYZ--\r\n"
)
BLOB = bytes(range(10)) + bytes([0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA])


def test_append_with_flags_and_internal_date(hermes_server, fresh_user):
    user, pw = fresh_user()
    c = hermes_server.imap(user, pw)
    msg = make_message("dated")
    _, uid = appenduid(c.append("INBOX", r"(\Flagged $Project)", '"01-Jan-2020 10:00:00 +0000"', msg))
    c.select("INBOX", readonly=True)
    meta = uid_fetch_text(c, uid, "(FLAGS INTERNALDATE RFC822.SIZE)")
    assert re.search(rb"\\Flagged", meta) and b"$Project" in meta, meta
    assert b"\\Seen" not in meta, meta
    # date-day-fixed is (SP DIGIT) / 2DIGIT
    assert re.search(rb'INTERNALDATE "( 1|01)-Jan-2020 10:00:00 \+0000"', meta), meta
    assert re.search(rb"RFC822.SIZE %d\b" % len(msg), meta), meta
    assert uid_fetch_literal(c, uid, "BODY.PEEK[]") == msg
    c.logout()


def test_fetch_body_sections_structure_envelope_partial_binary(hermes_server, fresh_user):
    user, pw = fresh_user()
    c = hermes_server.imap(user, pw)
    _, uid = appenduid(c.append("INBOX", None, None, MULTIPART))
    c.select("INBOX")

    hdr = uid_fetch_literal(c, uid, "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    assert hdr == b"Subject: Structure test\r\n\r\n", hdr
    assert b"\\Seen" not in uid_fetch_text(c, uid, "FLAGS")  # PEEK does not set \Seen

    assert uid_fetch_literal(c, uid, "BODY.PEEK[]<0.10>") == MULTIPART[:10]
    assert uid_fetch_literal(c, uid, "BODY.PEEK[1]") == b"Hello Bob, see the attachment."
    assert uid_fetch_literal(c, uid, "BODY.PEEK[2]") == b"AAECAwQFBgcICf/+/fz7+g=="

    bs = uid_fetch_text(c, uid, "BODYSTRUCTURE").lower()
    assert b'"mixed"' in bs and b'"xyz"' in bs, bs
    assert re.search(rb'\("text" "plain" \("charset" "us-ascii"\)', bs), bs
    assert re.search(rb'"application" "octet-stream" \("name" "blob.bin"\) nil nil "base64"', bs), bs

    env = uid_fetch_text(c, uid, "ENVELOPE")
    assert b'"Mon, 02 Mar 2026 09:30:00 +0100" "Structure test"' in env, env
    assert b'(("Alice Example" NIL "alice" "example.org"))' in env, env
    assert b'(("Bob" NIL "bob" "example.org"))' in env, env
    assert b'"<structure.1@test.example.org>"' in env, env

    # BINARY returns the decoded part
    assert uid_fetch_literal(c, uid, "BINARY.PEEK[2]") == BLOB
    assert re.search(rb"BINARY.SIZE\[2\] %d\b" % len(BLOB), uid_fetch_text(c, uid, "BINARY.SIZE[2]"))

    # BODY[] (not PEEK) returns the exact bytes and sets \Seen
    assert uid_fetch_literal(c, uid, "BODY[]") == MULTIPART
    assert b"\\Seen" in uid_fetch_text(c, uid, "FLAGS")
    c.logout()


# ----------------------------------------------------------------------------------------------
# SEARCH

QP_BODY = (
    b"From: Bob <bob@example.org>\r\nTo: x@example.org\r\nSubject: Lunch\r\n"
    b"Date: Sat, 15 Jun 2024 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=FC=DFe aus K=F6ln, bis morgen.\r\n"
)


@pytest.fixture
def search_box(hermes_server, fresh_user):
    user, pw = fresh_user()
    c = hermes_server.imap(user, pw)
    uids = {}
    uids["a1"] = appenduid(c.append("INBOX", None, '"01-Jan-2020 08:00:00 +0000"',
                                    make_message("Quarterly report", sender="Alice <alice@example.org>")))[1]
    uids["b"] = appenduid(c.append("INBOX", None, '"15-Jun-2024 12:00:00 +0000"', QP_BODY))[1]
    uids["c"] = appenduid(c.append("INBOX", r"(\Flagged)", '"01-Jan-2026 08:00:00 +0000"',
                                   make_message("Big one", body="z" * 20000 + "\r\n", sender="carol@example.org")))[1]
    uids["a2"] = appenduid(c.append("INBOX", None, '"10-Nov-2026 08:00:00 +0000"',
                                    make_message("Lunch again", sender="Alice <alice@example.org>")))[1]
    c.select("INBOX")
    yield c, uids
    c.logout()


def test_search_keys(search_box):
    c, u = search_box
    assert uid_search(c, "FROM", "bob") == [u["b"]]
    assert uid_search(c, "SUBJECT", "lunch") == sorted([u["b"], u["a2"]])
    assert uid_search(c, "SINCE", "1-Jan-2025") == sorted([u["c"], u["a2"]])
    assert uid_search(c, "BEFORE", "1-Jan-2021") == [u["a1"]]
    assert uid_search(c, "LARGER", "10000") == [u["c"]]
    assert uid_search(c, "SMALLER", "10000") == sorted([u["a1"], u["b"], u["a2"]])
    assert uid_search(c, "UID", f"{u['b']}:{u['c']}") == sorted([u["b"], u["c"]])
    assert uid_search(c, "UID", f"{u['c']}:*") == sorted([u["c"], u["a2"]])
    assert uid_search(c, "NOT", "FROM", "alice") == sorted([u["b"], u["c"]])
    assert uid_search(c, "OR", "FROM", "bob", "FROM", "carol") == sorted([u["b"], u["c"]])
    assert uid_search(c, "FLAGGED") == [u["c"]]
    assert uid_search(c, "NOT", "(OR FLAGGED FROM bob)") == sorted([u["a1"], u["a2"]])
    assert uid_search(c, "ALL") == sorted(u.values())


@pytest.mark.parametrize("needle", ["Köln", "Grüße", "köln"])
def test_search_text_finds_decoded_iso_8859_1_quoted_printable(search_box, needle):
    c, u = search_box
    c.literal = needle.encode("utf-8")
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "TEXT")
    assert typ == "OK", data
    assert [int(x) for x in data[0].split()] == [u["b"]], (needle, data)
    c.literal = needle.encode("utf-8")
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "BODY")
    assert [int(x) for x in data[0].split()] == [u["b"]], (needle, data)


def test_esearch_return_count_min_max(hermes_server, fresh_user):
    user, _ = fresh_user()
    r = hermes_server.raw(login=user)
    for subj in ["lunch one", "other", "lunch two", "lunch three"]:
        m = make_message(subj)
        r.ok(f"APPEND INBOX {{{len(m)}+}}\r\n".encode() + m)
    r.ok("SELECT INBOX")
    lines = r.ok("UID SEARCH RETURN (COUNT MIN MAX) SUBJECT lunch")
    es = [l for l in lines if l.startswith(b"* ESEARCH")]
    assert len(es) == 1, lines
    tokens = dict(re.findall(rb"\b(COUNT|MIN|MAX) (\d+)", es[0]))
    assert b" UID " in es[0] + b" ", es
    allu = [int(x) for x in re.findall(rb"\d+", b"".join(r.ok("UID SEARCH ALL")).split(b"SEARCH", 1)[1])]
    assert len(allu) == 4
    assert tokens == {b"COUNT": b"3", b"MIN": str(allu[0]).encode(), b"MAX": str(allu[3]).encode()}, es
    # ALL returns a sequence set
    lines = r.ok("SEARCH RETURN (ALL) SUBJECT lunch")
    assert any(re.search(rb"ALL 1,3:4\b", l) for l in lines), lines
    r.close()


# ----------------------------------------------------------------------------------------------
# STORE, COPY, MOVE, EXPUNGE, STATUS


def test_store_copy_move_expunge(hermes_server, fresh_user):
    user, pw = fresh_user()
    c = hermes_server.imap(user, pw)
    msgs = [make_message(f"m{i}") for i in range(3)]
    uids = [appenduid(c.append("INBOX", None, None, m))[1] for m in msgs]
    c.select("INBOX")

    assert c.uid("STORE", str(uids[0]), "+FLAGS", r"(\Flagged $Work)")[0] == "OK"
    f = uid_fetch_text(c, uids[0], "FLAGS")
    assert b"\\Flagged" in f and b"$Work" in f, f
    c.uid("STORE", str(uids[0]), "-FLAGS", r"(\Flagged)")
    f = uid_fetch_text(c, uids[0], "FLAGS")
    assert b"\\Flagged" not in f and b"$Work" in f, f
    c.uid("STORE", str(uids[0]), "FLAGS", r"(\Answered)")
    f = uid_fetch_text(c, uids[0], "FLAGS")
    assert b"\\Answered" in f and b"$Work" not in f, f

    c.logout()

    # COPY and MOVE over a raw connection, to see the COPYUID response codes (imaplib drops them)
    r = hermes_server.raw(login=user)
    r.ok("SELECT INBOX")
    _, status = r.cmd(f"UID COPY {uids[0]} Archive")
    m = re.search(rb"OK \[COPYUID (\d+) (\d+) (\d+)\]", status)
    assert m and int(m.group(2)) == uids[0], status
    archived_uid = int(m.group(3))
    lines, status = r.cmd(f"UID MOVE {uids[1]} Trash")
    assert status.split(b" ")[1] == b"OK", status
    cu = [l for l in lines + [status] if b"COPYUID" in l]
    assert cu and re.search(rb"COPYUID \d+ %d \d+" % uids[1], cu[0]), lines
    assert b"* 2 EXPUNGE\r\n" in lines, lines

    # \Deleted + UID EXPUNGE removes only the given UID
    r.ok(f"UID STORE {uids[0]},{uids[2]} +FLAGS.SILENT (\\Deleted)")
    lines = r.ok(f"UID EXPUNGE {uids[2]}")
    assert lines == [b"* 2 EXPUNGE\r\n"], lines
    left = b"".join(r.ok("UID SEARCH ALL"))
    assert re.findall(rb"\d+", left.split(b"SEARCH", 1)[1]) == [str(uids[0]).encode()], left
    lines = r.ok("EXPUNGE")
    assert lines == [b"* 1 EXPUNGE\r\n"], lines

    # copies are intact, byte for byte
    r.ok("SELECT Archive")
    body = b"".join(r.ok(f"UID FETCH {archived_uid} BODY.PEEK[]"))
    assert msgs[0] in body
    r.ok("SELECT Trash")
    body = b"".join(r.ok("FETCH 1 BODY.PEEK[]"))
    assert msgs[1] in body
    r.close()


def test_status_messages_uidnext_size(hermes_server, fresh_user):
    user, pw = fresh_user()
    c = hermes_server.imap(user, pw)
    a, b = make_message("s1"), make_message("s2", body="y" * 3000 + "\r\n")
    appenduid(c.append("Drafts", None, None, a))
    _, last = appenduid(c.append("Drafts", None, None, b))
    typ, data = c.status("Drafts", "(MESSAGES UIDNEXT SIZE UNSEEN)")
    assert typ == "OK", data
    s = data[0]
    assert re.search(rb"MESSAGES 2\b", s), s
    assert re.search(rb"UIDNEXT %d\b" % (last + 1), s), s
    assert re.search(rb"SIZE %d\b" % (len(a) + len(b)), s), s
    assert re.search(rb"UNSEEN 2\b", s), s
    c.logout()


def test_multiappend_with_sync_and_nonsync_literals(hermes_server, fresh_user):
    user, _ = fresh_user()
    r = hermes_server.raw(login=user)
    m1, m2, m3 = make_message("multi 1"), make_message("multi 2"), make_message("multi 3")
    t = r.tag()
    r.send(f"{t} APPEND INBOX (\\Seen) {{{len(m1)}}}\r\n")
    assert r.readline().startswith(b"+")
    r.send(m1 + f' (\\Flagged) "01-Jan-2021 00:00:00 +0000" {{{len(m2)}}}\r\n'.encode())
    assert r.readline().startswith(b"+")
    r.send(m2 + f" {{{len(m3)}+}}\r\n".encode() + m3 + b"\r\n")
    _, status = r.read_tagged(t)
    m = re.search(rb"OK \[APPENDUID \d+ (\d+):(\d+)\]", status)
    assert m and int(m.group(2)) - int(m.group(1)) == 2, status
    r.ok("SELECT INBOX")
    out = b"".join(r.ok("FETCH 1:* (FLAGS BODY.PEEK[])"))
    assert m1 in out and m2 in out and m3 in out
    fl = re.findall(rb"\* (\d) FETCH \(FLAGS \(([^)]*)\)", out)
    assert [f[0] for f in fl] == [b"1", b"2", b"3"], out[:300]
    fl = [set(f.split()) - {b"\\Recent"} for _, f in fl]  # \Recent exists for IMAP4rev1 clients only
    assert fl == [{b"\\Seen"}, {b"\\Flagged"}, set()], fl
    r.close()


# ----------------------------------------------------------------------------------------------
# IDLE and concurrent sessions


def test_idle_hears_of_lmtp_delivery_within_one_second(hermes_server, fresh_user):
    user, _ = fresh_user()
    r = hermes_server.raw(login=user)
    r.ok("SELECT INBOX")
    t = r.tag()
    r.send(f"{t} IDLE\r\n")
    assert r.readline().startswith(b"+"), "no continuation for IDLE"
    for i in range(3):
        res = hermes_server.deliver(user, make_message(f"idle {i}"))
        assert res[user][0] == 250, res
        delivered = time.monotonic()
        r.sock.settimeout(1.0)
        seen = None
        while seen is None:
            try:
                line = r.readline()
            except socket.timeout:
                pytest.fail(f"no EXISTS within 1 s of delivery {i}")
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                seen = int(m.group(1))
        assert time.monotonic() - delivered < 1.0
        assert seen == i + 1
    r.sock.settimeout(30)
    r.send(b"DONE\r\n")
    _, status = r.read_tagged(t)
    assert status.split(b" ")[1] == b"OK", status
    r.close()


def test_two_sessions_see_each_others_flags_and_expunges(hermes_server, fresh_user):
    user, pw = fresh_user()
    c = hermes_server.imap(user, pw)
    for i in range(3):
        appenduid(c.append("INBOX", None, None, make_message(f"shared {i}")))
    c.logout()
    a = hermes_server.raw(login=user)
    b = hermes_server.raw(login=user)
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")

    a.ok("STORE 1 +FLAGS (\\Flagged)")
    seen = b"".join(b.ok("NOOP"))
    assert re.search(rb"\* 1 FETCH \([^\r\n]*FLAGS \([^)]*\\Flagged", seen), seen

    a.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    seen = b"".join(b.ok("NOOP"))
    assert b"* 3 EXPUNGE\r\n" in seen, seen

    b.ok("STORE 2 +FLAGS (\\Answered)")
    seen = b"".join(a.ok("NOOP"))
    assert re.search(rb"\* 2 FETCH \([^\r\n]*\\Answered", seen), seen

    tiny = b"Subject: n\r\n\r\n"
    b.ok(f"APPEND INBOX {{{len(tiny)}+}}\r\n".encode() + tiny)
    seen = b"".join(a.ok("NOOP"))
    assert b"* 3 EXISTS\r\n" in seen, seen
    a.close()
    b.close()


# ----------------------------------------------------------------------------------------------
# Authentication failures and isolation


def test_wrong_password_is_refused_with_authenticationfailed_after_a_delay(hermes_server):
    r = hermes_server.raw()
    delay = hermes_server.config["limits"]["auth_fail_delay_ms"] / 1000
    for login, pw in [(ALICE, "wrong-password"), ("nobody@example.org", "whatever")]:
        t0 = time.monotonic()
        status = r.status_of(f"LOGIN {quote(login)} {quote(pw)}")
        elapsed = time.monotonic() - t0
        assert status.startswith(b"NO [AUTHENTICATIONFAILED]"), status
        assert elapsed >= delay * 0.9, f"refused after {elapsed:.3f}s, configured delay {delay}s"
    # the session is still usable
    assert r.status_of(f"LOGIN {quote(ALICE)} {quote(ACCOUNTS[ALICE])}").startswith(b"OK")
    r.close()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        hermes_server.imap(ALICE, "not-it")


def test_a_user_cannot_reach_another_users_mailbox(hermes_server):
    marker = f"isolation-{time.time_ns()}"
    res = hermes_server.deliver(BOB, make_message("for bob only", body=f"{marker}\r\n"))
    assert res[BOB][0] == 250
    r = hermes_server.raw(login=ALICE)
    for name in [
        "user/bob@example.org/INBOX", "user/bob@example.org", "~bob@example.org/INBOX", "../bob@example.org/INBOX",
        "../../bob@example.org", "/bob@example.org/INBOX", "bob@example.org/INBOX", "#shared/bob@example.org",
        "Other Users/bob@example.org/INBOX", "..", "../INBOX",
    ]:
        status = r.status_of(f"SELECT {quote(name)}")
        assert status.startswith((b"NO", b"BAD")), (name, status)
    boxes = parse_list(r.ok('LIST "" "*"'))
    for box in boxes:
        if "\\noselect" in boxes[box][0] or "\\nonexistent" in boxes[box][0]:
            continue
        r.ok(f"EXAMINE {quote(box)}")
        found = b"".join(r.ok(f"SEARCH TEXT {marker}"))
        assert re.findall(rb"\d+", found.split(b"SEARCH", 1)[1]) == [], (box, found)
    r.close()
    # bob does see it
    rb_ = hermes_server.raw(login=BOB)
    rb_.ok("EXAMINE INBOX")
    found = b"".join(rb_.ok(f"SEARCH TEXT {marker}"))
    assert re.findall(rb"\d+", found.split(b"SEARCH", 1)[1]), found
    rb_.close()
