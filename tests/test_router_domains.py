"""Routing across 200 virtual domains (issue 4 point 3), against a real `hermes up`.

200 domains `dN.test`, each with accounts `a@` and `b@`, are created in one batch with
`hermes account import --create-domains` (one argon2id hash reused, as migrations do). Every
10th domain gets an alias `team@` (to a@ and b@), every 25th a catch-all (to a@). Then one SMTP
session on the MX port sends, for a sample spread over all 200 domains: to a@ (250), to an
unknown user (550 5.1.1 unless the domain has a catch-all, which takes it), to team@ where it
exists (one copy to each target); and the store is checked over IMAP: each expected copy is
in the right INBOX, and no other copy anywhere in the sample.
"""

from __future__ import annotations

import json
import smtplib

from hermes_testlib import wait_for
from router_fixtures import *  # noqa: F401,F403
from router_fixtures import ALICE, smtp, unique

DOMAINS = 200
PASSWORD = "alice-secret-1"  # alice's password: her hash is reused for every imported account


def argon_hash_of(h, address: str) -> str:
    local, domain = address.split("@")
    for f in (h.data / "directory").rglob(f"{local}.json"):
        if domain not in str(f):
            continue
        rec = json.loads(f.read_text())
        for v in rec.values():
            if isinstance(v, str) and v.startswith("$argon2id$"):
                return v
    raise AssertionError(f"no argon2id hash found for {address}")


def count_marker(h, user: str, marker: bytes) -> int:
    c = h.imap(user, PASSWORD)
    try:
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, data = c.search(None, "SUBJECT", marker.decode())
        assert typ == "OK", data
        return len(data[0].split())
    finally:
        c.logout()


def test_200_virtual_domains(router, tmp_path):
    h = router
    run = unique("vd")
    pw_hash = argon_hash_of(h, ALICE)
    lines = [f"{u}@d{i}.test\t{pw_hash}" for i in range(DOMAINS) for u in ("a", "b")]
    f = tmp_path / "import.tsv"
    f.write_text("\n".join(lines) + "\n")
    h.cli("account", "import", str(f), "--create-domains")
    listed = json.loads(h.cli("domain", "list", "--json").stdout)
    assert all(f"d{i}.test" in listed for i in range(DOMAINS)), f"{len(listed)} domains listed"
    team = [i for i in range(DOMAINS) if i % 10 == 3]
    catch_all = [i for i in range(DOMAINS) if i % 25 == 7]
    for i in team:
        h.cli("alias", "add", f"team@d{i}.test", f"a@d{i}.test", f"b@d{i}.test")
    for i in catch_all:
        h.cli("alias", "add", f"@d{i}.test", f"a@d{i}.test")

    sample = sorted(set(range(0, DOMAINS, 9)) | set(team[::3]) | set(catch_all) | {DOMAINS - 1})
    expected: dict[str, int] = {}
    c = smtp(h)
    c.ehlo()
    try:
        for i in sample:
            d = f"d{i}.test"
            msg = f"Subject: {run}\r\nTo: a@{d}\r\n\r\nto a@{d}\r\n".encode()
            assert c.sendmail("sender@remote.example", [f"a@{d}"], msg) == {}
            expected[f"a@{d}"] = expected.get(f"a@{d}", 0) + 1
            c.mail("sender@remote.example")
            code, text = c.rcpt(f"nobody-{run}@{d}")
            if i in catch_all:
                assert code == 250, (d, code, text)
                c.data(f"Subject: {run}\r\n\r\nto the catch-all of {d}\r\n".encode())
                expected[f"a@{d}"] += 1
            else:
                assert (code, text[:5]) == (550, b"5.1.1"), (d, code, text)
                c.rset()
            if i in team:
                assert c.sendmail("sender@remote.example", [f"team@{d}"], f"Subject: {run}\r\n\r\nteam\r\n".encode()) == {}
                expected[f"a@{d}"] += 1
                expected[f"b@{d}"] = expected.get(f"b@{d}", 0) + 1
        # A domain that is not ours, from a stranger: relay denied (no domain leaks into another).
        c.mail("sender@remote.example")
        code, _ = c.rcpt("a@d9999.test")
        assert code == 554, code
        c.rset()
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass
    for i in sample:
        expected.setdefault(f"b@d{i}.test", 0)
    assert len({a.split("@")[1] for a in expected}) == len(sample) >= 25

    def all_delivered():
        got = {u: count_marker(h, u, run.encode()) for u in expected}
        return got if got == expected else None

    try:
        wait_for(all_delivered, 60, interval=0.5, what="every copy in its INBOX")
    except AssertionError:
        got = {u: count_marker(h, u, run.encode()) for u in expected}
        diff = {u: (expected[u], got[u]) for u in expected if expected[u] != got[u]}
        raise AssertionError(f"expected/got differ: {diff}\n{h.log_tail()}")
