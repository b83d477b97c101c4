"""MX routing against a real DNS server on loopback (dnsmasq serving a test zone).

The hub resolves `hermes.test` domains through dnsmasq on 127.0.0.1:PORT
(`router.nameservers`) and delivers to the MX host's address on `router.remote_smtp_port`,
where a second hermes accepts mail for those domains. Covers MX preference order, the A
fallback (no MX), and NXDOMAIN bouncing back to the sender.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from hermes_testlib import addr
from router_fixtures import *  # noqa: F401,F403
from router_fixtures import ALICE, inbox, submit, unique, wait_in_inbox

DNSMASQ = shutil.which("dnsmasq") or (shutil.which("dnsmasq", path="/usr/sbin:/sbin"))



def test_dnsmasq_is_installed():
    """scripts/test.sh installs dnsmasq-base; its absence is a failure, not a skip."""
    assert DNSMASQ is not None


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def dns(tmp_path):
    port = free_udp_port()
    proc = subprocess.Popen([
        DNSMASQ, "--no-daemon", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
        "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/hermes.test/",
        # mx.hermes.test: two MX records; the preferred one (10) works, the other (20) does not exist.
        "--mx-host=mx.hermes.test,good.hermes.test,10", "--mx-host=mx.hermes.test,broken.hermes.test,20",
        "--host-record=good.hermes.test,127.0.0.1",
        # a.hermes.test: no MX, only an A record (RFC 5321 §5.1 fallback).
        "--host-record=a.hermes.test,127.0.0.1",
        f"--pid-file={tmp_path / 'dnsmasq.pid'}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read()
    yield port
    proc.terminate()
    proc.wait(10)


def test_mx_and_a_fallback_and_nxdomain(hermes_factory, dns):
    remote = hermes_factory(accounts={})
    for d in ["mx.hermes.test", "a.hermes.test"]:
        remote.add_domain(d)
    remote.add_account("user@mx.hermes.test", "pw-user-1")
    remote.add_account("user@a.hermes.test", "pw-user-2")
    _, remote_port = addr(remote.endpoints["smtp"])
    hub = hermes_factory({"router": {"nameservers": [f"127.0.0.1:{dns}"], "remote_smtp_port": remote_port,
                                     "retry_min_secs": 1, "retry_max_secs": 2}})
    tag = unique("mx")
    submit(hub, ALICE, ["user@mx.hermes.test", "user@a.hermes.test", "ghost@nxdomain.hermes.test"],
           f"From: {ALICE}\r\nSubject: {tag}\r\n\r\nover MX\r\n".encode())
    wait_in_inbox(remote, "user@mx.hermes.test", tag.encode())
    wait_in_inbox(remote, "user@a.hermes.test", tag.encode())
    [bounce] = wait_in_inbox(hub, ALICE, b"Undelivered Mail Returned to Sender", timeout=60)
    assert b"ghost@nxdomain.hermes.test" in bounce and b"Status: 5.1.2" in bounce
