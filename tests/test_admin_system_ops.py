"""Reboot, factory reset and disk provisioning through the admin UI and API, on a real `hermes up`
over HTTPS (host mode).

What host mode shows: the forms on the System and Disks pages, every guard in front of them
(session, CSRF token, Origin, the admin's password again, the host name typed for a reset, the
"I understand" box for provisioning, API token or X-CSRF-Token), and then the supervisor's own
refusal (these act on the appliance only) shown as a clear error, not an internal one. Every
attempt is in the audit log, and the box is still up afterwards. The appliance's side (init
really rebooting, erasing and provisioning) runs in qemu/tests/boot.rs.
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


def client(server) -> AdminClient:
    return AdminClient(server.endpoints["admin"], server.ssl_context())


@pytest.fixture(scope="module")
def admin(server):
    c = client(server)
    r = c.setup(setup_token(server.log_tail(400)), ADMIN, ADMIN_PW)
    assert r.status == 303, r
    return c


def audit(server) -> list[dict]:
    return [json.loads(l) for l in (server.data / "admin" / "audit.log").read_text().splitlines()]


def test_pages_show_the_forms_and_say_they_act_on_the_appliance(admin):
    r = admin.get("/system")
    assert r.status == 200
    for needle in ('action="/system/reboot"', 'action="/system/factory-reset"', "Type the host name",
                   "These act on the Hermes appliance", "hermes up"):
        assert needle in r.text, needle
    r = admin.get("/disks")
    assert r.status == 200
    for needle in ('action="/disks/provision"', "Every disk in the bays you name is overwritten",
                   'name="understand"', "I understand every disk in bays"):
        assert needle in r.text, needle
    assert admin.get("/system/power").status == 200
    assert admin.get("/disks/provision").status == 200
    # Small pages (the 50 ms target is Server-Timing's business; here: well under).
    assert float(r.header("Server-Timing").split("dur=")[1]) < 500
    assert len(r.body) < 60_000


def test_forms_need_csrf_origin_and_the_password(admin, server):
    before = len(audit(server))
    # No CSRF field, a wrong one, a foreign Origin: refused before anything is asked.
    assert admin.request("POST", "/system/reboot", form={"password": ADMIN_PW}).status == 403
    assert admin.request("POST", "/system/reboot", form={"password": ADMIN_PW, "csrf": "x" * 43}).status == 403
    token = admin.csrf("/system")
    assert admin.request("POST", "/system/reboot", form={"password": ADMIN_PW, "csrf": token},
                         origin="https://evil.example").status == 403
    assert admin.request("POST", "/system/reboot", form={"password": ADMIN_PW, "csrf": token},
                         origin=False).status == 403
    assert len(audit(server)) == before, "refused requests never reach the operation"
    # Without the password, or with a wrong one: 403, nothing asked, audited.
    r = admin.post_form("/system/reboot", {"password": ""}, csrf_from="/system")
    assert r.status == 403 and "Wrong password" in r.text, r
    r = admin.post_form("/system/reboot", {"password": "not-my-password"}, csrf_from="/system")
    assert r.status == 403 and "Wrong password" in r.text, r
    entries = audit(server)[before:]
    assert ("system.reboot", False, "re-authentication failed") in {(e["action"], e["ok"], e.get("detail")) for e in entries}
    assert not any(e["action"] == "system.reboot" and e["ok"] for e in entries)
    assert server.running


def test_reboot_in_host_mode_shows_the_supervisors_refusal(admin, server):
    r = admin.post_form("/system/reboot", {"password": ADMIN_PW}, csrf_from="/system")
    assert r.status == 409, r
    assert "reboot acts on the appliance only" in r.text and "hermes up" in r.text, r.text
    assert "internal error" not in r.text
    entries = [e for e in audit(server) if e["action"] == "system.reboot"]
    assert entries[-2]["ok"] and entries[-2]["detail"].startswith("requested"), entries[-2:]
    assert not entries[-1]["ok"] and "appliance only" in entries[-1]["detail"], entries[-1]
    assert entries[-1]["admin"] == ADMIN and entries[-1]["peer"] == "127.0.0.1"
    assert server.running, "host mode did not stop"


def test_factory_reset_needs_the_host_name_then_is_refused_in_host_mode(admin, server):
    page = admin.get("/system").text
    host = re.search(r"Type the host name, <code>([^<]+)</code>", page).group(1)
    assert host == "localhost"
    r = admin.post_form("/system/factory-reset", {"password": ADMIN_PW, "confirm": "not-this-box"}, csrf_from="/system")
    assert r.status == 422 and "Type the host name, localhost" in r.text, r
    assert 'id="confirm-error"' in r.text
    r = admin.post_form("/system/factory-reset", {"password": ADMIN_PW, "confirm": host.upper()}, csrf_from="/system")
    assert r.status == 409 and "factory reset acts on the appliance only" in r.text, r
    resets = [e for e in audit(server) if e["action"] == "system.factory_reset"]
    assert [e["ok"] for e in resets[-3:]] == [False, True, False], resets
    assert "host name" in resets[-3]["detail"]
    # Nothing was erased.
    assert (server.data / "config" / "hermes.toml").exists()
    assert (server.data / "admin" / "accounts").is_dir()


def test_provision_form_checks_every_field_then_is_refused_in_host_mode(admin, server):
    base = {"bays": "0-15", "spares": "2", "size_mib": "", "understand": "yes", "password": ADMIN_PW}
    for change, field, text in [
        ({"understand": ""}, "understand", "Tick the box"),
        ({"bays": "0-300"}, "bays", "is not a bay"),
        ({"bays": "zero"}, "bays", "is not a bay"),
        ({"bays": "0-3", "spares": "1"}, "spares", "at least 4 active disks"),
        ({"spares": "many"}, "spares", "a whole number"),
        ({"size_mib": "0"}, "size_mib", "from 1"),
    ]:
        r = admin.post_form("/disks/provision", {**base, **change}, csrf_from="/disks")
        assert r.status == 422, (change, r)
        assert f'id="{field}-error"' in r.text and text in r.text, (change, r.text[-2000:])
    r = admin.post_form("/disks/provision", {**base, "size_mib": "256"}, csrf_from="/disks")
    assert r.status == 409, r
    assert "disk provisioning acts on the appliance only" in r.text, r.text
    prov = [e for e in audit(server) if e["action"] == "disk.provision"]
    assert prov[-1]["target"] == "bays 0-15 spares 2 size 256 MiB" and not prov[-1]["ok"], prov[-1]
    assert prov[-2]["ok"] and prov[-2]["detail"].startswith("requested"), prov[-2]
    assert sum(1 for e in prov if not e["ok"]) >= 7


def test_api_needs_auth_csrf_and_password(admin, server):
    anon = client(server)
    assert anon.request("POST", "/api/system/reboot", json={"password": ADMIN_PW}).status == 401
    # A session without X-CSRF-Token, or a foreign Origin: 403.
    r = admin.request("POST", "/api/system/reboot", json={"password": ADMIN_PW})
    assert r.status == 403 and "X-CSRF-Token" in r.json()["error"], r
    r = admin.api("POST", "/api/system/reboot", json={"password": ADMIN_PW}, origin="https://evil.example")
    assert r.status == 403, r
    # An API token.
    r = admin.post_form("/tokens", {"name": "power script"})
    token = re.search(r'<output class="token">([^<]+)</output>', r.text).group(1)
    r = anon.api("POST", "/api/system/reboot", json={}, token=token)
    assert r.status == 400, r
    r = anon.api("POST", "/api/system/reboot", json={"password": "wrong-password!"}, token=token)
    assert r.status == 403 and r.json()["field"] == "password", r
    r = anon.api("POST", "/api/system/reboot", json={"password": ADMIN_PW}, token=token)
    assert r.status == 409 and "reboot acts on the appliance only" in r.json()["error"], r
    r = anon.api("POST", "/api/system/factory-reset", json={"password": ADMIN_PW, "confirm": "nope"}, token=token)
    assert r.status == 422 and r.json()["field"] == "confirm", r
    r = anon.api("POST", "/api/system/factory-reset", json={"password": ADMIN_PW, "confirm": "localhost"}, token=token)
    assert r.status == 409 and "factory reset acts on the appliance only" in r.json()["error"], r
    for body, field in [({"bays": "0-2"}, "spares"), ({"bays": [0, 1, 1, 2]}, "bays"), ({"bays": [0, 300]}, "bays"),
                        ({"bays": "0-15", "size_mib": 0}, "size_mib")]:
        r = anon.api("POST", "/api/disks/provision", json={"password": ADMIN_PW, **body}, token=token)
        assert r.status == 422 and r.json()["field"] == field, (body, r)
    r = anon.api("POST", "/api/disks/provision", json={"password": ADMIN_PW, "bays": "0-15", "surprise": 1}, token=token)
    assert r.status == 400, r
    r = anon.api("POST", "/api/disks/provision",
                 json={"password": ADMIN_PW, "bays": [0, 1, 2, 3, 4, 5], "spares": 2, "size_mib": 256}, token=token)
    assert r.status == 409 and "disk provisioning acts on the appliance only" in r.json()["error"], r
    # The session with its CSRF header works like the token.
    r = admin.api("POST", "/api/system/reboot", json={"password": ADMIN_PW})
    assert r.status == 409 and "appliance only" in r.json()["error"], r
    last = audit(server)[-1]
    assert last["action"] == "system.reboot" and not last["ok"], last
    assert server.running
