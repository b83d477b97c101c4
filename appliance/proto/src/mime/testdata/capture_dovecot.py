#!/usr/bin/env python3
"""Records Dovecot's answers for every fixture, as the oracle the mime tests compare against.

Usage: capture_dovecot.py  (needs Debian's dovecot-imapd; runs /usr/lib/dovecot/imap in preauth
mode as `nobody` on a throw-away Maildir under /tmp/dv). Writes `<fixture>.dovecot`: records of
`ITEM\\n<length>\\n<bytes>\\n`, where ITEM is the FETCH item name as Dovecot answered it and bytes is
the value exactly as sent (structures as IMAP text, sections as literal content), `ITEM\\nNO\\n`
when Dovecot refused the command (BINARY of an unknown encoding).
Recorded with Dovecot 2.3.19.1 (Debian 12).
"""
import glob, os, re, shutil, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = '/tmp/dv'
CONF = f"""protocols = imap
ssl = no
base_dir = {ROOT}/run
mail_location = maildir:{ROOT}/home/Maildir
log_path = {ROOT}/log
mail_uid = 65534
mail_gid = 65534
first_valid_uid = 0
first_valid_gid = 0
"""

ITEMS = ['ENVELOPE', 'BODY', 'BODYSTRUCTURE']
SECTIONS = ['', 'HEADER', 'TEXT', '1', '1.MIME', '1.HEADER', '1.TEXT', '2', '2.MIME', '2.HEADER',
            '2.TEXT', '2.1', '2.1.MIME', '2.2', '2.2.MIME', '2.1.1', '3', '3.MIME', '3.1', '3.HEADER',
            '3.TEXT', '4', '4.MIME', '4.1', '5', '5.MIME', '6', '6.MIME', '7', '7.MIME', '9',
            'HEADER.FIELDS (From Subject)', 'HEADER.FIELDS.NOT (From Subject)',
            'HEADER.FIELDS (X-Absent)', '2.HEADER.FIELDS (Subject Date)',
            '2.HEADER.FIELDS.NOT (Subject)']
BINARY = ['1', '2', '3', '4', '5', '6', '2.1', '2.2', '9']


def parse_value(b, i):
    """Returns (end index, raw bytes of the value as sent, literal content or None)."""
    start = i
    c = b[i:i + 1]
    if c == b'(':
        depth = 0
        while i < len(b):
            ch = b[i:i + 1]
            if ch == b'"':
                i += 1
                while b[i:i + 1] != b'"':
                    i += 2 if b[i:i + 1] == b'\\' else 1
            elif ch in (b'{', b'~') and re.match(rb'~?\{\d+\}\r\n', b[i:]):
                m = re.match(rb'~?\{(\d+)\}\r\n', b[i:])
                i += m.end() + int(m.group(1))
                continue
            elif ch == b'(':
                depth += 1
            elif ch == b')':
                depth -= 1
                if depth == 0:
                    return i + 1, b[start:i + 1], None
            i += 1
        raise ValueError('unterminated list')
    m = re.match(rb'~?\{(\d+)\}\r\n', b[i:])
    if m:
        n = int(m.group(1))
        end = i + m.end() + n
        return end, b[start:end], b[i + m.end():end]
    if c == b'"':
        i += 1
        out = bytearray()
        while b[i:i + 1] != b'"':
            if b[i:i + 1] == b'\\':
                i += 1
            out += b[i:i + 1]
            i += 1
        return i + 1, b[start:i + 1], bytes(out)
    m = re.match(rb'[^ ()\r\n]+', b[i:])
    return i + m.end(), m.group(0), None


def fetch_items(resp):
    """FETCH response items: [(name, raw value, content)]."""
    out = []
    for m in re.finditer(rb'\* 1 FETCH \(', resp):
        i = m.end()
        while resp[i:i + 1] != b')':
            nm = re.match(rb'[A-Z0-9.]+(\[[^\]]*\](<\d+>)?)?', resp[i:])
            name = nm.group(0)
            i += nm.end() + 1
            i, raw, content = parse_value(resp, i)
            out.append((name.decode(), raw, content))
            if resp[i:i + 1] == b' ':
                i += 1
    return out


def run(eml):
    shutil.rmtree(f'{ROOT}/home', ignore_errors=True)
    for d in ('cur', 'new', 'tmp'):
        os.makedirs(f'{ROOT}/home/Maildir/{d}')
    os.makedirs(f'{ROOT}/run', exist_ok=True)
    with open(f'{ROOT}/dovecot.conf', 'w') as f:
        f.write(CONF)
    shutil.copy(eml, f'{ROOT}/home/Maildir/cur/1.eml:2,S')
    subprocess.run(['chown', '-R', '65534:65534', ROOT], check=True)
    cmds = [b'a0 SELECT INBOX']
    cmds.append(b'f0 FETCH 1 (' + ' '.join(ITEMS).encode() + b')')
    for n, s in enumerate(SECTIONS):
        cmds.append(f'b{n} FETCH 1 (BODY.PEEK[{s}])'.encode())
    for n, s in enumerate(BINARY):
        cmds.append(f'y{n} FETCH 1 (BINARY.PEEK[{s}] BINARY.SIZE[{s}])'.encode())
    cmds.append(b'z LOGOUT')
    inp = b''.join(c + b'\r\n' for c in cmds)
    p = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'env',
                        'USER=nobody', f'HOME={ROOT}/home', '/usr/lib/dovecot/imap', '-c',
                        f'{ROOT}/dovecot.conf'], input=inp, capture_output=True, timeout=30)
    resp = p.stdout
    # Dovecot runs pipelined FETCHes concurrently, so replies are matched by item name, and a
    # refused BINARY by its tag.
    records = []
    for name, raw, content in fetch_items(resp):
        if name.startswith('BODY[') or name.startswith('BINARY['):
            records.append((name, content if content is not None else b''))
        else:
            records.append((name, raw))
    for c in cmds[1:-1]:
        tag = c.split(b' ')[0]
        if not tag.startswith(b'y'):
            continue
        spec = c.decode().split('[')[1].split(']')[0]
        answered = any(name == f'BINARY[{spec}]' for name, _ in records)
        if not answered and re.search(rb'(^|\r\n)' + tag + rb' NO', resp):
            records.append((f'BINARY[{spec}]', None))
    return records


def main():
    for eml in sorted(glob.glob(os.path.join(HERE, '*.eml'))):
        records = run(eml)
        out = bytearray()
        for name, value in records:
            out += name.encode() + b'\n'
            if value is None:
                out += b'NO\n'
            else:
                out += str(len(value)).encode() + b'\n' + value + b'\n'
        with open(eml[:-4] + '.dovecot', 'wb') as f:
            f.write(out)
        print(os.path.basename(eml), len(records), 'records')


if __name__ == '__main__':
    sys.exit(main())
