"""kill -9 of the router under load: every acknowledged (250) message is delivered.

Four client threads send 160 messages to the MX port while the router process is SIGKILLed
twice; the supervisor restarts it. Afterwards every message that got a 250 must be in the
recipient's INBOX, exactly once: a crash between the store's LMTP 250 and the router's
status-log write redelivers, and the store drops the copy by its XDEDUP token (the queue id,
docs/router.md). Only a client's own resend (a 250 lost with the connection) may duplicate.
"""

from __future__ import annotations

import os
import signal
import socket
import smtplib
import threading
import time

from hermes_testlib import wait_for
from router_fixtures import *  # noqa: F401,F403
from router_fixtures import ALICE, inbox, smtp, unique

MESSAGES = 160
THREADS = 4
KILLS = 2


def test_kill9_router_under_load_loses_nothing(hermes_factory):
    # A fixed port, as in production: a restarted router listens where clients expect it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    h = hermes_factory({"router": {"smtp_port": port}})
    run = unique("crash")
    acked: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []
    last_error: dict[int, str] = {}
    # Messages the client had to send again: if the lost reply was a 250, the copy is the
    # client's own duplicate (RFC 1047), not the router's.
    retried: set[int] = set()

    def sender(k: int):
        c = None
        for i in range(k, MESSAGES, THREADS):
            msg = f"Subject: {run}-{i}\r\nX-Seq: {i}\r\n\r\nmessage {i}\r\n".encode()
            for _attempt in range(200):
                try:
                    if c is None:
                        c = smtp(h, timeout=20)
                    c.sendmail("load@remote.example", [ALICE], msg)
                    with lock:
                        acked.add(i)
                    break
                except (smtplib.SMTPException, OSError) as e:
                    last_error[k] = repr(e)
                    with lock:
                        retried.add(i)
                    try:
                        if c is not None:
                            c.close()
                    except OSError:
                        pass
                    c = None
                    time.sleep(0.1)
            else:
                errors.append(f"message {i} never acknowledged")
        if c is not None:
            try:
                c.quit()
            except (smtplib.SMTPException, OSError):
                pass

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for n in range(KILLS):
        try:
            wait_for(lambda: len(acked) >= (n + 1) * MESSAGES // (KILLS + 1), 120, what="progress before kill")
        except AssertionError:
            raise AssertionError(f"{len(acked)} acknowledged; last errors {last_error}\n{h.log_tail()}")
        pid = h.service_pids()["router"]
        os.kill(pid, signal.SIGKILL)
        # Wait for the supervisor to bring a new router up before the next kill.
        wait_for(lambda: h.service_pids().get("router") not in (None, pid), 60, what="router restarted")
    for t in threads:
        t.join(300)
    assert not errors, errors

    def counts():
        c: dict[int, int] = {}
        for m in inbox(h, ALICE):
            for line in m.split(b"\r\n"):
                if line.startswith(f"Subject: {run}-".encode()):
                    i = int(line.rsplit(b"-", 1)[1])
                    c[i] = c.get(i, 0) + 1
        return c

    seen = wait_for(lambda: (lambda c: c if set(acked) <= set(c) else None)(counts()), 180, interval=1,
                    what="every acknowledged message delivered")
    missing = sorted(set(acked) - set(seen))
    assert not missing, f"acknowledged but lost: {missing}"
    duplicates = {i: n for i, n in seen.items() if n > 1 and i not in retried}
    # Redeliveries after a kill carry the same XDEDUP token: the store keeps one copy.
    print(f"acked {len(acked)}, client retries {len(retried)}, router duplicates {duplicates}")
    assert not duplicates, f"duplicates after kill -9 (XDEDUP should prevent them): {duplicates}"
    # A client's own resend is a new message (new queue id): at most two copies.
    assert all(n <= 2 for n in seen.values()), seen
    # The queue drains.
    wait_for(lambda: "queue is empty" in h.cli("queue", "list").stdout.decode(), 60, what="empty queue")
