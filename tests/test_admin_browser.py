"""The admin UI in a real browser: headless Chromium (Debian's chromium + chromium-driver,
driven by selenium) walks first-boot setup → dashboard → add a domain → add an account →
mail arrives → the account page shows the usage → change the quota, with JavaScript disabled
(the UI must not need it), and keeps screenshots in target/test-artifacts/admin/.

Needs: apt chromium chromium-driver, pip selenium (scripts/test.sh installs them).
"""

from __future__ import annotations

import json
import re
import shutil
import smtplib
from pathlib import Path

import pytest

from admin_client import setup_token
from hermes_testlib import addr, make_message

import selenium  # noqa: E402,F401  (scripts/test.sh installs it; missing is a failure, not a skip)
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "target" / "test-artifacts" / "admin"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"



def test_browser_tools_are_installed():
    """scripts/test.sh installs Debian's chromium and chromium-driver; their absence is a failure."""
    assert Path(CHROMIUM).exists(), CHROMIUM
    assert Path(CHROMEDRIVER).exists(), CHROMEDRIVER


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--ignore-certificate-errors"):
        opts.add_argument(a)
    # The UI must work without JavaScript.
    opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    opts.accept_insecure_certs = True
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


def shot(d, name: str):
    d.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def fill(d, fields: dict[str, str], submit_text: str):
    for ident, value in fields.items():
        el = d.find_element(By.ID, ident)
        el.clear()
        el.send_keys(value)
    old = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.XPATH, f"//button[normalize-space()='{submit_text}']").click()
    # The submit navigates (POST, then the redirect's GET): wait for the new document.
    WebDriverWait(d, 30).until(EC.staleness_of(old))
    WebDriverWait(d, 30).until(lambda drv: drv.execute_script("return document.readyState") == "complete")


