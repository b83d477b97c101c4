"""The admin web UI and API end to end: a real `hermes up`, driven over HTTPS like a browser.

First-boot setup with the token `hermes up` printed, sign-in, CSRF and Origin checks, session
renewal at login (no fixation), login throttling, domains and accounts made through the forms
(the account then logs in over IMAP), quota changes visible to the CLI, re-authentication
before deletion, API tokens, the audit log and the security headers. Then the later pages:
live config apply (a relay/limit change in force on new SMTP connections while sessions opened
before stay up and no service restarts), routes and relay with field errors, the queue over
the router's socket, the dashboard's rates, TLS certificate install and self-signed
generation (served at once by the admin UI and the store), service logs, system backup and
restore, firmware, and the disks page from the health service.

Tests share one server (module scope) and run in file order: `test_first_boot_setup` creates
the admin the others sign in as.
"""

from __future__ import annotations

import json
import re
import os
import smtplib
import ssl
import subprocess
import time

import pytest

from admin_client import AdminClient, setup_token
from hermes_testlib import addr, make_message, wait_for

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
    c = server.imap("dora@forms.example", "dora-password-1")
    before = int(c.select("INBOX", readonly=True)[1][0])
    c.logout()
    server.deliver("dora@forms.example", make_message(
        "=?UTF-8?Q?to_be_expunged:_R=C3=BCckfrage?= <b>", sender="=?utf-8?B?UmVnaXN0cmFy?= <r@reg.example>",
        date="Tue, 24 Nov 2026 09:15:00 +0100", marker="undel-admin"))
    c = server.imap("dora@forms.example", "dora-password-1")
    # Malformed: no field has a colon and the bytes are not UTF-8.
    assert c.append("INBOX", None, None, b"no colon \xff here\r\n\r\nbody\r\n")[0] == "OK"
    c.select("INBOX")
    c.store(f"{before + 1}:*", "+FLAGS", "\\Deleted")
    c.expunge()
    c.logout()
    r = admin.get("/undelete?account=dora%40forms.example&mailbox=INBOX")
    assert r.status == 200 and "2 restorable messages" in r.text, r
    # Subject first, then From and Date, decoded and escaped.
    assert r.text.index(">Subject<") < r.text.index(">From<") < r.text.index(">Date<") < r.text.index(">Expunged<")
    assert "to be expunged: Rückfrage &lt;b&gt;" in r.text and "<b>" not in r.text.split("<main", 1)[-1], r.text
    assert "Registrar &lt;r@reg.example&gt;" in r.text and "Tue, 24 Nov 2026 09:15:00 +0100" in r.text, r.text
    assert "(no subject)" in r.text
    j = admin.api("GET", "/api/undelete?account=dora%40forms.example").json()
    by_subject = {m.get("subject", ""): m for m in j["messages"]}
    assert set(by_subject) == {"to be expunged: Rückfrage <b>", ""}, j
    m = by_subject["to be expunged: Rückfrage <b>"]
    assert (m["from"], m["date"], m["message_id"]) == (
        "Registrar <r@reg.example>", "Tue, 24 Nov 2026 09:15:00 +0100", "<undel-admin@test.example.org>"), m
    assert not any(by_subject[""].get(k) for k in ("from", "date", "message_id")), j
    r = admin.post_form("/undelete", {"account": "dora@forms.example", "mailbox": "INBOX", "since": "", "until": ""},
                        csrf_from="/undelete?account=dora%40forms.example")
    assert r.status == 303, r
    assert "Restored 2 messages" in admin.get(r.header("Location")).text
    c = server.imap("dora@forms.example", "dora-password-1")
    c.select("INBOX")
    assert c.search(None, "HEADER", "Message-ID", "undel-admin")[1][0], "restored into INBOX"
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


