"""Fixtures and helpers for the router (SMTP hub) suites: `test_router*.py`.

Imported by those modules (`from router_fixtures import *`), so the shared conftest stays as it is.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time

import pytest

from hermes_testlib import addr, wait_for

ALICE = "alice@example.org"
BOB = "bob@example.org"


def no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def smtp(h, port: str = "smtp", source: str | None = None, timeout: float = 30) -> smtplib.SMTP:
    host, p = addr(h.endpoints[port])
    kw = {"source_address": (source, 0)} if source else {}
    if port == "submissions":
        return smtplib.SMTP_SSL(host, p, context=no_verify(), timeout=timeout, **kw)
    return smtplib.SMTP(host, p, timeout=timeout, **kw)


def submit(h, user: str, rcpts: list[str], message: bytes, sender: str | None = None):
    c = smtp(h, "submission")
    try:
        c.starttls(context=no_verify())
        c.login(user, h.passwords[user])
        return c.sendmail(sender or user, rcpts, message)
    finally:
        c.quit()


def inbox(h, user: str) -> list[bytes]:
    c = h.imap(user)
    try:
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        n = int(data[0])
        if not n:
            return []
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        return [d[1] for d in data if isinstance(d, tuple)]
    finally:
        c.logout()


def wait_in_inbox(h, user: str, marker: bytes, timeout: float = 30, count: int = 1) -> list[bytes]:
    def found():
        hits = [m for m in inbox(h, user) if marker in m]
        return hits if len(hits) >= count else None

    return wait_for(found, timeout, interval=0.2, what=f"{marker!r} in {user}'s INBOX")


class RawSmtp:
    """A line-level SMTP client for cases smtplib refuses to produce."""

    def __init__(self, hostport: str, source: str | None = None, timeout: float = 30):
        host, port = addr(hostport)
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; so far {lines!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            lines.append(line.rstrip(b"\r"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), b"\n".join(lines)

    def cmd(self, line: str | bytes) -> tuple[int, bytes]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        code, _ = self.cmd("STARTTLS")
        assert code == 220
        self.sock = no_verify().wrap_socket(self.sock)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture(scope="module")
def router(hermes_factory_module):
    """A running Hermes (store + router) with example.org and alice, bob, carol."""
    return hermes_factory_module()


def unique(tag: str) -> str:
    return f"{tag}-{time.time_ns()}"
