"""Firmware upload through the admin UI (issue 7), on a real `hermes up` over HTTPS.

The Firmware page's form (multipart/form-data: CSRF token, the admin's password, then the
bundle) and its API twin (`POST /api/firmware`, the raw bundle, the password in
`X-Hermes-Password`): refused with 403 and nothing stored without the password, with a wrong
one, without the CSRF token, with the password after the file, or from a foreign origin; 413 for
a body declared over the limit; in host mode every upload that passes the checks reaches the
supervisor, which installs no firmware, and the page says so; the uploads folder is empty after
every attempt, and every attempt is in the audit log. (The streamed size bound, over 256 MiB
sent chunked, is `appliance/svc/admin/tests/service.rs`; a real install on the appliance is
`qemu/tests/firmware.rs`.)

Own server (module scope): wrong passwords here must not lock out the admin of test_admin.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl

import pytest

from admin_client import AdminClient, setup_token

ADMIN = "root"
ADMIN_PW = "firmware-admin-password"
BUNDLE = b"HERMESUP" + os.urandom(64 * 1024)  # not a valid bundle: host mode never reads it


@pytest.fixture(scope="module")
def server(hermes_factory_module):
    return hermes_factory_module(accounts={})


def client(server) -> AdminClient:
    return AdminClient(server.endpoints["admin"], server.ssl_context())


@pytest.fixture(scope="module")
def admin(server):
    c = client(server)
    r = c.setup(setup_token(server.log_tail(400)), ADMIN, ADMIN_PW)
    assert r.status == 303, r
    return c


def multipart(fields: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body with the parts in this order: (name, value, filename)."""
    boundary = "----hermes" + os.urandom(8).hex()
    out = b""
    for name, value, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def post_upload(c: AdminClient, fields, **kw):
    body, ctype = multipart(fields)
    headers = {"Content-Type": ctype}
    headers.update(kw.pop("headers", {}))
    return c.request("POST", "/firmware/upload", body=body, headers=headers, **kw)


def uploads(server) -> list[str]:
    d = server.data / "admin" / "uploads"
    return sorted(os.listdir(d)) if d.exists() else []


def audit(server) -> list[dict]:
    return [json.loads(l) for l in (server.data / "admin" / "audit.log").read_text().splitlines()]


def fw_entries(server) -> list[dict]:
    return [e for e in audit(server) if e["action"] == "firmware.install"]


def test_the_firmware_page_has_the_upload_form_password_before_file(admin):
    page = admin.get("/firmware").text
    assert "Firmware updates apply to the appliance image" in page
    form = re.search(r'<form method="post" action="/firmware/upload" enctype="multipart/form-data">(.*?)</form>',
                     page, re.S)
    assert form, page
    f = form.group(1)
    order = [f.index('name="csrf"'), f.index('name="password"'), f.index('name="reboot"'), f.index('name="bundle"')]
    assert order == sorted(order), "the CSRF token, the password and the options come before the file"
    assert 'type="file"' in f and "checked" in f[f.index('name="reboot"') - 40:f.index('name="reboot"') + 60]


def test_no_password_wrong_password_or_password_after_the_file_is_403_and_nothing_stored(admin, server):
    before = len(fw_entries(server))
    csrf = admin.csrf("/firmware")
    r = post_upload(admin, [("csrf", csrf.encode(), None), ("bundle", BUNDLE, "hermes-9.bundle")])
    assert r.status == 403 and "password" in r.text, r
    r = post_upload(admin, [("csrf", csrf.encode(), None), ("password", b"not-the-password", None),
                            ("reboot", b"1", None), ("bundle", BUNDLE, "hermes-9.bundle")])
    assert r.status == 403 and "Wrong password" in r.text, r
    r = post_upload(admin, [("csrf", csrf.encode(), None), ("bundle", BUNDLE, "hermes-9.bundle"),
                            ("password", ADMIN_PW.encode(), None)])
    assert r.status == 403, r
    assert uploads(server) == []
    entries = fw_entries(server)[before:]
    assert len(entries) == 3 and not any(e["ok"] for e in entries), entries
    assert any(e["action"] == "reauth" and not e["ok"] for e in audit(server))
    assert ADMIN_PW not in (server.data / "admin" / "audit.log").read_text()


