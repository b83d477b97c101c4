"""The admin web UI and API end to end: a real `hermes up`, driven over HTTPS like a browser.

First-boot setup with the token `hermes up` printed, sign-in, CSRF and Origin checks, session
renewal at login (no fixation), login throttling, domains and accounts made through the forms
(the account then logs in over IMAP), quota changes visible to the CLI, re-authentication
before deletion, API tokens, the audit log and the security headers.

Tests share one server (module scope) and run in file order: `test_first_boot_setup` creates
the admin the others sign in as.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from admin_client import AdminClient, setup_token
from hermes_testlib import make_message

ADMIN = "root"
ADMIN_PW = "correct-horse-battery"


@pytest.fixture(scope="module")
def server(hermes_factory_module):
    return hermes_factory_module()


def client(server) -> AdminClient:
    return AdminClient(server.endpoints["admin"], server.ssl_context())


@pytest.fixture(scope="module")
def admin(server):
    """A signed-in client (after setup)."""
    c = client(server)
    r = c.login(ADMIN, ADMIN_PW)
    assert r.status == 303, r
    return c


def test_first_boot_setup(server):
    assert "admin" in server.endpoints, server.endpoints
    token = setup_token(server.log_tail(400))
    stored = (server.data / "admin" / "setup-token").read_text()
    assert token not in stored, "only a digest of the token is stored"
    assert token not in "\n".join(l for l in server.log_tail(400).splitlines() if l.startswith("{")), \
        "the token never reaches the JSON log"
    c = client(server)
    # Before setup, the login page sends the browser to /setup.
    r = c.get("/login")
    assert r.status == 303 and r.header("Location") == "/setup"
    r = c.setup("not-the-token", ADMIN, ADMIN_PW)
    assert r.status == 422 and "setup token is wrong" in r.text
    r = c.setup(token, ADMIN, "short")
    assert r.status == 422 and "passwords must be" in r.text
    r = c.setup(token, ADMIN, ADMIN_PW)
    assert r.status == 303 and r.header("Location") == "/", r
    assert c.session(), "signed in after setup"
    r = c.get("/")
    assert r.status == 200 and "Dashboard" in r.text and ">store<" in r.text
    # The token is burnt: a second setup is refused, /setup now sends to /login.
    assert not (server.data / "admin" / "setup-token").exists()
    other = client(server)
    assert other.get("/setup").status == 303
    r = other.post_form("/setup", {"token": token, "name": "evil", "new_password": ADMIN_PW, "confirm": ADMIN_PW},
                        csrf_from="/login")
    assert r.status == 303 and r.header("Location") == "/login"
    assert not (server.data / "admin" / "accounts" / "evil.json").exists()


def test_security_headers_and_no_external_resources(admin):
    r = admin.get("/accounts")
    assert r.status == 200
    csp = r.header("Content-Security-Policy")
    assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("Referrer-Policy") == "same-origin"
    assert r.header("Strict-Transport-Security").startswith("max-age=")
    assert r.header("Cache-Control") == "no-store"
    assert "<script" not in r.text
    assert not re.search(r'(src|href)="https?://', r.text), "nothing loaded from outside"
    css = admin.get("/static/admin.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert len(r.body) + len(css.body) < 200_000


def test_session_cookie_flags_and_renewal_at_login(server):
    c = client(server)
    r = c.login(ADMIN, ADMIN_PW)
    cookie = [v for v in r.headers.get_all("Set-Cookie") if v.startswith("__Host-hermes_admin=")][0]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie, cookie
    first = c.session()
    # Signing in again (e.g. an attacker planted `first` in the victim's browser) mints a new
    # id and destroys the presented one.
    c.login(ADMIN, ADMIN_PW)
    second = c.session()
    assert second and second != first
    planted = client(server)
    planted.cookies["__Host-hermes_admin"] = first
    r = planted.get("/")
    assert r.status == 303 and r.header("Location") == "/login", "the old session id is dead"
    # A made-up session id is not adopted either.
    forged = client(server)
    forged.cookies["__Host-hermes_admin"] = "A" * 43
    assert forged.get("/").status == 303
    forged.login(ADMIN, ADMIN_PW)
    assert forged.session() != "A" * 43


def test_csrf_and_origin_checks(admin, server):
    # No CSRF field.
    r = admin.request("POST", "/domains", form={"domain": "nocsrf.example"})
    assert r.status == 403
    # Wrong CSRF field.
    r = admin.request("POST", "/domains", form={"domain": "nocsrf.example", "csrf": "x" * 43})
    assert r.status == 403
    # Right token, foreign Origin.
    token = admin.csrf("/domains")
    r = admin.request("POST", "/domains", form={"domain": "nocsrf.example", "csrf": token},
                      origin="https://evil.example")
    assert r.status == 403
    # Right token, neither Origin nor Referer.
    r = admin.request("POST", "/domains", form={"domain": "nocsrf.example", "csrf": token}, origin=False)
    assert r.status == 403
    # A Referer from this origin is accepted when Origin is absent.
    r = admin.request("POST", "/domains", form={"domain": "referer.example", "csrf": token}, origin=False,
                      headers={"Referer": admin.origin + "/domains"})
    assert r.status == 303, r
    # The API with the session cookie needs X-CSRF-Token on changes.
    r = admin.request("POST", "/api/domains", json={"domain": "nocsrf.example"})
    assert r.status == 403 and "X-CSRF-Token" in r.json()["error"]
    domains = server.cli("domain", "list").stdout.decode().split()
    assert "nocsrf.example" not in domains and "referer.example" in domains


def test_domain_and_account_via_forms_then_imap_login(admin, server):
    r = admin.post_form("/domains", {"domain": "Forms.Example"})
    assert r.status == 303, r
    assert "Domain forms.example added." in admin.get("/domains").text
    # Invalid input is shown beside the field, with 422.
    r = admin.post_form("/domains", {"domain": "bad_domain!"})
    assert r.status == 422 and 'id="domain-error"' in r.text
    r = admin.post_form("/accounts", {"address": "dora@forms.example", "password": "dora-password-1", "quota": "3G"})
    assert r.status == 303 and r.header("Location") == "/accounts/dora@forms.example", r
    r = admin.post_form("/accounts", {"address": "eve@forms.example", "password": "x", "quota": ""})
    assert r.status == 422 and 'id="password-error"' in r.text
    r = admin.post_form("/accounts", {"address": "eve@forms.example", "password": "eve-password-1", "quota": "1.5G"})
    assert r.status == 422 and 'id="quota-error"' in r.text
    c = server.imap("dora@forms.example", "dora-password-1")
    typ, _ = c.select("INBOX")
    assert typ == "OK"
    c.logout()
    listed = json.loads(server.cli("account", "list", "--json").stdout)
    dora = [a for a in listed if a["address"] == "dora@forms.example"][0]
    assert dora["quota_bytes"] == 3 << 30


def test_quota_change_is_seen_by_the_cli_and_imap(admin, server):
    r = admin.post_form("/accounts/dora@forms.example/quota", {"quota": "700M"},
                        csrf_from="/accounts/dora@forms.example")
    assert r.status == 303, r
    listed = json.loads(server.cli("account", "list", "--json").stdout)
    assert [a["quota_bytes"] for a in listed if a["address"] == "dora@forms.example"] == [700 << 20]
    c = server.imap("dora@forms.example", "dora-password-1")
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK", data
    assert str(700 * 1024) in repr(data), data  # STORAGE limit in KiB (RFC 9208)
    c.logout()


def test_usage_from_the_store_and_search_paging(admin, server):
    server.deliver("dora@forms.example", make_message("usage check", "x" * 5000))
    page = admin.get("/accounts/dora@forms.example").text
    assert "1 messages" in page, page[:3000]
    assert '<svg class="bar"' in page and 'role="img"' in page
    r = admin.get("/accounts?q=forms.example")
    assert "1 accounts" in r.text and "dora@forms.example" in r.text
    r = admin.api("GET", "/api/accounts?q=@example.org&per_page=2&page=2&usage=1")
    assert r.status == 200
    j = r.json()
    assert j["total"] == 3 and j["page"] == 2 and [a["address"] for a in j["accounts"]] == ["carol@example.org"]
    assert j["usage"] is not None


def test_undelete_lists_and_restores_through_the_store(admin, server):
    server.deliver("dora@forms.example", make_message("to be expunged"))
    c = server.imap("dora@forms.example", "dora-password-1")
    c.select("INBOX")
    typ, data = c.search(None, "SUBJECT", '"to be expunged"')
    c.store(data[0].split()[0], "+FLAGS", "\\Deleted")
    c.expunge()
    c.logout()
    r = admin.get("/undelete?account=dora%40forms.example&mailbox=INBOX")
    assert r.status == 200 and "1 restorable messages" in r.text, r
    r = admin.post_form("/undelete", {"account": "dora@forms.example", "mailbox": "INBOX", "since": "", "until": ""},
                        csrf_from="/undelete?account=dora%40forms.example")
    assert r.status == 303, r
    assert "Restored 1 messages" in admin.get(r.header("Location")).text
    c = server.imap("dora@forms.example", "dora-password-1")
    c.select("INBOX")
    assert c.search(None, "SUBJECT", '"to be expunged"')[1][0], "restored into INBOX"
    c.logout()
    r = admin.get("/undelete?account=dora%40forms.example&since=2026-13-01")
    assert 'id="since-error"' in r.text


def test_aliases_via_forms(admin, server):
    r = admin.post_form("/aliases", {"address": "team@forms.example", "targets": "dora@forms.example, x@elsewhere.example"})
    assert r.status == 303, r
    assert "team@forms.example" in server.cli("alias", "list").stdout.decode()
    r = admin.post_form("/aliases", {"address": "dora@forms.example", "targets": "x@elsewhere.example"})
    assert r.status in (409, 422), r
    r = admin.post_form("/aliases/team@forms.example/delete", {}, csrf_from="/aliases")
    assert r.status == 303
    assert "team@forms.example" not in server.cli("alias", "list").stdout.decode()


def test_delete_account_requires_reauthentication(admin, server):
    r = admin.post_form("/accounts", {"address": "gone@forms.example", "password": "gone-password-1", "quota": ""})
    assert r.status == 303
    path = "/accounts/gone@forms.example/delete"
    r = admin.post_form(path, {}, csrf_from="/accounts/gone@forms.example")
    assert r.status == 403 and "nothing was deleted" in r.text
    r = admin.post_form(path, {"password": "wrong-password!"}, csrf_from="/accounts/gone@forms.example")
    assert r.status == 403
    assert server.cli("account", "list").stdout.decode().count("gone@forms.example") == 1
    r = admin.post_form(path, {"password": ADMIN_PW}, csrf_from="/accounts/gone@forms.example")
    assert r.status == 303 and r.header("Location") == "/accounts"
    assert "gone@forms.example" not in server.cli("account", "list").stdout.decode()
    # The API needs the password in the body too.
    admin.post_form("/accounts", {"address": "gone2@forms.example", "password": "gone-password-2", "quota": ""})
    assert admin.api("DELETE", "/api/accounts/gone2@forms.example", json={}).status == 400
    assert admin.api("DELETE", "/api/accounts/gone2@forms.example", json={"password": ADMIN_PW}).status == 204


def test_api_token(admin, server):
    r = admin.post_form("/tokens", {"name": "ci script"})
    assert r.status == 200
    token = re.search(r'<output class="token">([^<]+)</output>', r.text).group(1)
    anon = client(server)
    assert anon.api("GET", "/api/domains").status == 401
    assert anon.api("GET", "/api/domains", token="hat_wrong").status == 401
    r = anon.api("POST", "/api/domains", json={"domain": "api.example"}, token=token)
    assert r.status == 201, r
    r = anon.api("POST", "/api/accounts", json={"address": "api@api.example", "password": "api-password-1", "quota": "2G"},
                 token=token)
    assert r.status == 201, r
    r = anon.api("PUT", "/api/accounts/api@api.example/quota", json={"quota": "5G"}, token=token)
    assert r.json()["quota_bytes"] == 5 << 30
    r = anon.api("PUT", "/api/accounts/api@api.example/quota", json={"quota": "lots"}, token=token)
    assert r.status == 422 and r.json()["field"] == "quota"
    assert any(d["domain"] == "api.example" for d in anon.api("GET", "/api/domains", token=token).json())
    st = anon.api("GET", "/api/status", token=token).json()
    assert {s["name"] for s in st["services"]} >= {"store", "router", "admin"}
    assert st["certificate"]["not_after"] > time.time()
    # Revoked: refused.
    token_id = re.search(r'/tokens/([0-9a-f]+)/revoke', admin.get("/tokens").text).group(1)
    assert admin.post_form(f"/tokens/{token_id}/revoke", {}, csrf_from="/tokens").status == 303
    assert anon.api("GET", "/api/domains", token=token).status == 401


def test_login_throttling(admin, server):
    # A second admin to lock out (the main admin stays usable for the other tests).
    r = admin.post_form("/admins", {"name": "victim", "new_password": "victim-password-1", "password": ADMIN_PW},
                        csrf_from="/tokens")
    assert r.status == 303, r
    c = client(server)
    for _ in range(5):
        assert c.login("victim", "wrong-password!!").status == 401
    r = c.login("victim", "victim-password-1")
    assert r.status == 429 and "Too many failed sign-ins" in r.text
    assert not c.session()


def test_audit_log_records_changes(admin, server):
    lines = [json.loads(l) for l in (server.data / "admin" / "audit.log").read_text().splitlines()]
    actions = {(e["action"], e["ok"]) for e in lines}
    for want in [("setup", True), ("login", True), ("login", False), ("domain.add", True), ("account.create", True),
                 ("account.quota", True), ("account.delete", True), ("reauth", False), ("api_token.create", True)]:
        assert want in actions, (want, actions)
    e = [e for e in lines if e["action"] == "account.create" and e["target"] == "dora@forms.example"][0]
    assert e["admin"] == ADMIN and e["peer"] == "127.0.0.1" and e["ts"].endswith("Z")
    assert "dora-password-1" not in (server.data / "admin" / "audit.log").read_text()
    page = admin.get("/logs?text=dora").text
    assert "account.create" in page


def test_config_apply_validates_keeps_history_and_rolls_back(admin, server):
    config_file = server.data / "config" / "hermes.toml"
    original = config_file.read_text()
    page = admin.get("/config")
    assert page.status == 200 and "[imap]" in page.text
    # Invalid: every error with its field path, nothing written.
    bad = original + "\n[store]\nzstd_level = 99\nretention_days = 100000\n"
    r = admin.post_form("/config", {"config": bad, "password": ADMIN_PW})
    assert r.status == 422, r
    assert "store.zstd_level" in r.text and "store.retention_days" in r.text
    assert config_file.read_text() == original
    # Without the admin's password: refused.
    good = original + "\n[store]\nretention_days = 7\n"
    assert admin.post_form("/config", {"config": good, "password": "nope-nope-nope"}).status == 403
    r = admin.post_form("/config", {"config": good.replace("\n", "\r\n"), "password": ADMIN_PW})
    assert r.status == 303, r
    assert config_file.read_text() == good
    history = sorted((server.data / "config" / "history").glob("*.toml"))
    assert len(history) == 2 and {h.read_text() for h in history} == {original, good}
    # The diff page for the original shows what a rollback changes, then roll back.
    ids = re.findall(r'href="/config/history/([0-9]+-[0-9a-f]{8})"', admin.get("/config").text)
    oldest = ids[-1]
    diff = admin.get(f"/config/history/{oldest}").text
    assert '<span class="del">- retention_days = 7</span>' in diff
    r = admin.post_form(f"/config/history/{oldest}/rollback", {"password": ADMIN_PW}, csrf_from=f"/config/history/{oldest}")
    assert r.status == 303, r
    assert config_file.read_text() == original
    # Services still start with the rolled-back file (validated on every apply).
    assert server.cli("status").returncode == 0
    audit = (server.data / "admin" / "audit.log").read_text()
    assert '"action":"config.apply","target":"' in audit and '"action":"config.rollback"' in audit


def test_config_api(admin, server):
    j = admin.api("GET", "/api/config").json()
    original = j["config"]
    r = admin.api("POST", "/api/config", json={"config": original + "\n[imap]\n", "password": ADMIN_PW})
    assert r.status == 422 and r.json()["errors"][0]["path"] == "hermes.toml", r  # duplicate table
    r = admin.api("POST", "/api/config", json={"config": original + "\n[store]\nretention_days = 3\n", "password": ADMIN_PW})
    assert r.status == 200 and r.json()["restart_required"] is True, r
    vid = [v["id"] for v in admin.api("GET", "/api/config").json()["history"]][1]
    diff = admin.api("GET", f"/api/config/history/{vid}").json()["rollback_diff"]
    assert {"kind": "-", "text": "retention_days = 3"} in diff
    assert admin.api("POST", f"/api/config/history/{vid}/rollback", json={"password": "wrong-wrong"}).status == 403
    assert admin.api("POST", f"/api/config/history/{vid}/rollback", json={"password": ADMIN_PW}).status == 200
    assert (server.data / "config" / "hermes.toml").read_text() == original


def test_logout_ends_the_session(server):
    c = client(server)
    c.login(ADMIN, ADMIN_PW)
    sid = c.session()
    r = c.post_form("/logout", {}, csrf_from="/")
    assert r.status == 303 and not c.session()
    c.cookies["__Host-hermes_admin"] = sid
    assert c.get("/").status == 303