def test_alias_list_is_searched_and_paged(admin, server):
    """2,500 aliases would make an unpaged list pass 200 KB: pages of 100 (API: per_page), in
    address order, searched by address or target; one made with the CLI shows at the next view."""
    assert server.cli("domain", "add", "paged.example").returncode == 0
    for i in range(130):
        r = admin.api("POST", "/api/aliases", json={"address": f"list{i:03}@paged.example",
                                                     "targets": [f"owner{i % 4}@elsewhere.example"]})
        assert r.status == 201, r
    r = admin.api("GET", "/api/aliases?domain=paged.example&page=2&per_page=50")
    assert r.status == 200, r
    p = r.json()
    assert (p["total"], p["page"], p["per_page"]) == (130, 2, 50), p
    assert [a["address"] for a in p["aliases"]] == [f"list{i:03}@paged.example" for i in range(50, 100)]
    p = admin.api("GET", "/api/aliases?domain=paged.example&page=9&per_page=50").json()
    assert p["page"] == 3 and len(p["aliases"]) == 30, "a page past the end is the last one"
    p = admin.api("GET", "/api/aliases?q=OWNER3@elsewhere&per_page=1000").json()
    assert p["total"] == 32 and all("owner3@elsewhere.example" in a["targets"] for a in p["aliases"]), p
    # The whole list without page parameters, as before.
    assert len([a for a in admin.api("GET", "/api/aliases?domain=paged.example").json()]) == 130
    page = admin.get("/aliases?q=paged.example").text
    assert "130 aliases" in page and "page 1 of 2" in page and 'rel="next"' in page, page[:3000]
    assert "list099@paged.example" in page and "list100@paged.example" not in page
    assert admin.get("/aliases?q=paged.example&page=2").text.count("@paged.example</td>") == 30
    assert server.cli("alias", "add", "cli-made@paged.example", "x@elsewhere.example").returncode == 0
    assert "cli-made@paged.example" in admin.get("/aliases?q=cli-made").text


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
    # RFC 9208 MESSAGE limit beside the storage quota; a bad one changes nothing.
    r = anon.api("PUT", "/api/accounts/api@api.example/quota", json={"quota": "5G", "messages": 1000}, token=token)
    assert r.status == 200 and r.json()["quota_messages"] == 1000, r
    r = anon.api("PUT", "/api/accounts/api@api.example/quota", json={"quota": "6G", "messages": "many"}, token=token)
    assert r.status == 422 and r.json()["field"] == "messages", r
    acc = anon.api("GET", "/api/accounts/api@api.example", token=token).json()["account"]
    assert acc["quota_bytes"] == 5 << 30 and acc["quota_messages"] == 1000, acc
    r = anon.api("PUT", "/api/accounts/api@api.example/quota", json={"quota": "5G", "messages": "unlimited"}, token=token)
    assert r.json()["quota_messages"] == "unlimited"
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
    assert r.status == 200, r
    reload = {x["service"]: x for x in r.json()["reload"]}
    assert set(reload) == {"store", "router"}, r
    assert reload["router"]["state"] == "applied" and reload["router"]["ok"] is True, r
    assert r.json()["restart_required"] is False, r
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


# ---- live config apply, routes and relay, the queue, the dashboard's rates ------------------

OUTSIDE = "friend@elsewhere.example"


def smtp_client(server) -> smtplib.SMTP:
    host, port = addr(server.endpoints["smtp"])
    return smtplib.SMTP(host, port, timeout=30)


def rcpt_code(server, rcpt: str) -> int:
    c = smtp_client(server)
    try:
        c.ehlo("probe.example")
        c.mail("sender@remote.example")
        return c.rcpt(rcpt)[0]
    finally:
        c.quit()


def ehlo_size(server) -> int:
    c = smtp_client(server)
    try:
        c.ehlo("probe.example")
        return int(c.esmtp_features["size"])
    finally:
        c.quit()


RELAY_DEFAULTS = {"relay_networks": "", "max_message_bytes": "50M", "max_recipients_mx": "100",
                  "max_recipients_submission": "1000", "max_connections_per_ip": "50"}


