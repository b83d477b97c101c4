"""Helpers shared by the end-to-end suites: the `Hermes` server handle, a raw IMAP client for what
imaplib cannot do (IDLE, ESEARCH, MULTIAPPEND, garbage), modified UTF-7 and message builders.

These helpers start and drive the real `hermes` binary; they never fake a server response.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import base64
from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parent.parent


def hermes_binary() -> Path:
    """The binary under test: $HERMES_BIN, else target/$HERMES_PROFILE (debug)/hermes."""
    if os.environ.get("HERMES_BIN"):
        return Path(os.environ["HERMES_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / os.environ.get("HERMES_PROFILE", "debug") / "hermes"


# Limits the suites use unless a test overrides them: generous connection limits (the
# durability test opens 50+ sessions per user) and a short, measurable auth-failure delay.
DEFAULT_CONFIG = {
    "server": {"listen": "127.0.0.1", "hostname": "localhost"},
    "imap": {"port": 0, "tls_port": 0, "plaintext_auth_on_loopback": True},
    "pop3": {"port": 0, "tls_port": 0, "plaintext_auth_on_loopback": True},
    "lmtp": {"port": 0},
    "managesieve": {"port": 0, "plaintext_auth_on_loopback": True},
    # Vacation/redirect relay: off unless a test points it at its SMTP sink (test_sieve.py).
    "sieve": {"relay": ""},
    "router": {"smtp_port": 0, "submission_port": 0, "submissions_port": 0},
    "admin": {"port": 0},
    "limits": {
        "max_sessions_per_user": 500,
        "max_connections_per_ip": 5000,
        "max_connections": 10000,
        "auth_fail_delay_ms": 300,
        "max_auth_fail_delay_ms": 600,
    },
}


def merge_config(base: dict, override: dict | None) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in (override or {}).items():
        out.setdefault(section, {}).update(values)
    return out


def to_toml(cfg: dict) -> str:
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, (int, float)):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


def addr(hostport: str) -> tuple[str, int]:
    host, port = hostport.rsplit(":", 1)
    return host.strip("[]"), int(port)


class Hermes:
    """One `hermes up --data DIR` process and the CLI around it."""

    READY_TIMEOUT = 30.0

    def __init__(self, data: Path, config: dict | None = None):
        self.data = Path(data)
        self.config = merge_config(DEFAULT_CONFIG, config)
        self.proc: subprocess.Popen | None = None
        self.endpoints: dict[str, str] = {}
        self.log_path = self.data / "test-server.log"
        self.passwords: dict[str, str] = {}
        self._ready = threading.Event()
        (self.data / "config").mkdir(parents=True, exist_ok=True)
        (self.data / "config" / "hermes.toml").write_text(to_toml(self.config))

    # -- process ---------------------------------------------------------------------------

    def start(self) -> "Hermes":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        stale = self.data / "run" / "endpoints.json"
        if stale.exists():
            stale.unlink()  # left by a previous (killed) run of ours; the supervisor rewrites it
        self._ready = threading.Event()
        log = open(self.log_path, "ab")
        log.write(f"=== hermes up at {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [str(hermes_binary()), "up", "--data", str(self.data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a test can kill the whole tree
        )
        threading.Thread(target=self._pump, args=(self.proc, log, self._ready), daemon=True).start()
        deadline = time.monotonic() + self.READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hermes up exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready.is_set() and stale.exists():
                try:
                    self.endpoints = json.loads(stale.read_text())
                    break
                except json.JSONDecodeError:
                    pass
            time.sleep(0.05)
        else:
            raise AssertionError(
                f"no `hermes: ready` and endpoints.json within {self.READY_TIMEOUT}s:\n{self.log_tail()}"
            )
        return self

    @staticmethod
    def _pump(proc, log, ready):
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if line.strip() == b"hermes: ready" or line.startswith(b"hermes: ready"):
                ready.set()
        log.close()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"hermes up did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}")

    def kill_group(self) -> None:
        """kill -9 the supervisor and all its children (its process group)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        # children that left the group (they should not) would keep ports: kill those that are
        # still ours (their command line names this data folder; a pid may have been reused)
        for pid in self.service_pids().values():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(self.data).encode() in cmdline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def service_pids(self) -> dict[str, int]:
        out = {}
        d = self.data / "run" / "endpoints.d"
        for f in d.glob("*.json") if d.exists() else []:
            try:
                out[f.stem] = int(json.loads(f.read_text())["pid"])
            except (ValueError, KeyError, json.JSONDecodeError):
                pass
        return out

    def store_pid(self) -> int:
        pids = self.service_pids()
        assert "store" in pids, f"no run/endpoints.d/store.json with a pid: {pids}"
        return pids["store"]

    # -- CLI -------------------------------------------------------------------------------

    def cli(self, *args: str, input: bytes | str | None = None, check: bool = True, timeout=60):
        if isinstance(input, str):
            input = input.encode()
        r = subprocess.run(
            [str(hermes_binary()), *args, "--data", str(self.data)],
            input=input,
            capture_output=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"hermes {' '.join(args)} exited {r.returncode}\nstdout: {r.stdout.decode(errors='replace')}"
                f"\nstderr: {r.stderr.decode(errors='replace')}"
            )
        return r

    def add_domain(self, domain: str) -> None:
        self.cli("domain", "add", domain)

    def add_account(self, address: str, password: str) -> None:
        self.cli("account", "add", address, "--password-stdin", input=password + "\n")
        self.passwords[address] = password

    def deliver_cli(self, to: str, message: bytes, check=True):
        return self.cli("deliver", "--to", to, input=message, check=check)

    # -- clients ---------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.data / "tls" / "cert.pem"))
        ctx.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
        return ctx

    def imap(self, user: str | None = None, password: str | None = None, mode: str = "plain"):
        """An imaplib client: mode plain | starttls | ssl; logged in when `user` is given."""
        if mode == "ssl":
            host, port = addr(self.endpoints["imaps"])
            c = imaplib.IMAP4_SSL(host, port, ssl_context=self.ssl_context(), timeout=30)
        else:
            host, port = addr(self.endpoints["imap"])
            c = imaplib.IMAP4(host, port, timeout=30)
            if mode == "starttls":
                c.starttls(ssl_context=self.ssl_context())
        if user is not None:
            c.login(user, password if password is not None else self.passwords[user])
        return c

    def raw(self, mode: str = "plain", login: str | None = None, timeout: float = 30) -> "RawImap":
        if mode == "ssl":
            r = RawImap.connect(self.endpoints["imaps"], ssl_ctx=self.ssl_context(), timeout=timeout)
        else:
            r = RawImap.connect(self.endpoints["imap"], timeout=timeout)
        if login:
            r.ok(f"LOGIN {quote(login)} {quote(self.passwords[login])}")
        return r

    def lmtp(self, via: str = "tcp") -> smtplib.LMTP:
        if via == "unix":
            c = smtplib.LMTP(self.endpoints["lmtp_socket"], timeout=30)
        else:
            host, port = addr(self.endpoints["lmtp"])
            c = smtplib.LMTP(host, port, timeout=30)
        return c

    def deliver(self, rcpts: str | Iterable[str], message: bytes, via: str = "tcp",
                sender: str = "sender@example.net") -> dict:
        """Delivers over LMTP. Returns {rcpt: (code, text)} for every recipient.

        smtplib's LMTP client raises if every recipient is refused; refused ones are returned too.
        """
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        rcpts = list(rcpts)
        c = self.lmtp(via)
        try:
            return lmtp_send(c, sender, rcpts, message)
        finally:
            try:
                c.quit()
            except (smtplib.SMTPException, OSError):
                pass


