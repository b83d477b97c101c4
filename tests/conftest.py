"""Fixtures for the end-to-end suites: a real `hermes up` on a temporary data folder.

`hermes_server` is shared by the tests of one module (starting a server and hashing passwords
costs time); tests that need an untouched mailbox create their own account with `fresh_user`.
`hermes_factory` starts servers with a test's own config (small limits, TLS-only login...).
Every server is stopped with SIGTERM at teardown and must exit 0.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hermes_testlib import Hermes, hermes_binary  # noqa: E402

DOMAIN = "example.org"
ACCOUNTS = {
    "alice@example.org": "alice-secret-1",
    "bob@example.org": "bob-secret-2",
    "carol@example.org": "carol-secret-3",
}

_counter = itertools.count(1)


def pytest_configure(config):
    b = hermes_binary()
    if not b.exists():
        raise pytest.UsageError(f"{b} does not exist: build it first (cargo build -p hermes), or set HERMES_BIN")


class ServerFactory:
    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory
        self.servers: list[Hermes] = []

    def __call__(self, config: dict | None = None, accounts: dict | None = None, start: bool = True) -> Hermes:
        # Short base path: the LMTP unix socket path must fit in sun_path (108 bytes).
        data = self.tmp.mktemp("h", numbered=True)
        h = Hermes(data, config)
        self.servers.append(h)
        h.add_domain(DOMAIN)
        for a, p in (ACCOUNTS if accounts is None else accounts).items():
            h.add_account(a, p)
        if start:
            h.start()
        return h

    def teardown(self):
        problems = []
        for h in self.servers:
            if h.running:
                rc = h.stop()
                if rc != 0:
                    problems.append(f"{h.data}: hermes up exited {rc} after SIGTERM\n{h.log_tail()}")
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def hermes_factory_module(tmp_path_factory):
    f = ServerFactory(tmp_path_factory)
    yield f
    f.teardown()


@pytest.fixture
def hermes_factory(tmp_path_factory):
    """Starts servers with a test's own config; each is SIGTERMed at teardown and must exit 0."""
    f = ServerFactory(tmp_path_factory)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def hermes_server(hermes_factory_module) -> Hermes:
    """A running Hermes with domain example.org and alice, bob, carol (see ACCOUNTS)."""
    return hermes_factory_module()


@pytest.fixture
def fresh_user(hermes_server):
    """Creates a new account on the module's server: returns (address, password)."""

    def make(prefix: str = "u") -> tuple[str, str]:
        n = next(_counter)
        address = f"{prefix}{os.getpid()}x{n}@{DOMAIN}"
        pw = f"pw-{n}-secret"
        hermes_server.add_account(address, pw)
        return address, pw

    return make
