"""Sieve end to end with the real binary: scripts uploaded over ManageSieve (STARTTLS, SASL
PLAIN) with a raw-socket client, then LMTP deliveries filtered by them — fileinto with
imap4flags checked over IMAP, and vacation replies caught by an SMTP sink (one reply from
`<>`, none within :days, none to list mail). See docs/sieve.md.
"""

from __future__ import annotations

import queue
import time

import pytest

from hermes_testlib import make_message
from sieve_fixtures import ManageSieve, SmtpSink

ALICE = "alice@example.org"
BOB = "bob@example.org"


@pytest.fixture
def sink():
    s = SmtpSink()
    yield s
    s.close()


@pytest.fixture
def server(hermes_factory, sink):
    # Plain-text auth on loopback off for ManageSieve, so STARTTLS is exercised for real.
    return hermes_factory(config={
        "managesieve": {"port": 0, "plaintext_auth_on_loopback": False},
        "sieve": {"relay": f"127.0.0.1:{sink.port}"},
    })


def upload(h, user: str, script: str) -> None:
    c = ManageSieve(h.endpoints["managesieve"])
    assert '"STARTTLS"' in c.greeting[0], c.greeting
    assert c.login(user, h.passwords[user]).startswith("NO (ENCRYPT-NEEDED)")
    caps, final = c.starttls(h.ssl_context())
    assert final.startswith("OK") and '"SASL" "PLAIN"' in caps, caps
    assert c.login(user, h.passwords[user]).startswith("OK")
    assert c.putscript("filters", script).startswith("OK")
    assert c.cmd('SETACTIVE "filters"')[1].startswith("OK")
    assert c.cmd("LISTSCRIPTS") == (['"filters" ACTIVE'], 'OK "Listscripts completed"')
    c.close()


def test_managesieve_rejects_bad_scripts_with_line(server):
    c = ManageSieve(server.endpoints["managesieve"])
    c.starttls(server.ssl_context())
    assert c.login(ALICE, server.passwords[ALICE]).startswith("OK")
    final = c.putscript("bad", 'require "fileinto";\n\nfileinto ;\n')
    assert final.startswith("NO") and "line 3" in final, final
    assert c.putscript("rej", 'require "reject";\nreject "x";\n').startswith("NO")
    assert c.cmd('GETSCRIPT "bad"')[1].startswith("NO (NONEXISTENT)")
    assert c.cmd('HAVESPACE "x" 100000000')[1].startswith("NO (QUOTA/MAXSIZE)")
    c.close()


def test_fileinto_with_flags_end_to_end(server):
    upload(server, ALICE, 'require ["fileinto", "imap4flags", "mailbox"];\n'
                          'if header :contains "subject" "report" {\n'
                          '  fileinto :create :flags "\\\\Flagged" "Work/Reports";\n}\n')
    r = server.deliver(ALICE, make_message(subject="TPS report", to=ALICE))
    assert r[ALICE][0] == 250, r
    r = server.deliver(ALICE, make_message(subject="lunch", to=ALICE))
    assert r[ALICE][0] == 250, r
    c = server.imap(ALICE)
    typ, data = c.select("Work/Reports", readonly=True)
    assert typ == "OK" and int(data[0]) == 1, data
    typ, data = c.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    text = b" ".join(d if isinstance(d, bytes) else d[0] + d[1] for d in data)
    assert b"\\Flagged" in text and b"TPS report" in text, data
    typ, data = c.select("INBOX", readonly=True)
    assert int(data[0]) == 1, data
    c.logout()


def test_vacation_end_to_end(server, sink):
    upload(server, BOB, 'require "vacation";\n'
                        'vacation :days 7 :subject "Out of office" "Back on Monday.";\n')
    first = make_message(subject="question", to=BOB, sender="Friend <friend@example.net>")
    assert server.deliver(BOB, first, sender="friend@example.net")[BOB][0] == 250
    mail_from, rcpt, data = sink.messages.get(timeout=20)
    assert mail_from == "<>" and rcpt == "<friend@example.net>", (mail_from, rcpt)
    assert b"Subject: Out of office\r\n" in data and b"Auto-Submitted: auto-replied\r\n" in data, data
    assert b"Back on Monday." in data
    # Within :days: no second reply. List mail: never a reply.
    again = make_message(subject="another", to=BOB, sender="Friend <friend@example.net>")
    assert server.deliver(BOB, again, sender="friend@example.net")[BOB][0] == 250
    listmail = make_message(subject="digest", to=BOB, sender="list@lists.example.net",
                            extra_headers="List-Id: <staff.lists.example.net>\r\nPrecedence: list\r\n")
    assert server.deliver(BOB, listmail, sender="bounces@lists.example.net")[BOB][0] == 250
    time.sleep(1)
    with pytest.raises(queue.Empty):
        sink.messages.get_nowait()
    c = server.imap(BOB)
    typ, data = c.select("INBOX", readonly=True)
    assert int(data[0]) == 3, "vacation keeps every message"
    c.logout()