def lmtp_send(c: smtplib.LMTP, sender: str, rcpts: list[str], message: bytes) -> dict:
    """MAIL, RCPT each, DATA; LMTP answers once per accepted recipient after the data."""
    c.ehlo_or_helo_if_needed()
    code, text = c.mail(sender)
    assert code == 250, (code, text)
    out = {}
    accepted = []
    for r in rcpts:
        code, text = c.rcpt(r)
        if code == 250:
            accepted.append(r)
        else:
            out[r] = (code, text)
    if not accepted:
        c.rset()
        return out
    code, text = c.docmd("DATA")
    assert code == 354, (code, text)
    data = message
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = re.sub(rb"(?m)^\.", b"..", data)
    c.send(data + b".\r\n")
    for r in accepted:
        code, text = c.getreply()
        out[r] = (code, text)
    return out


# ------------------------------------------------------------------------------------------
# Raw IMAP


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapError(AssertionError):
    pass


class RawImap:
    """A line-level IMAP client: send exactly the bytes a test wants, read exactly what comes back."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.n = 0
        self.greeting = self.readline()

    @classmethod
    def connect(cls, hostport: str, ssl_ctx: ssl.SSLContext | None = None, timeout: float = 30) -> "RawImap":
        s = socket.create_connection(addr(hostport), timeout=timeout)
        if ssl_ctx is not None:
            s = ssl_ctx.wrap_socket(s, server_hostname="localhost")
        return cls(s)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def readline(self) -> bytes:
        """One response line (CRLF included) with any literals it announces inlined."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n") + 2
            line, self.buf = self.buf[:i], self.buf[i:]
            out += line
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def tag(self) -> str:
        self.n += 1
        return f"T{self.n}"

    def read_tagged(self, tag: str) -> tuple[list[bytes], bytes]:
        untagged = []
        while True:
            line = self.readline()
            if line.startswith(tag.encode() + b" "):
                return untagged, line
            untagged.append(line)

    def cmd(self, command: str | bytes) -> tuple[list[bytes], bytes]:
        """Sends `TAG command` and returns (untagged lines, tagged status line)."""
        t = self.tag()
        if isinstance(command, str):
            command = command.encode()
        self.send(t.encode() + b" " + command + b"\r\n")
        return self.read_tagged(t)

    def ok(self, command: str | bytes) -> list[bytes]:
        untagged, status = self.cmd(command)
        if not status.split(b" ", 2)[1:2] == [b"OK"]:
            raise ImapError(f"{command!r} -> {status!r}")
        return untagged

    def status_of(self, command: str | bytes) -> bytes:
        """The tagged status word (OK/NO/BAD) and the rest of the line."""
        _, status = self.cmd(command)
        return status.split(b" ", 1)[1]