def test_missing_or_wrong_csrf_and_foreign_or_no_origin_are_403(admin, server):
    pw = ("password", ADMIN_PW.encode(), None)
    file = ("bundle", BUNDLE, "hermes-9.bundle")
    r = post_upload(admin, [pw, file])
    assert r.status == 403 and "security token" in r.text, r
    r = post_upload(admin, [("csrf", b"x" * 43, None), pw, file])
    assert r.status == 403 and "security token" in r.text, r
    # The Origin check and the session check answer before reading the body (and close the
    # connection): a small file, so that it is all sent before the answer.
    file = ("bundle", BUNDLE[:1024], "hermes-9.bundle")
    csrf = admin.csrf("/firmware")
    r = post_upload(admin, [("csrf", csrf.encode(), None), pw, file], origin="https://evil.example")
    assert r.status == 403, r
    r = post_upload(admin, [("csrf", csrf.encode(), None), pw, file], origin=False)
    assert r.status == 403, r
    # Not signed in: to the login page, nothing read.
    r = post_upload(client(server), [("csrf", csrf.encode(), None), pw, file])
    assert r.status == 303 and r.header("Location") == "/login"
    assert uploads(server) == []


def test_a_body_declared_over_the_limit_is_413_before_it_is_read(admin, server):
    csrf = admin.csrf("/firmware")
    host, port = admin.host, admin.port
    for path, ctype, extra in [("/firmware/upload", "multipart/form-data; boundary=x", ""),
                               ("/api/firmware", "application/octet-stream",
                                f"X-CSRF-Token: {csrf}\r\nX-Hermes-Password: {ADMIN_PW}\r\n")]:
        raw = socket.create_connection((host, port), timeout=30)
        tls = server.ssl_context().wrap_socket(raw, server_hostname=host)
        cookies = "; ".join(f"{k}={v}" for k, v in admin.cookies.items())
        tls.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {admin.origin}\r\n"
                     f"Cookie: {cookies}\r\nContent-Type: {ctype}\r\n{extra}"
                     f"Content-Length: {300 * 1024 * 1024}\r\nConnection: close\r\n\r\n").encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        tls.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"256 MiB" in answer, answer[-500:]
    assert uploads(server) == []


def test_an_upload_in_host_mode_is_refused_clearly_and_removed(admin, server):
    before = len(fw_entries(server))
    csrf = admin.csrf("/firmware")
    r = post_upload(admin, [("csrf", csrf.encode(), None), ("password", ADMIN_PW.encode(), None),
                            ("reboot", b"1", None), ("bundle", BUNDLE, "hermes-9.bundle")])
    assert r.status == 409, r
    assert "host mode" in r.text and "Firmware updates apply to the appliance image" in r.text, r.text
    assert "Nothing was installed" in r.text
    assert str(server.data) not in r.text, "no path on the box is shown"
    assert uploads(server) == [], "the upload is removed after the supervisor's answer"
    [e] = fw_entries(server)[before:]
    assert e["ok"] is False and e["admin"] == ADMIN and e["peer"] == "127.0.0.1"
    assert f"{len(BUNDLE)} bytes, sha256 {hashlib.sha256(BUNDLE).hexdigest()}" in e["detail"], e
    assert "host mode" in e["detail"]
    # The service still works, and the page shows the form again.
    assert "Install an update" in admin.get("/firmware").text


