"""kill -9 durability: 500 concurrent APPENDs (50 connections x 10) and LMTP deliveries, the store
(or the whole process group) killed mid-run, Hermes started again, then every acknowledged message
must be present byte for byte, at the UID APPENDUID announced, and no message may appear twice."""

from __future__ import annotations

import imaplib
import json
import os
import random
import re
import signal
import smtplib
import threading
import time

from hermes_testlib import lmtp_send, make_message, split_trace_headers, wait_for

USERS = {f"dur{i}@example.org": f"dur-pass-{i}" for i in range(5)}
IMAP_CONNECTIONS = 50
APPENDS_PER_CONNECTION = 10
LMTP_CONNECTIONS = 5
LMTP_PER_CONNECTION = 40
KILL_AFTER_ACKS = 120
DEADLINE = 180  # seconds for the whole workload, restart included

CONFIG = {
    "limits": {
        "max_sessions_per_user": 1000,
        "max_connections_per_ip": 5000,
        "auth_fail_delay_ms": 100,
        "max_auth_fail_delay_ms": 200,
    }
}

MARKER = re.compile(rb"^Message-ID: <([^@>]+)@test\.example\.org>", re.M)


def body_of(i: int, rnd: random.Random) -> str:
    lines = rnd.randint(20, 400)
    return "".join(f"{j:05d} {rnd.getrandbits(160):040x}\r\n" for j in range(lines))


