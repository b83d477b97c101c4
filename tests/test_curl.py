"""curl's IMAP client against Hermes: EXAMINE, fetch by UID, LIST, SEARCH and upload (APPEND), over
IMAPS and STARTTLS, verifying the server certificate (no -k)."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess

import pytest

from hermes_testlib import make_message

CURL = shutil.which("curl")


def cert_name(h) -> str:
    """A name the self-signed certificate is valid for (curl checks it): 127.0.0.1 or a DNS name."""
    d = ssl._ssl._test_decode_cert(str(h.data / "tls" / "cert.pem"))  # noqa: SLF001 - stdlib helper
    sans = d.get("subjectAltName", ())
    ips = [v for k, v in sans if k == "IP Address"]
    if "127.0.0.1" in ips:
        return "127.0.0.1"
    dns = [v for k, v in sans if k == "DNS"]
    assert dns, f"certificate has neither IP 127.0.0.1 nor a DNS name: {d}"
    return "localhost" if "localhost" in dns else dns[0]


@pytest.fixture
def curl(hermes_server, fresh_user):
    assert CURL, "curl not found: scripts/test.sh installs it"
    user, pw = fresh_user("curl")
    name = cert_name(hermes_server)

    def run(url_path: str, *extra: str, scheme="imaps", input: bytes | None = None) -> bytes:
        port = hermes_server.endpoints["imaps" if scheme == "imaps" else "imap"].rsplit(":", 1)[1]
        args = [CURL, "-sS", "--max-time", "30", "--cacert", str(hermes_server.data / "tls" / "cert.pem"),
                "-u", f"{user}:{pw}", "--url", f"{scheme}://{name}:{port}/{url_path}"]
        if name != "127.0.0.1":
            args += ["--resolve", f"{name}:{port}:127.0.0.1"]
        if scheme == "imap":
            args += ["--ssl-reqd"]
        r = subprocess.run(args + list(extra), input=input, capture_output=True, timeout=60)
        assert r.returncode == 0, (args, r.returncode, r.stderr.decode(errors="replace"))
        return r.stdout

    run.user = user
    return run


def test_examine_fetch_by_uid_and_list(hermes_server, curl):
    msgs = [make_message(f"curl {i}", body=f"body {i}\r\n" * (i + 1)) for i in range(3)]
    for m in msgs:
        assert hermes_server.deliver(curl.user, m)[curl.user][0] == 250
    stored = []
    c = hermes_server.imap(curl.user)
    c.select("INBOX", readonly=True)
    typ, data = c.fetch("1:*", "(UID BODY.PEEK[])")
    for d in data:
        if isinstance(d, tuple):
            stored.append((int(re.search(rb"UID (\d+)", d[0]).group(1)), d[1]))
    c.logout()
    assert len(stored) == 3

    out = curl("INBOX", "-X", "EXAMINE INBOX")
    assert re.search(rb"^\* 3 EXISTS", out, re.M), out
    assert re.search(rb"UIDVALIDITY \d+", out), out

    for uid, body in stored:
        assert curl(f"INBOX;UID={uid}") == body
        assert body.endswith(msgs[stored.index((uid, body))])

    out = curl("")
    names = set(re.findall(rb'^\* LIST \([^)]*\) (?:"[^"]*"|NIL) "?([^"\r\n]+)"?\r?$', out, re.M))
    assert {b"INBOX", b"Drafts", b"Sent", b"Trash", b"Junk", b"Archive"} <= names, out

    # a section of one message, and SEARCH through the URL query
    assert curl(f"INBOX;UID={stored[1][0]};SECTION=HEADER.FIELDS%20(SUBJECT)").strip() == b"Subject: curl 1"
    out = curl("INBOX?SUBJECT%20%22curl%202%22")
    assert re.search(rb"^\* SEARCH 3\r?$", out, re.M), out


def test_starttls_and_upload(hermes_server, curl, tmp_path):
    msg = make_message("uploaded by curl")
    f = tmp_path / "m.eml"
    f.write_bytes(msg)
    curl("Drafts", "-T", str(f), scheme="imap")  # APPEND over STARTTLS
    c = hermes_server.imap(curl.user)
    typ, data = c.select("Drafts", readonly=True)
    assert int(data[0]) == 1
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == msg
    c.logout()
    out = curl("Drafts", "-X", "EXAMINE Drafts", scheme="imap")
    assert re.search(rb"^\* 1 EXISTS", out, re.M), out
