"""Helpers for tests/test_sieve.py: an SMTP sink that records what the Sieve relay sends, and
a small ManageSieve (RFC 5804) client over a raw socket with STARTTLS.

Dependency-free on purpose (no aiosmtpd): the sink speaks just enough SMTP for one client.
"""

from __future__ import annotations

import base64
import queue
import re
import socket
import socketserver
import ssl
import threading


class SmtpSink:
    """Accepts every message on 127.0.0.1:<port>; each lands in `messages` as (from, to, data)."""

    def __init__(self):
        self.messages: "queue.Queue[tuple[str, str, bytes]]" = queue.Queue()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                w = self.wfile
                w.write(b"220 sink ESMTP\r\n")
                mail_from = rcpt = ""
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    up = line.upper()
                    if up.startswith(b"EHLO") or up.startswith(b"HELO"):
                        w.write(b"250-sink\r\n250 8BITMIME\r\n")
                    elif up.startswith(b"MAIL FROM:"):
                        mail_from = line[10:].strip().decode()
                        w.write(b"250 ok\r\n")
                    elif up.startswith(b"RCPT TO:"):
                        rcpt = line[8:].strip().decode()
                        w.write(b"250 ok\r\n")
                    elif up.startswith(b"DATA"):
                        w.write(b"354 go\r\n")
                        data = b""
                        while True:
                            l = self.rfile.readline()
                            if not l or l == b".\r\n":
                                break
                            data += l[1:] if l.startswith(b"..") else l
                        sink.messages.put((mail_from, rcpt, data))
                        w.write(b"250 queued\r\n")
                    elif up.startswith(b"QUIT"):
                        w.write(b"221 bye\r\n")
                        return
                    else:
                        w.write(b"250 ok\r\n")

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _sieve_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ManageSieve:
    """Raw ManageSieve client: `cmd` returns (lines, final) with literals inlined."""

    def __init__(self, hostport: str, timeout: float = 30):
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.greeting = self.response()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[list[str], str]:
        lines = []
        while True:
            line = self._line()
            m = re.fullmatch(rb"\{(\d+)\}", line)
            if m:
                lines.append(self._exact(int(m.group(1))).decode())
                continue
            text = line.decode()
            if text.startswith(("OK", "NO", "BYE")):
                return lines, text
            lines.append(text)

    def send(self, data: bytes):
        self.sock.sendall(data)

    def cmd(self, command: str) -> tuple[list[str], str]:
        self.send(command.encode() + b"\r\n")
        return self.response()

    def starttls(self, ctx: ssl.SSLContext) -> tuple[list[str], str]:
        lines, final = self.cmd("STARTTLS")
        assert final.startswith("OK"), final
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        return self.response()

    def login(self, user: str, password: str) -> str:
        ir = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f'AUTHENTICATE "PLAIN" "{ir}"')[1]

    def putscript(self, name: str, script: str) -> str:
        data = script.encode()
        self.send(f"PUTSCRIPT {_sieve_string(name)} {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
        return self.response()[1]

    def close(self):
        try:
            self.cmd("LOGOUT")
        except OSError:
            pass
        self.sock.close()
