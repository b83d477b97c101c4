"""The host-mode supervisor (`hermes up`): endpoints, restart of a crashed service, clean shutdown."""

from __future__ import annotations

import imaplib
import json
import os
import signal
import socket
import ssl
import subprocess
import time

from conftest import ACCOUNTS
from hermes_testlib import addr, hermes_binary, make_message, wait_for

ALICE = "alice@example.org"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False


def read_endpoints(h) -> dict:
    return json.loads((h.data / "run" / "endpoints.json").read_text())


def serves(h) -> bool:
    """Full round trip: LMTP delivery then IMAP login and fetch of that message."""
    h.endpoints = read_endpoints(h)
    msg = make_message(f"still serving {time.time_ns()}")
    assert h.deliver(ALICE, msg)[ALICE][0] == 250
    c = h.imap(ALICE)
    typ, data = c.select("INBOX", readonly=True)
    n = int(data[0])
    typ, data = c.fetch(str(n), "(BODY.PEEK[])")
    c.logout()
    return data[0][1].endswith(msg)


def test_endpoints_json_lists_every_protocol_and_each_answers(hermes_server):
    ep = read_endpoints(hermes_server)
    assert {"imap", "imaps", "lmtp", "lmtp_socket"} <= set(ep), ep
    for k in ("imap", "imaps", "lmtp"):
        host, port = addr(ep[k])
        assert host == "127.0.0.1" and port > 0, ep
    assert len({ep["imap"], ep["imaps"], ep["lmtp"]}) == 3, ep

    with socket.create_connection(addr(ep["imap"]), timeout=10) as s:
        assert s.recv(1024).startswith(b"* OK"), "IMAP greeting"
    ctx = ssl.create_default_context(cafile=str(hermes_server.data / "tls" / "cert.pem"))
    ctx.check_hostname = False
    with ctx.wrap_socket(socket.create_connection(addr(ep["imaps"]), timeout=10)) as s:
        assert s.recv(1024).startswith(b"* OK"), "IMAPS greeting"
    with socket.create_connection(addr(ep["lmtp"]), timeout=10) as s:
        assert s.recv(1024).startswith(b"220 "), "LMTP greeting"
    assert os.path.isabs(ep["lmtp_socket"])
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(ep["lmtp_socket"])
        assert s.recv(1024).startswith(b"220 "), "LMTP socket greeting"


def test_self_signed_certificate_is_created_and_kept(hermes_factory):
    h = hermes_factory()
    cert = (h.data / "tls" / "cert.pem").read_bytes()
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    key = h.data / "tls" / "key.pem"
    assert key.exists() and (key.stat().st_mode & 0o077) == 0, oct(key.stat().st_mode)
    assert h.stop() == 0
    h.start()
    assert (h.data / "tls" / "cert.pem").read_bytes() == cert, "certificate regenerated on restart"
    h.imap(ALICE, mode="ssl").logout()


def test_status_reports_the_store_service(hermes_server):
    pid = hermes_server.store_pid()
    assert alive(pid)
    out = hermes_server.cli("status").stdout.decode()
    assert "store" in out and str(pid) in out, out


def test_killed_store_is_restarted_and_serves(hermes_factory):
    h = hermes_factory()
    assert serves(h)
    for round_ in range(2):  # twice: a second crash is restarted too (with backoff)
        old = h.store_pid()
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        new = wait_for(lambda: (p := h.service_pids().get("store")) and p != old and alive(p) and p, 15,
                       what="a new store pid in run/endpoints.d/store.json")
        assert not alive(old)
        assert h.running, "the supervisor died with its child"
        # serving again within a few seconds of the crash
        wait_for(lambda: _try(lambda: serves(h)), 10, interval=0.2, what="the restarted store to serve")
        assert time.monotonic() - t0 < 15
        assert new == h.store_pid()
    assert h.stop() == 0


def _try(f):
    try:
        return f()
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def test_sigterm_stops_everything_cleanly(hermes_factory):
    h = hermes_factory()
    pids = h.service_pids()
    assert pids, "no services in run/endpoints.d"
    # an open session does not block shutdown
    c = h.imap(ALICE, ACCOUNTS[ALICE])
    c.select("INBOX")
    t0 = time.monotonic()
    assert h.stop() == 0
    assert time.monotonic() - t0 < 15
    for name, pid in pids.items():
        assert not alive(pid), f"{name} ({pid}) still running after the supervisor exited"
    assert not (h.data / "run" / "endpoints.json").exists(), "endpoints.json left behind after a clean stop"
    r = h.cli("status", check=False)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    answered = True
    try:
        c.noop()
    except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
        answered = False
    assert not answered, "session still answered after shutdown"
    # ports are free again: a new start works on the same data
    h.start()
    h.imap(ALICE).logout()


def test_second_supervisor_on_the_same_data_is_refused(hermes_server):
    r = subprocess.run([str(hermes_binary()), "up", "--data", str(hermes_server.data)],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r
    assert b"already running" in r.stdout + r.stderr, r
    assert serves(hermes_server), "the first supervisor was disturbed"


def test_invalid_config_is_reported_with_field_paths_and_exit_2(tmp_path):
    data = tmp_path / "bad"
    (data / "config").mkdir(parents=True)
    (data / "config" / "hermes.toml").write_text(
        '[server]\nlisten = "nowhere"\n[store]\nzstd_level = 99\n[limits]\nmax_line = 0\n')
    r = subprocess.run([str(hermes_binary()), "up", "--data", str(data)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 2, (r.returncode, out)
    for path in ("server.listen", "store.zstd_level", "limits.max_line"):
        assert path in out, (path, out)
    (data / "config" / "hermes.toml").write_text("[imap]\nbogus_key = 1\n")
    r = subprocess.run([str(hermes_binary()), "up", "--data", str(data)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and b"bogus_key" in r.stdout + r.stderr, r


def test_service_log_lines_are_kept_in_data_log(hermes_server):
    """`hermes up` appends every service's JSON lines, and its own, to DATA/log/hermes.log."""
    path = hermes_server.data / "log" / "hermes.log"
    deadline = time.time() + 10
    services = set()
    while time.time() < deadline:
        services = set()
        for line in path.read_text(errors="replace").splitlines():
            obj = json.loads(line)  # every line is one JSON object
            services.add(obj["service"])
        if {"supervisor", "store", "router"} <= services:
            break
        time.sleep(0.2)
    assert {"supervisor", "store", "router"} <= services, services
    assert oct(path.stat().st_mode & 0o777) == "0o640"
