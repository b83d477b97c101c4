"""Network and time settings through the admin UI and API, on a real `hermes up` over HTTPS
(host mode).

What host mode shows: the Network and time page and its forms, every field checked server-side
with the parser init uses (errors beside their fields, nothing written), the session's CSRF token
and Origin, the file written atomically when valid and every attempt audited; then the
supervisor's refusal of the network and time operations (the host's own network and clock are
not Hermes's) shown as it is. The appliance's side (init applying, the 120 s rollback, SNTP
against chronyd) is tested in appliance/svc/init (net.rs, ntp.rs).
"""

from __future__ import annotations

import json
import re

import pytest

from admin_client import AdminClient, setup_token

ADMIN = "root"
ADMIN_PW = "correct-horse-battery"


@pytest.fixture(scope="module")
def server(hermes_factory_module):
    return hermes_factory_module()


@pytest.fixture(scope="module")
def admin(server):
    c = AdminClient(server.endpoints["admin"], server.ssl_context())
    r = c.setup(setup_token(server.log_tail(400)), ADMIN, ADMIN_PW)
    assert r.status == 303, r
    return c


def audit(server) -> list[dict]:
    return [json.loads(l) for l in (server.data / "admin" / "audit.log").read_text().splitlines()]


def network_toml(server):
    return server.data / "config" / "network.toml"


def test_system_page_links_and_the_page_says_host_mode(admin):
    r = admin.get("/system")
    assert r.status == 200 and 'href="/system/network"' in r.text
    r = admin.get("/system/network")
    assert r.status == 200, r
    for needle in ('action="/system/network"', 'name="if0_name"', 'name="dns"', 'name="ntp"', 'id="box-time"',
                   'id="time-refused"', "the host's own network is not managed by Hermes",
                   'id="network-refused"', "network_status", "acts on the appliance only"):
        assert needle in r.text, needle


def test_invalid_fields_are_refused_beside_each_field_and_nothing_is_written(admin, server):
    before = len(audit(server))
    r = admin.post_form("/system/network", {
        "if0_name": "eth0", "if0_mode": "static", "if0_ipv4": "192.0.2.300/24", "if0_gateway4": "2001:db8::1",
        "if1_name": "eth1", "if1_mode": "dhcp", "if1_ipv6": "2001:db8::10", "if1_gateway6": "",
        "dns": "192.0.2.53 not-an-ip", "ntp": "ok.example.net bad_host!",
    }, csrf_from="/system/network")
    assert r.status == 422, r
    for field in ("if0_ipv4", "if0_gateway4", "if1_ipv6", "dns", "ntp"):
        m = re.search(rf'<span class="error" id="{field}-error">([^<]+)</span>', r.text)
        assert m, (field, r.text[:3000])
    assert "is not an IP address" in r.text and "needs a /prefix" in r.text
    assert "Nothing was saved" in r.text
    # What was typed is shown again.
    assert 'value="192.0.2.300/24"' in r.text
    assert not network_toml(server).exists()
    e = audit(server)[before:]
    assert [x["action"] for x in e] == ["network.save"] and not e[0]["ok"], e


def test_forms_need_the_csrf_token_and_this_origin(admin, server):
    before = len(audit(server))
    fields = {"if0_name": "eth0", "if0_mode": "dhcp", "dns": "192.0.2.53"}
    assert admin.request("POST", "/system/network", form=fields).status == 403
    assert admin.request("POST", "/system/network", form={**fields, "csrf": "x" * 43}).status == 403
    token = admin.csrf("/system/network")
    assert admin.request("POST", "/system/network", form={**fields, "csrf": token},
                         origin="https://evil.example").status == 403
    for path in ("/system/network/confirm", "/system/time/sync", "/system/time"):
        assert admin.request("POST", path, form={}).status == 403, path
    assert not network_toml(server).exists()
    assert len(audit(server)) == before