def test_relay_and_limits_apply_live_without_restart(admin, server):
    pids = server.service_pids()
    held_imap = server.imap("alice@example.org", "alice-secret-1")
    assert held_imap.select("INBOX")[0] == "OK"
    held_smtp = smtp_client(server)
    held_smtp.ehlo("held.example")
    assert rcpt_code(server, OUTSIDE) == 554, "loopback is no relay network by default"
    # Field-by-field validation: every error beside its field, nothing written.
    before = (server.data / "config" / "hermes.toml").read_text()
    bad = {"relay_networks": "0.0.0.0/0", "max_message_bytes": "1.5G", "max_recipients_mx": "5",
           "max_recipients_submission": "0", "max_connections_per_ip": "many"}
    r = admin.post_form("/relay", bad, csrf_from="/routes")
    assert r.status == 422, r
    for field in bad:
        assert f'id="{field}-error"' in r.text, field
    assert (server.data / "config" / "hermes.toml").read_text() == before
    # Valid: loopback may relay, smaller messages; applied by the router at once.
    good = dict(RELAY_DEFAULTS, relay_networks="127.0.0.0/8\n192.0.2.0/24", max_message_bytes="128K")
    r = admin.post_form("/relay", good, csrf_from="/routes")
    assert r.status == 303 and r.header("Location") == "/routes", r
    page = admin.get("/routes").text
    assert "router: applied" in page and "store: applied" in page, page[page.find("flash"):][:600]
    assert rcpt_code(server, OUTSIDE) == 250, "relay_networks in force on a new connection"
    assert ehlo_size(server) == 128 * 1024, "the message size limit in force on a new connection"
    # Nothing restarted, nothing dropped.
    assert server.service_pids() == pids
    assert held_imap.noop()[0] == "OK"
    assert held_smtp.noop()[0] == 250
    held_smtp.quit()
    held_imap.logout()
    text = (server.data / "config" / "hermes.toml").read_text()
    assert 'relay_networks = ["127.0.0.0/8", "192.0.2.0/24"]' in text and "max_message_bytes = 131072" in text
    # The Config page shows the reload result beside the version.
    cfg = admin.get("/config").text
    assert "Live apply" in cfg and "applied" in cfg
    assert "restart them" not in cfg and "reloaded at once" in cfg
    # The API twin, back to the defaults.
    r = admin.api("PUT", "/api/relay", json={"relay_networks": [], "max_message_bytes": "50M", "max_recipients_mx": 100,
                                             "max_recipients_submission": 1000, "max_connections_per_ip": 50})
    assert r.status == 200, r
    assert {x["service"]: x["state"] for x in r.json()["reload"]}["router"] == "applied"
    assert rcpt_code(server, OUTSIDE) == 554
    r = admin.api("PUT", "/api/relay", json={"relay_networks": ["10.0.0.0/33"], "max_message_bytes": 1,
                                             "max_recipients_mx": 100, "max_recipients_submission": 1000,
                                             "max_connections_per_ip": 50})
    assert r.status == 422 and {e["field"] for e in r.json()["errors"]} == {"relay_networks", "max_message_bytes"}, r
    audit = (server.data / "admin" / "audit.log").read_text()
    assert '"action":"relay.set"' in audit and '"action":"config.reload"' in audit


