"""mbsync (Debian's isync) syncing a local Maildir with Hermes over IMAPS: 1,000 messages pushed,
1,000 pulled, flag changes and deletions both ways, with exact counts and flags checked on both sides."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from hermes_testlib import lmtp_send, make_message

N = 1000
MBSYNC = shutil.which("mbsync")


def mbsync_config(h, user, pw, local: Path) -> Path:
    host, port = h.endpoints["imaps"].rsplit(":", 1)
    cfg = local.parent / "mbsyncrc"
    cfg.write_text(
        f"""IMAPAccount hermes
Host {host}
Port {port}
User {user}
Pass {pw}
SSLType IMAPS
CertificateFile {h.data / 'tls' / 'cert.pem'}
PipelineDepth 50

IMAPStore remote
Account hermes

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
Sync All
"""
    )
    return cfg


def run_mbsync(cfg: Path) -> None:
    t0 = time.monotonic()
    r = subprocess.run([MBSYNC, "-c", str(cfg), "-a"], capture_output=True, timeout=600)
    assert r.returncode == 0, (
        f"mbsync exited {r.returncode} after {time.monotonic() - t0:.1f}s\n"
        f"stdout: {r.stdout.decode(errors='replace')[-3000:]}\nstderr: {r.stderr.decode(errors='replace')[-3000:]}"
    )


MARKER = re.compile(rb"^Message-ID: <([^@>]+)@test\.example\.org>", re.M | re.I)

# maildir info letters <-> IMAP flags
MAILDIR_FLAGS = {"S": "\\Seen", "F": "\\Flagged", "R": "\\Answered", "D": "\\Draft"}


def local_state(inbox: Path) -> dict[str, tuple[set[str], Path]]:
    """marker -> (IMAP flags from the file name, path). Fails on a duplicate marker."""
    out = {}
    for sub in ("new", "cur"):
        for p in (inbox / sub).iterdir():
            m = MARKER.search(p.read_bytes())
            assert m, p
            marker = m.group(1).decode()
            assert marker not in out, f"{marker} twice in the local maildir"
            info = p.name.split(":2,", 1)[1] if ":2," in p.name else ""
            out[marker] = ({MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS}, p)
    return out


def server_state(h, user) -> dict[str, tuple[set[str], int]]:
    """marker -> (flags, uid) for every message in the server's INBOX. Fails on a duplicate."""
    c = h.imap(user)
    typ, data = c.select("INBOX", readonly=True)
    out = {}
    if int(data[0]):
        typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK"
        for d in data:
            if not isinstance(d, tuple):
                continue
            meta, hdr = d
            m = MARKER.search(hdr)
            assert m, hdr
            marker = m.group(1).decode()
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split())
            uid = int(re.search(rb"UID (\d+)", meta).group(1))
            assert marker not in out, f"{marker} twice on the server"
            out[marker] = ({f for f in flags if f in MAILDIR_FLAGS.values()}, uid)
    c.logout()
    return out


def flags_of(i: int) -> set[str]:
    f = set()
    if i % 10 == 0:
        f.add("\\Seen")
    if i % 15 == 0:
        f.add("\\Flagged")
    return f