class Workload:
    """Runs the APPEND and LMTP writers; records what the server acknowledged."""

    def __init__(self, h):
        self.h = h
        self.lock = threading.Lock()
        self.acked_append: dict[str, tuple[str, bytes, int]] = {}  # marker -> (user, bytes, uid)
        self.acked_lmtp: dict[str, tuple[str, bytes]] = {}
        self.attempted: set[str] = set()
        self.errors = 0
        self.deadline = time.monotonic() + DEADLINE
        self.acks = threading.Semaphore(0)

    def endpoints(self) -> dict:
        try:
            return json.loads((self.h.data / "run" / "endpoints.json").read_text())
        except (OSError, json.JSONDecodeError):
            return self.h.endpoints

    def _imap(self, user):
        host, port = self.endpoints()["imap"].rsplit(":", 1)
        c = imaplib.IMAP4(host, int(port), timeout=30)
        c.login(user, USERS[user])
        return c

    def appender(self, n: int):
        rnd = random.Random(n)
        user = list(USERS)[n % len(USERS)]
        c = None
        done = 0
        while done < APPENDS_PER_CONNECTION and time.monotonic() < self.deadline:
            marker = f"ap-{n:02d}-{done:02d}-{rnd.getrandbits(32):08x}"
            msg = make_message(f"append {n}/{done}", body=body_of(done, rnd), marker=marker)
            try:
                if c is None:
                    c = self._imap(user)
                with self.lock:
                    self.attempted.add(marker)
                typ, data = c.append("INBOX", None, None, msg)
                if typ != "OK":
                    raise imaplib.IMAP4.error(f"APPEND {typ} {data}")
                m = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[0])
                assert m, data
                with self.lock:
                    self.acked_append[marker] = (user, msg, int(m.group(1)))
                self.acks.release()
                done += 1
            except (OSError, EOFError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
                # the store died under us: this message is unacknowledged; retry with a new one
                with self.lock:
                    self.errors += 1
                c = None
                time.sleep(0.2)
        if c is not None:
            try:
                c.logout()
            except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
                pass

    def deliverer(self, n: int):
        rnd = random.Random(1000 + n)
        users = list(USERS)
        c = None
        done = 0
        while done < LMTP_PER_CONNECTION and time.monotonic() < self.deadline:
            user = users[(n + done) % len(users)]
            marker = f"lm-{n:02d}-{done:02d}-{rnd.getrandbits(32):08x}"
            msg = make_message(f"lmtp {n}/{done}", body=body_of(done, rnd), marker=marker)
            try:
                if c is None:
                    ep = self.endpoints()
                    host, port = ep["lmtp"].rsplit(":", 1)
                    c = smtplib.LMTP(host, int(port), timeout=30)
                with self.lock:
                    self.attempted.add(marker)
                res = lmtp_send(c, "sender@example.net", [user], msg)
                if res[user][0] != 250:
                    raise smtplib.SMTPException(res)
                with self.lock:
                    self.acked_lmtp[marker] = (user, msg)
                self.acks.release()
                done += 1
            except (OSError, AssertionError, smtplib.SMTPException):
                with self.lock:
                    self.errors += 1
                c = None
                time.sleep(0.2)
        if c is not None:
            try:
                c.quit()
            except (OSError, smtplib.SMTPException):
                pass

    def run(self, kill, stop_after_kill: bool = False):
        threads = [threading.Thread(target=self.appender, args=(i,)) for i in range(IMAP_CONNECTIONS)]
        threads += [threading.Thread(target=self.deliverer, args=(i,)) for i in range(LMTP_CONNECTIONS)]
        for t in threads:
            t.start()
        for _ in range(KILL_AFTER_ACKS):
            assert self.acks.acquire(timeout=120), "the workload stalled before the kill"
        with self.lock:
            at_kill = len(self.acked_append) + len(self.acked_lmtp)
        kill()
        if stop_after_kill:
            self.deadline = time.monotonic()  # nobody restarts the server: writers stop retrying
        for t in threads:
            t.join(DEADLINE + 60)
        return at_kill


def mailbox_contents(h, user) -> tuple[int, dict[str, list[tuple[int, bytes]]]]:
    """(UIDVALIDITY, marker -> [(uid, stored bytes)]) of user's INBOX."""
    c = h.imap(user, USERS[user])
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK"
    uidvalidity = int(re.search(rb"\d+", c.response("UIDVALIDITY")[1][0]).group(0))
    out: dict[str, list[tuple[int, bytes]]] = {}
    if int(data[0]):
        typ, data = c.fetch("1:*", "(UID BODY.PEEK[])")
        assert typ == "OK"
        for d in data:
            if isinstance(d, tuple):
                uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
                m = MARKER.search(d[1])
                assert m, d[1][:500]
                out.setdefault(m.group(1).decode(), []).append((uid, d[1]))
    c.logout()
    return uidvalidity, out


def verify(h, w: Workload, uidvalidity_before: dict[str, int]):
    found: dict[str, list[tuple[str, int, bytes]]] = {}
    for user in USERS:
        uv, contents = mailbox_contents(h, user)
        assert uv == uidvalidity_before[user], f"UIDVALIDITY of {user} changed across the crash"
        uids = [u for items in contents.values() for u, _ in items]
        assert len(uids) == len(set(uids)), f"duplicate UIDs in {user}'s INBOX"
        for marker, items in contents.items():
            found.setdefault(marker, []).extend((user, uid, b) for uid, b in items)

    twice = {m: len(v) for m, v in found.items() if len(v) > 1}
    assert not twice, f"messages stored more than once: {twice}"
    unknown = set(found) - w.attempted
    assert not unknown, f"messages nobody sent: {sorted(unknown)[:10]}"

    lost, damaged = [], []
    for marker, (user, msg, uid) in w.acked_append.items():
        got = found.get(marker)
        if not got:
            lost.append(marker)
            continue
        (u, stored_uid, stored) = got[0]
        if u != user or stored != msg or stored_uid != uid:
            damaged.append((marker, u, stored_uid, uid, len(stored), len(msg)))
    for marker, (user, msg) in w.acked_lmtp.items():
        got = found.get(marker)
        if not got:
            lost.append(marker)
            continue
        (u, _, stored) = got[0]
        trace, original = split_trace_headers(stored)
        if u != user or original != msg or not trace:
            damaged.append((marker, u, len(stored), len(msg)))
    assert not lost, f"{len(lost)} acknowledged messages lost: {lost[:10]}"
    assert not damaged, f"{len(damaged)} acknowledged messages damaged: {damaged[:10]}"

    # new mail after the crash gets a UID above everything already there
    user = next(iter(USERS))
    highest = max((uid for items in mailbox_contents(h, user)[1].values() for uid, _ in items), default=0)
    c = h.imap(user, USERS[user])
    typ, data = c.append("INBOX", None, None, make_message("after the crash", marker="after-crash"))
    c.logout()
    new_uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    assert new_uid > highest, f"UID {new_uid} handed out again after the crash (highest {highest})"


def start_server(hermes_factory):
    h = hermes_factory(config=CONFIG, accounts=USERS)
    before = {}
    for user in USERS:
        before[user] = mailbox_contents(h, user)[0]
    return h, before


def test_store_killed_mid_run_loses_nothing_acknowledged(hermes_factory):
    h, uidvalidity = start_server(hermes_factory)
    w = Workload(h)
    old_pid = h.store_pid()
    at_kill = w.run(lambda: os.kill(old_pid, signal.SIGKILL))
    # the supervisor restarted the store and the writers finished against it
    new_pid = wait_for(lambda: (p := h.service_pids().get("store")) and p != old_pid and p, 15,
                       what="the store to be restarted")
    assert new_pid != old_pid
    assert h.running
    total = len(w.acked_append) + len(w.acked_lmtp)
    assert total > at_kill, "nothing was acknowledged after the restart"
    assert len(w.acked_append) == IMAP_CONNECTIONS * APPENDS_PER_CONNECTION, (
        f"only {len(w.acked_append)} APPENDs acknowledged before the deadline ({w.errors} errors)")
    print(f"store kill: {at_kill} acked before the kill, {len(w.acked_append)} APPENDs and "
          f"{len(w.acked_lmtp)} deliveries acked in all, {w.errors} failed attempts")
    # and a full restart of hermes up keeps it all
    assert h.stop() == 0
    h.start()
    verify(h, w, uidvalidity)


def test_whole_process_group_killed_mid_run_loses_nothing_acknowledged(hermes_factory):
    h, uidvalidity = start_server(hermes_factory)
    w = Workload(h)
    at_kill = w.run(h.kill_group, stop_after_kill=True)
    assert at_kill >= KILL_AFTER_ACKS
    assert not h.running
    print(f"group kill: {at_kill} acked before the kill, {len(w.acked_append)} APPENDs and "
          f"{len(w.acked_lmtp)} deliveries acked in all, {len(w.attempted)} attempted, {w.errors} failed attempts")
    h.start()  # `hermes up` again on the same data
    verify(h, w, uidvalidity)