def test_routes_forms_and_api(admin, server):
    r = admin.post_form("/routes", {"domain": "bad_domain!", "hosts": "nohost\n", "tls": "sometimes",
                                    "auth_user": "", "auth_password": "x"})
    assert r.status == 422, r
    for field in ("domain", "hosts", "tls", "auth_user"):
        assert f'id="{field}-error"' in r.text, field
    r = admin.post_form("/routes", {"domain": "Physics.Example", "hosts": "mail.physics.example:25\n127.0.0.1:2525",
                                    "tls": "required", "auth_user": "relay", "auth_password": "relay-secret",
                                    "verify_recipients": "1"})
    assert r.status == 303, r
    page = admin.get("/routes").text
    assert "physics.example" in page and "mail.physics.example:25" in page and "relayed" in page
    assert "relay-secret" not in page, "the AUTH password is never shown"
    text = (server.data / "config" / "hermes.toml").read_text()
    assert "[[router.routes]]" in text and 'domain = "physics.example"' in text
    # example.org has accounts here: a route for it makes it a split domain.
    r = admin.api("PUT", "/api/routes/example.org", json={"hosts": ["127.0.0.1:9"], "tls": "opportunistic",
                                                           "verify_recipients": False})
    assert r.status == 200, r
    assert "split (local accounts first)" in admin.get("/routes").text
    j = admin.api("GET", "/api/routes").json()
    routes = {x["domain"]: x for x in j["routes"]}
    assert routes["physics.example"]["auth_user"] == "relay" and "auth_password" not in routes["physics.example"]
    assert routes["example.org"]["hosts"] == ["127.0.0.1:9"]
    # Editing without a password keeps the stored one.
    r = admin.post_form("/routes", {"domain": "physics.example", "hosts": "mail.physics.example:587", "tls": "required",
                                    "auth_user": "relay", "auth_password": ""}, csrf_from="/routes/physics.example")
    assert r.status == 303, r
    assert 'auth_password = "relay-secret"' in (server.data / "config" / "hermes.toml").read_text()
    # Local accounts of the split domain are still delivered here.
    assert rcpt_code(server, "alice@example.org") == 250
    assert admin.api("DELETE", "/api/routes/example.org").status == 200
    r = admin.post_form("/routes/physics.example/delete", {}, csrf_from="/routes")
    assert r.status == 303
    assert admin.api("DELETE", "/api/routes/physics.example").status == 404
    assert "[[router.routes]]" not in (server.data / "config" / "hermes.toml").read_text()


def test_queue_list_show_hold_release_flush_delete(admin, server):
    # Mail for a routed domain whose server is down stays in the queue.
    r = admin.api("PUT", "/api/routes/dept.example", json={"hosts": ["127.0.0.1:9"], "tls": "opportunistic",
                                                            "verify_recipients": False})
    assert r.status == 200, r
    c = smtp_client(server)
    try:
        for i in range(3):
            c.sendmail("sender@remote.example", [f"user{i}@dept.example"], make_message(f"queued {i}"))
    finally:
        c.quit()
    wait_for(lambda: admin.api("GET", "/api/queue").json()["total"] >= 3, 30, what="3 messages queued")
    j = admin.api("GET", "/api/queue?per_page=2&page=1").json()
    assert j["total"] == 3 and len(j["messages"]) == 2 and j["page"] == 1
    ids = [m["id"] for m in admin.api("GET", "/api/queue?per_page=500").json()["messages"]]
    page = admin.get("/queue").text
    assert "3 messages in the queue" in page and all(i in page for i in ids)
    assert "page 1 of 2" in admin.get("/queue?page=1&q=dept").text or "page 1 of 1" in admin.get("/queue?q=dept").text
    first = ids[0]
    detail = admin.get(f"/queue/{first}").text
    assert "user" in detail and "@dept.example" in detail and "sender@remote.example" in detail
    assert admin.post_form(f"/queue/{first}/hold", {}, csrf_from=f"/queue/{first}").status == 303
    assert [m["hold"] for m in admin.api("GET", "/api/queue?per_page=500").json()["messages"] if m["id"] == first] == [True]
    assert "held" in admin.get("/queue").text
    assert admin.api("POST", f"/api/queue/{first}/release").json()["count"] == 1
    assert admin.api("GET", f"/api/queue/{first}").json()["state"]["hold"] is False
    assert admin.post_form("/queue/flush", {}, csrf_from="/queue").status == 303
    assert admin.api("POST", "/api/queue/flush").status == 200
    for i in ids:
        assert admin.post_form(f"/queue/{i}/delete", {}, csrf_from="/queue").status == 303
    assert admin.api("GET", "/api/queue").json()["total"] == 0
    assert admin.api("GET", "/api/queue/00000000000000000000").status == 404
    assert admin.api("GET", "/api/queue/..%2Fetc").status == 404
    audit = (server.data / "admin" / "audit.log").read_text()
    assert '"action":"queue.hold"' in audit and '"action":"queue.delete"' in audit
    assert admin.api("DELETE", "/api/routes/dept.example").status == 200