# ------------------------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 §5.1.3)


def mutf7_encode(s: str) -> str:
    out, run = [], []

    def flush():
        if run:
            b = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in s:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(s: str) -> str:
    def dec(m):
        body = m.group(1)
        if body == "":
            return "&"
        b = body.replace(",", "/")
        b += "=" * (-len(b) % 4)
        return base64.b64decode(b).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", dec, s)


# ------------------------------------------------------------------------------------------
# Messages


def make_message(subject: str, body: str = "Hello.\r\n", sender: str = "Alice <alice@example.org>",
                 to: str = "Bob <bob@example.org>", marker: str | None = None,
                 date: str = "Sat, 28 Nov 2026 10:00:00 +0000", extra_headers: str = "") -> bytes:
    marker = marker or f"{time.time_ns()}.{os.getpid()}.{threading.get_ident()}"
    msg = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: <{marker}@test.example.org>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n{extra_headers}\r\n{body}"
    )
    if not msg.endswith("\r\n"):
        msg += "\r\n"
    return msg.encode()


def wait_for(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def split_trace_headers(stored: bytes) -> tuple[bytes, bytes]:
    """Splits the trace headers LMTP prepends (Return-Path, Received) from the delivered message.

    Returns (trace, original). Trace fields are the leading `Return-Path:`/`Received:` fields,
    including their folded continuation lines.
    """
    pos = 0
    while True:
        m = re.match(rb"(Return-Path|Received):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", stored[pos:], re.I)
        if not m:
            return stored[:pos], stored[pos:]
        pos += m.end()
