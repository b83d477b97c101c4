"""The `hermes domain|account` CLI, with and without a running server, and its effect on a running
server without a restart."""

from __future__ import annotations

import imaplib

import pytest

from hermes_testlib import Hermes, make_message


def can_login(h: Hermes, user: str, pw: str) -> bool:
    try:
        h.imap(user, pw).logout()
        return True
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
        return False


def test_domain_and_account_commands_without_a_server(tmp_path):
    h = Hermes(tmp_path / "d")
    h.add_domain("example.org")
    h.add_domain("example.net")
    out = h.cli("domain", "list").stdout.decode()
    assert "example.org" in out and "example.net" in out, out

    # an account needs its domain; addresses are validated
    r = h.cli("account", "add", "x@unknown.test", "--password-stdin", input="pw\n", check=False)
    assert r.returncode != 0
    for bad in ["no-at-sign", "../evil@example.org", "a/b@example.org", "@example.org"]:
        r = h.cli("account", "add", bad, "--password-stdin", input="pw\n", check=False)
        assert r.returncode != 0, bad

    h.add_account("alice@example.org", "pw1")
    h.add_account("Bob@Example.org", "pw2")  # stored lowercased
    r = h.cli("account", "add", "alice@example.org", "--password-stdin", input="pw\n", check=False)
    assert r.returncode != 0, "adding an existing account must fail"
    out = h.cli("account", "list").stdout.decode()
    assert "alice@example.org" in out and "bob@example.org" in out, out

    h.cli("account", "passwd", "alice@example.org", "--password-stdin", input="pw-new\n")
    h.cli("account", "del", "bob@example.org")
    out = h.cli("account", "list").stdout.decode()
    assert "alice@example.org" in out and "bob@example.org" not in out, out
    r = h.cli("account", "del", "bob@example.org", check=False)
    assert r.returncode != 0, "deleting a missing account must fail"

    # the hash on disk is argon2id, and no plaintext password is stored anywhere
    files = list((h.data / "directory").rglob("*.json"))
    text = b"".join(f.read_bytes() for f in files)
    assert b"$argon2id$" in text, files
    assert b"pw-new" not in text and b"pw1" not in text

    # the server starts on that directory and the changed password works
    h.start()
    try:
        assert can_login(h, "alice@example.org", "pw-new")
        assert not can_login(h, "alice@example.org", "pw1")
        assert not can_login(h, "bob@example.org", "pw2")
    finally:
        assert h.stop() == 0


def test_account_changes_take_effect_in_a_running_server(hermes_server):
    h = hermes_server
    user = "dave@example.org"
    assert not can_login(h, user, "first")
    h.add_account(user, "first")
    assert can_login(h, user, "first")  # no restart needed

    # a session opened before the password change keeps working; new logins need the new one
    c = h.imap(user, "first")
    h.cli("account", "passwd", user, "--password-stdin", input="second\n")
    assert not can_login(h, user, "first")
    assert can_login(h, user, "second")
    assert c.noop()[0] == "OK"
    c.logout()

    # delivery works for the new account, then deletion stops logins and deliveries
    assert h.deliver(user, make_message("hello dave"))[user][0] == 250
    h.cli("account", "del", user)
    assert not can_login(h, user, "second")
    res = h.deliver(user, make_message("after deletion"))
    assert res[user][0] == 550, res

    # re-adding the address does not resurrect the old mailbox
    h.add_account(user, "third")
    c = h.imap(user, "third")
    typ, data = c.select("INBOX")
    assert typ == "OK" and int(data[0]) == 0, data
    c.logout()


def test_import_accounts_with_precomputed_hashes(hermes_server, tmp_path):
    h = hermes_server
    # take a real argon2id hash from an account the CLI created, then import it for other addresses
    h.add_account("template@example.org", "shared-pass")
    files = list((h.data / "directory").rglob("template.json"))
    assert len(files) == 1, files
    import json
    rec = json.loads(files[0].read_text())
    phc = next(v for v in rec.values() if isinstance(v, str) and v.startswith("$argon2id$"))
    f = tmp_path / "import.tsv"
    f.write_text("".join(f"imp{i}@example.org\t{phc}\n" for i in range(1, 6)))
    h.cli("account", "import", str(f))
    for i in (1, 5):
        assert can_login(h, f"imp{i}@example.org", "shared-pass")
    assert not can_login(h, "imp3@example.org", "other")
    bad = tmp_path / "bad.tsv"
    bad.write_text("imp9@example.org\tnot-a-hash\n")
    r = h.cli("account", "import", str(bad), check=False)
    assert r.returncode != 0
    assert not can_login(h, "imp9@example.org", "not-a-hash")


@pytest.mark.parametrize("cmd", [["account", "list"], ["domain", "list"]])
def test_list_commands_work_while_server_runs(hermes_server, cmd):
    out = hermes_server.cli(*cmd).stdout.decode()
    assert "example.org" in out