def test_setup_domain_account_usage_quota_in_chromium(hermes_factory, browser):
    server = hermes_factory(accounts={})
    base = f"https://{server.endpoints['admin']}"
    d = browser

    d.get(base + "/")
    assert d.current_url.endswith("/setup"), d.current_url
    shot(d, "01-setup")
    fill(d, {"token": setup_token(server.log_tail(400)), "name": "root",
             "new_password": "browser-admin-password", "confirm": "browser-admin-password"},
         "Create the admin account")
    assert d.find_element(By.TAG_NAME, "h1").text == "Dashboard", d.page_source[:2000]
    assert "store" in d.page_source and "TLS certificate" in d.page_source
    shot(d, "02-dashboard")

    d.get(base + "/domains")
    fill(d, {"domain": "browser.example"}, "Add domain")
    assert "Domain browser.example added." in d.page_source
    shot(d, "03-domains")

    d.get(base + "/accounts")
    fill(d, {"address": "walt@browser.example", "password": "walt-password-1", "quota": "2G"}, "Create account")
    assert "Account walt@browser.example created." in d.page_source
    shot(d, "04-account-created")

    server.deliver("walt@browser.example", make_message("hello from the browser test", "x" * 20_000))
    d.refresh()
    assert "1 messages" in d.page_source
    assert d.find_element(By.CSS_SELECTOR, "svg.bar").get_attribute("role") == "img"

    fill(d, {"quota": "500M", "messages": "20000"}, "Set quota")
    assert "Quota set to 500M, message limit 20000." in d.page_source
    shot(d, "05-quota-changed")
    listed = json.loads(server.cli("account", "list", "--json").stdout)
    walt = [a for a in listed if a["address"] == "walt@browser.example"]
    assert [(a["quota_bytes"], a["quota_messages"]) for a in walt] == [(500 << 20, 20000)], walt

    # The dashboard counts moved: directory counts, and a message through SMTP in the rates.
    d.get(base + "/")
    stats = d.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dir-h] dl.stats").text
    assert "Domains\n2" in stats and "Accounts\n1" in stats, stats
    caption = d.find_element(By.CSS_SELECTOR, "figure.chart figcaption").text
    before = int(re.search(r"accepted: (\d+)", caption).group(1))
    host, port = addr(server.endpoints["smtp"])
    with smtplib.SMTP(host, port, timeout=30) as c:
        c.sendmail("sender@remote.example", ["walt@browser.example"], make_message("through smtp"))
    d.get(base + "/")
    chart = d.find_element(By.CSS_SELECTOR, "svg.chart")
    assert chart.get_attribute("role") == "img" and "Messages" in chart.get_attribute("aria-label")
    caption = d.find_element(By.CSS_SELECTOR, "figure.chart figcaption").text
    assert int(re.search(r"accepted: (\d+)", caption).group(1)) >= before + 1, caption
    shot(d, "02b-dashboard-rates")

    # Change the configuration, then roll it back from the history.
    d.get(base + "/config")
    area = d.find_element(By.ID, "config")
    original = area.get_attribute("value")
    area.send_keys(Keys.CONTROL, Keys.END)
    area.send_keys("\n[store]\nretention_days = 7\n")
    fill(d, {"password": "browser-admin-password"}, "Validate and apply")
    assert "applied" in d.find_element(By.CSS_SELECTOR, ".flash.ok").text
    assert "retention_days = 7" in (server.data / "config" / "hermes.toml").read_text()
    shot(d, "07-config-applied")
    d.find_elements(By.PARTIAL_LINK_TEXT, "Diff and rollback")[-1].click()
    assert "retention_days = 7" in d.find_element(By.CSS_SELECTOR, "pre.diff").text
    shot(d, "08-config-diff")
    fill(d, {"password": "browser-admin-password"}, "Roll back to this version")
    assert "Rolled back" in d.page_source
    assert (server.data / "config" / "hermes.toml").read_text().replace("\r\n", "\n").strip() == original.replace("\r\n", "\n").strip()

    # Every other page renders without JavaScript (screenshots for review).
    d.get(base + "/routes")
    fill(d, {"domain": "dept.browser.example", "hosts": "127.0.0.1:9"}, "Add route")
    assert "Route for dept.browser.example saved." in d.page_source and "router: applied" in d.page_source
    shot(d, "09-routes")
    d.get(base + "/routes")
    fill(d, {"max_message_bytes": "lots"}, "Save relay and limits")
    assert d.find_element(By.ID, "max_message_bytes-error").is_displayed()
    shot(d, "10-relay-error")
    # The network form checks every field on the server: a bad static address is refused
    # beside its field and nothing is saved.
    d.get(base + "/system/network")
    d.find_element(By.CSS_SELECTOR, "input[name='if0_mode'][value='static']").click()
    fill(d, {"if0_name": "eth9", "if0_ipv4": "300.1.2.3/24"}, "Save and apply")
    assert d.find_element(By.ID, "if0_ipv4-error").is_displayed(), d.page_source[:3000]
    assert "Nothing was saved" in d.page_source
    shot(d, "18-network-error")
    for path, name, text in [("/queue", "11-queue", "messages in the queue"),
                             ("/certificates", "12-certificates", "CN=localhost"),
                             ("/disks", "13-disks", "Disks and RAID"),
                             ("/logs", "14-logs", "Service logs"),
                             ("/system", "15-system", "Reboot and factory reset"),
                             ("/system/network", "17-network", "Network settings"),
                             ("/firmware", "16-firmware", "Install an update")]:
        d.get(base + path)
        assert text in d.page_source, (path, d.page_source[:2000])
        assert d.find_element(By.TAG_NAME, "h1").text, path
        shot(d, name)

    # On a phone-sized screen the account list still renders (screenshot for review).
    d.set_window_size(390, 844)
    d.get(base + "/accounts")
    assert "walt@browser.example" in d.page_source
    shot(d, "06-accounts-phone")
    d.set_window_size(1280, 900)