def test_mbsync_two_way_sync_of_1000_messages(hermes_server, fresh_user, tmp_path):
    assert MBSYNC, "mbsync not found: scripts/test.sh installs Debian's isync"
    user, pw = fresh_user("mbsync")
    local = tmp_path / "Mail"
    inbox = local / "INBOX"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    pushed = {}
    host = "testhost"
    for i in range(N):
        marker = f"push-{i:04d}"
        msg = make_message(f"pushed {i}", body=f"local message {i}\r\n" * (1 + i % 7), marker=marker)
        info = "".join(sorted(k for k, v in MAILDIR_FLAGS.items() if v in flags_of(i)))
        if info:
            (inbox / "cur" / f"1700000000.{i}_0.{host}:2,{info}").write_bytes(msg)
        else:
            (inbox / "new" / f"1700000000.{i}_0.{host}").write_bytes(msg)
        pushed[marker] = msg
    cfg = mbsync_config(hermes_server, user, pw, local)

    # 1. push 1,000 local messages to the server, with their flags
    run_mbsync(cfg)
    srv = server_state(hermes_server, user)
    assert len(srv) == N
    assert set(srv) == set(pushed)
    for i in range(N):
        assert srv[f"push-{i:04d}"][0] == flags_of(i), (i, srv[f"push-{i:04d}"])
    # bodies arrive intact (mbsync may add an X-TUID header while uploading)
    c = hermes_server.imap(user)
    c.select("INBOX", readonly=True)
    for marker in ("push-0000", "push-0499", "push-0999"):
        typ, data = c.uid("FETCH", str(srv[marker][1]), "(BODY.PEEK[])")
        stored = re.sub(rb"(?m)^X-TUID: [^\r\n]*\r\n", b"", data[0][1])
        assert stored == pushed[marker], marker
    c.logout()

    # 2. 1,000 messages delivered on the server side are pulled
    lm = hermes_server.lmtp()
    for i in range(N):
        res = lmtp_send(lm, "sender@example.net", [user], make_message(f"pulled {i}", marker=f"pull-{i:04d}"))
        assert res[user][0] == 250, res
    lm.quit()
    run_mbsync(cfg)
    loc = local_state(inbox)
    assert len(loc) == 2 * N
    assert {m for m in loc if m.startswith("pull-")} == {f"pull-{i:04d}" for i in range(N)}
    assert all(loc[f"pull-{i:04d}"][0] == set() for i in range(N))

    # 3. local flag changes reach the server: mark 50 pulled messages seen + flagged
    for i in range(0, 100, 2):
        flags, p = loc[f"pull-{i:04d}"]
        base = p.name.split(":2,", 1)[0]
        p.rename(inbox / "cur" / f"{base}:2,FS")
    run_mbsync(cfg)
    srv = server_state(hermes_server, user)
    for i in range(100):
        want = {"\\Seen", "\\Flagged"} if i % 2 == 0 else set()
        assert srv[f"pull-{i:04d}"][0] == want, (i, srv[f"pull-{i:04d}"])

    # 4. server-side STORE changes local file names
    c = hermes_server.imap(user)
    c.select("INBOX")
    uids = ",".join(str(srv[f"pull-{i:04d}"][1]) for i in range(500, 550))
    assert c.uid("STORE", uids, "+FLAGS.SILENT", r"(\Flagged \Answered)")[0] == "OK"
    uids = ",".join(str(srv[f"push-{i:04d}"][1]) for i in range(0, 100, 10))  # these were \Seen
    assert c.uid("STORE", uids, "-FLAGS.SILENT", r"(\Seen)")[0] == "OK"
    c.logout()
    run_mbsync(cfg)
    loc = local_state(inbox)
    for i in range(500, 550):
        assert loc[f"pull-{i:04d}"][0] == {"\\Flagged", "\\Answered"}, loc[f"pull-{i:04d}"]
    for i in range(0, 100, 10):
        assert loc[f"push-{i:04d}"][0] == flags_of(i) - {"\\Seen"}, (i, loc[f"push-{i:04d}"])
    assert loc["push-0001"][0] == set()

    # 5. deletions propagate both ways
    deleted_locally = [f"push-{i:04d}" for i in range(1, 61, 2)]  # 30
    for m in deleted_locally:
        os.unlink(loc[m][1])
    c = hermes_server.imap(user)
    c.select("INBOX")
    deleted_on_server = [f"pull-{i:04d}" for i in range(900, 920)]  # 20
    uids = ",".join(str(srv[m][1]) for m in deleted_on_server)
    assert c.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
    assert c.expunge()[0] == "OK"
    c.logout()
    run_mbsync(cfg)
    run_mbsync(cfg)  # a second run converges (nothing left to do) and must not resurrect anything
    loc = local_state(inbox)
    srv = server_state(hermes_server, user)
    expected = ({f"push-{i:04d}" for i in range(N)} | {f"pull-{i:04d}" for i in range(N)}) - set(
        deleted_locally) - set(deleted_on_server)
    assert len(expected) == 2 * N - 50
    assert set(loc) == expected
    assert set(srv) == expected
    # and both sides agree on every message's flags
    mismatched = {m: (loc[m][0], srv[m][0]) for m in expected if loc[m][0] != srv[m][0]}
    assert not mismatched, list(mismatched.items())[:10]