def test_dashboard_rates_move(admin, server):
    page = admin.get("/").text
    assert '<svg class="chart"' in page and "Messages" in page and "Logins" in page
    before = admin.api("GET", "/api/rates?range=1h").json()
    accepted0 = before["series"]["accepted"]["total"]
    logins0 = before["series"]["logins_ok"]["total"]
    c = smtp_client(server)
    try:
        c.sendmail("sender@remote.example", ["alice@example.org"], make_message("dashboard"))
    finally:
        c.quit()
    server.imap("alice@example.org", "alice-secret-1").logout()
    after = admin.api("GET", "/api/rates?range=1h").json()
    assert after["series"]["accepted"]["total"] >= accepted0 + 1, after
    assert after["series"]["logins_ok"]["total"] >= logins0 + 1, after
    assert len(after["series"]["accepted"]["per_minute"]) == 60
    page = admin.get("/?range=24h").text
    assert "last 24 h" in page and "accepted: <strong>" in page
    assert admin.api("GET", "/api/rates?range=7d").status == 422


def make_cert(tmp_path, cn: str) -> tuple[str, str]:
    key, cert = tmp_path / f"{cn}.key", tmp_path / f"{cn}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={cn}",
                    "-addext", f"subjectAltName=DNS:{cn},IP:127.0.0.1"], check=True, capture_output=True)
    return cert.read_text(), key.read_text()


def served_cert(hostport: str) -> str:
    host, port = addr(hostport)
    return ssl.get_server_certificate((host, port))