def test_the_api_twin(admin, server):
    before = len(fw_entries(server))
    r = admin.post_form("/tokens", {"name": "firmware script"})
    assert r.status == 200, r
    token = re.search(r'<output class="token">([^<]+)</output>', r.text).group(1)
    octet = {"Content-Type": "application/octet-stream"}

    def api(headers: dict, body=BUNDLE, path="/api/firmware?reboot=0&force=0", tok=token):
        h = dict(octet)
        h.update(headers)
        return admin.api("POST", path, token=tok, body=body, headers=h)

    r = api({})
    assert r.status == 403 and "X-Hermes-Password" in r.json()["error"], r
    r = api({"X-Hermes-Password": "wrong-wrong-wrong"})
    assert r.status == 403 and "wrong password" in r.json()["error"], r
    r = api({"X-Hermes-Password": ADMIN_PW, "Content-Type": "application/json"})
    assert r.status == 415, r
    r = api({"X-Hermes-Password": ADMIN_PW}, path="/api/firmware?reboot=maybe")
    assert r.status == 422 and r.json()["field"] == "reboot", r
    r = api({"X-Hermes-Password": ADMIN_PW}, body=b"")
    assert r.status == 422, r
    # A session without the CSRF header, and no credentials at all: refused before the body is
    # read (and the connection closed), so a small body that is all sent before the answer.
    r = admin.request("POST", "/api/firmware", body=BUNDLE[:1024], headers={**octet, "X-Hermes-Password": ADMIN_PW})
    assert r.status == 403 and "X-CSRF-Token" in r.json()["error"], r
    r = client(server).request("POST", "/api/firmware", body=BUNDLE[:1024], headers=octet)
    assert r.status == 401, r
    assert uploads(server) == []
    # Past every check: the host-mode supervisor's refusal, as JSON.
    r = api({"X-Hermes-Password": ADMIN_PW})
    assert r.status == 409, r
    j = r.json()
    assert "host mode" in j["error"] and j["bytes"] == len(BUNDLE), j
    assert j["sha256"] == hashlib.sha256(BUNDLE).hexdigest()
    # The session with X-CSRF-Token gets the same.
    r = admin.api("POST", "/api/firmware", body=BUNDLE, headers={**octet, "X-Hermes-Password": ADMIN_PW})
    assert r.status == 409 and "host mode" in r.json()["error"], r
    assert uploads(server) == []
    entries = fw_entries(server)[before:]
    assert [e["ok"] for e in entries] == [False] * 7, entries
    assert sum("host mode" in e["detail"] for e in entries) == 2, entries
    # GET /api/firmware is unchanged.
    assert admin.api("GET", "/api/firmware", token=token).json()["appliance"] is False


def test_a_real_browser_uploads_through_the_form(server, tmp_path):
    """Headless Chromium (JavaScript off, as in test_admin_browser.py) fills the password, picks
    the file and submits: its multipart body, in the form's field order, passes the CSRF and
    password checks and reaches the host-mode supervisor, whose refusal the page shows."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from test_admin_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--ignore-certificate-errors"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    opts.accept_insecure_certs = True
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    try:
        base = "https://" + server.endpoints["admin"]
        d.get(base + "/login")
        d.find_element(By.ID, "name").send_keys(ADMIN)
        d.find_element(By.ID, "password").send_keys(ADMIN_PW)
        old = d.find_element(By.TAG_NAME, "html")
        d.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
        WebDriverWait(d, 30).until(EC.staleness_of(old))
        before = len(fw_entries(server))
        bundle = tmp_path / "hermes-9.9.bundle"
        bundle.write_bytes(BUNDLE)
        d.get(base + "/firmware")
        d.find_element(By.ID, "fw-password").send_keys(ADMIN_PW)
        d.find_element(By.ID, "fw-bundle").send_keys(str(bundle))
        old = d.find_element(By.TAG_NAME, "html")
        d.find_element(By.XPATH, "//button[normalize-space()='Upload and install']").click()
        WebDriverWait(d, 60).until(EC.staleness_of(old))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(ARTIFACTS / "17-firmware-upload-host-mode.png"))
        result = d.find_element(By.ID, "fw-result").text
        assert "host mode" in result and "Nothing was installed" in result, result
        [e] = fw_entries(server)[before:]
        assert f"{len(BUNDLE)} bytes" in e["detail"] and "reboot true" in e["detail"], e
        assert uploads(server) == []
    finally:
        d.quit()