def test_a_valid_form_is_written_audited_and_the_refusal_shown(admin, server):
    before = len(audit(server))
    r = admin.post_form("/system/network", {
        "if0_name": "eth0", "if0_mode": "static", "if0_ipv4": "192.0.2.10/24", "if0_gateway4": "192.0.2.1",
        "if0_ipv6": "2001:db8::10/64\r\n2001:db8::11/64", "if0_gateway6": "2001:db8::1",
        "if1_name": "eth1", "if1_mode": "dhcp",
        "dns": "192.0.2.53, 2001:db8::53", "ntp": "192.0.2.123 ntp.example.net:1123",
    }, csrf_from="/system/network")
    assert r.status == 200, r
    assert "network.toml was written" in r.text
    assert 'id="not-applied"' in r.text and "network_apply" in r.text and "appliance only" in r.text
    text = network_toml(server).read_text()
    assert 'dns = ["192.0.2.53", "2001:db8::53"]' in text, text
    assert 'ntp = ["192.0.2.123", "ntp.example.net:1123"]' in text, text
    assert 'ipv4 = "192.0.2.10/24"' in text and 'gateway6 = "2001:db8::1"' in text, text
    assert "eth1" not in text, "an interface on DHCP without IPv6 needs no entry"
    assert oct(network_toml(server).stat().st_mode & 0o777) == "0o600"
    e = audit(server)[before:]
    assert [(x["action"], x["ok"]) for x in e] == [("network.save", True), ("network.apply", False)], e
    assert "appliance only" in e[1]["detail"]
    # The page shows the saved values next time.
    r = admin.get("/system/network")
    assert 'value="192.0.2.10/24"' in r.text and "2001:db8::11/64" in r.text


def test_api_get_put_validation_and_refusals(admin, server):
    anon = AdminClient(server.endpoints["admin"], server.ssl_context())
    assert anon.request("GET", "/api/system/network").status == 401
    assert anon.request("PUT", "/api/system/network", json={}).status in (401, 403)
    # A session without the X-CSRF-Token header is refused.
    assert admin.request("PUT", "/api/system/network", json={"dns": ["192.0.2.1"]}).status == 403
    r = admin.api("GET", "/api/system/network")
    assert r.status == 200, r
    j = r.json()
    assert j["config"]["interface"][0]["ipv4"] == "192.0.2.10/24"
    assert j["status"] is None and "appliance only" in j["status_error"]
    before = len(audit(server))
    r = admin.api("PUT", "/api/system/network", json={
        "dns": ["x"], "interface": [{"name": "eth0", "ipv4": "10.0.0.1/33"}, {"name": "eth0"}]})
    assert r.status == 422, r
    fields = sorted(e["field"] for e in r.json()["errors"])
    assert fields == ["dns[0]", "interface[0].ipv4", "interface[1].name"], r.json()
    r = admin.api("PUT", "/api/system/network", json={"interface": [{"name": "eth0", "colour": "blue"}]})
    assert r.status == 422, r
    assert "192.0.2.10/24" in network_toml(server).read_text(), "refused bodies write nothing"
    r = admin.api("PUT", "/api/system/network", json={"ntp": ["127.0.0.1:11123"],
                                                        "interface": [{"name": "eth0", "ipv6": ["2001:db8::5/64"]}]})
    assert r.status == 200, r
    j = r.json()
    assert j["saved"] and not j["applied"] and "appliance only" in j["not_applied"], j
    assert network_toml(server).read_text() == j["text"]
    assert 'ntp = ["127.0.0.1:11123"]' in j["text"]
    e = audit(server)[before:]
    assert [(x["action"], x["ok"]) for x in e] == [
        ("network.save", False), ("network.save", False), ("network.save", True), ("network.apply", False)], e
    # Confirm, time status, sync and manual setting: the supervisor's refusal, as a 409.
    for method, path, body in (("POST", "/api/system/network/confirm", {}), ("GET", "/api/system/time", None),
                               ("POST", "/api/system/time/sync", {}), ("PUT", "/api/system/time", {"unix": 1800000000})):
        r = admin.api(method, path, json=body)
        assert r.status == 409 and "appliance only" in r.json()["error"], (path, r)
    r = admin.api("PUT", "/api/system/time", json={"unix": 12})
    assert r.status == 422 and r.json()["field"] == "unix", r
    r = admin.api("PUT", "/api/system/time", json={"when": "now"})
    assert r.status == 400, r
    kinds = [(x["action"], x["ok"]) for x in audit(server)[before + 4:]]
    assert ("network.confirm", False) in kinds and ("time.sync", False) in kinds and ("time.set", False) in kinds


def test_time_forms_show_the_refusal(admin):
    r = admin.post_form("/system/time/sync", {}, csrf_from="/system/network")
    assert r.status == 409 and "Not synchronised" in r.text and "appliance only" in r.text, r
    r = admin.post_form("/system/time", {"utc": "not a time"}, csrf_from="/system/network")
    assert r.status == 422 and "YYYY-MM-DD" in r.text, r
    r = admin.post_form("/system/time", {"utc": "2027-01-02T03:04:05"}, csrf_from="/system/network")
    assert r.status == 409 and "Not set" in r.text, r
    r = admin.post_form("/system/network/confirm", {}, csrf_from="/system/network")
    assert r.status == 409 and "appliance only" in r.text, r