def same_cert(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")


def test_tls_certificate_upload_and_self_signed(admin, server, tmp_path):
    orig_cert = (server.data / "tls" / "cert.pem").read_text()
    orig_key = (server.data / "tls" / "key.pem").read_text()
    page = admin.get("/certificates").text
    assert "CN=localhost" in page and "127.0.0.1" in page and "self-signed" in page and "days left" in page
    cert, key = make_cert(tmp_path, "upload.example")
    r = admin.post_form("/certificates", {"chain": cert, "key": orig_key})
    assert r.status == 422 and 'id="key-error"' in r.text and "does not fit" in r.text, r
    r = admin.post_form("/certificates", {"chain": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----", "key": key})
    assert r.status == 422 and 'id="chain-error"' in r.text, r
    assert (server.data / "tls" / "cert.pem").read_text() == orig_cert, "nothing written"
    # A client that trusts both certificates, sharing the signed-in session.
    both = ssl.create_default_context(cadata=orig_cert + cert)
    both.check_hostname = False
    c2 = AdminClient(server.endpoints["admin"], both)
    c2.cookies = admin.cookies
    held = server.imap("alice@example.org", "alice-secret-1", mode="tls") if "imaps" in server.endpoints else None
    r = c2.post_form("/certificates", {"chain": cert, "key": key})
    assert r.status == 200 and "Applied" in r.text, r
    for svc in ("admin", "store", "router"):
        assert re.search(rf"<strong>{svc}</strong>: <span class=\"state state-running\">applied", r.text), (svc, r.text[:3000])
    assert "CN=upload.example" in c2.get("/certificates").text
    assert same_cert(served_cert(server.endpoints["admin"]), cert), "the admin UI serves the new certificate"
    assert same_cert(served_cert(server.endpoints["imaps"]), cert), "the store serves the new certificate"
    if held is not None:
        assert held.noop()[0] == "OK", "a TLS session opened before stays up"
        held.logout()
    # Generate a self-signed one (API), then put the original back (API) for the other tests.
    r = c2.api("POST", "/api/certificates/self-signed")
    assert r.status == 200 and r.json()["chain"][0]["self_signed"] is True, r
    new_self = (server.data / "tls" / "cert.pem").read_text()
    assert new_self != orig_cert
    # Only the new one: both self-signed certificates have the same subject, so OpenSSL would
    # pick either as the issuer.
    trust_new = ssl.create_default_context(cadata=new_self)
    trust_new.check_hostname = False
    c3 = AdminClient(server.endpoints["admin"], trust_new)
    c3.cookies = admin.cookies
    r = c3.api("PUT", "/api/certificates", json={"chain": orig_cert, "key": orig_key})
    assert r.status == 200 and {x["service"] for x in r.json()["reload"]} == {"admin", "store", "router"}, r
    assert admin.get("/certificates").status == 200, "the original certificate is served again"
    audit = (server.data / "admin" / "audit.log").read_text()
    assert '"action":"tls.upload"' in audit and '"action":"tls.generate"' in audit


def test_service_logs_filter_and_page(admin, server):
    # `hermes up` appends every service's JSON lines to DATA/log/hermes.log (and its stderr).
    assert (server.data / "log" / "hermes.log").is_file()
    page = admin.get("/logs").text
    assert "Service logs" in page and "hermes.log" in page and "Audit log" in page
    r = admin.api("GET", "/api/logs?service=router&level=info")
    assert r.status == 200, r
    j = r.json()
    assert j["total"] >= 1 and all(l["service"] == "router" for l in j["lines"]), j
    assert "router" in j["services"] and "store" in j["services"]
    page = admin.get("/logs?service=store&level=info&text=listening").text
    assert "listening" in page and '<option value="store" selected' in page
    assert admin.api("GET", "/api/logs?level=loud").json()["field"] == "level"
    r = admin.get("/logs?since=tomorrow")
    assert 'id="since-error"' in r.text
    assert admin.api("GET", "/api/logs?since=2999-01-01").json()["total"] == 0


def test_system_backup_restore_and_firmware(admin, server):
    page = admin.get("/system").text
    assert "host mode" in page and "Hermes version" in page and "Download hermes.toml" in page
    r = admin.get("/system/backup")
    assert r.status == 200 and "attachment" in r.header("Content-Disposition")
    backup = r.text
    assert backup == (server.data / "config" / "hermes.toml").read_text()
    info = admin.api("GET", "/api/system").json()
    assert info["appliance"] is False and info["version"]
    r = admin.post_form("/system/restore", {"config": backup + "\n[store]\nzstd_level = 99\n", "password": ADMIN_PW},
                        csrf_from="/system")
    assert r.status == 422 and "store.zstd_level" in r.text, r
    r = admin.post_form("/system/restore", {"config": backup + "\n# restored from backup\n", "password": "wrong-password"},
                        csrf_from="/system")
    assert r.status == 403
    r = admin.post_form("/system/restore", {"config": backup + "\n# restored from backup\n", "password": ADMIN_PW},
                        csrf_from="/system")
    assert r.status == 303, r
    assert (server.data / "config" / "hermes.toml").read_text().endswith("# restored from backup\n")
    assert "router: applied" in admin.get("/system").text
    fw = admin.get("/firmware").text
    assert "Firmware updates apply to the appliance image" in fw


def test_disks_page(admin, server):
    page = admin.get("/disks")
    assert page.status == 200
    dash = admin.get("/").text
    if (server.data / "run" / "hw.sock").exists():
        assert '<svg class="bays"' in page.text and "Bay 15" in page.text, page.text[:2000]
        assert re.search(r"\d+ ok</a>, \d+ warning, \d+ failing, \d+ unknown, \d+ empty bays", dash), dash[:4000]
    else:
        assert "the health service is not running" in page.text
        assert "the health service is not running" in dash
        assert admin.api("GET", "/api/disks").status == 503


def test_every_page_is_small_and_reports_its_time(admin, server):
    """Every page with the real services answering: under 200 KB with the stylesheet, and its
    server-side time (Server-Timing) recorded (release figures at 50,000 accounts:
    docs/performance.md, admin section)."""
    css = len(admin.get("/static/admin.css").body)
    lines = []
    for path in ["/", "/?range=24h", "/domains", "/accounts", "/accounts?q=alice", "/accounts/alice@example.org",
                 "/aliases", "/undelete?account=alice%40example.org", "/routes", "/queue", "/certificates", "/disks",
                 "/logs", "/config", "/system", "/firmware", "/tokens"]:
        r = admin.get(path)
        assert r.status == 200, (path, r)
        ms = float(r.header("Server-Timing").split("dur=")[1])
        assert len(r.body) + css < 200_000, (path, len(r.body))
        # A debug build on a shared machine: generous, but a page stuck on a service shows.
        assert ms < 1000, (path, ms)
        lines.append(f"{path}\t{ms:.2f} ms\t{len(r.body) + css} bytes")
    out = server.data.parent / "admin-page-times.txt"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
