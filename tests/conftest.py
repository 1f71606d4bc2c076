"""Fixtures: start real oxgate processes and always stop them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from processes import reap
from support import APPS_DIR, EXAMPLES_DIR, OxgateProcess, base_env, manage

# Test modules import facts from the apps (e.g. the list of bad responses).
sys.path.insert(0, str(APPS_DIR))


def pytest_report_header(config):
    try:
        import oxgate

        where = os.path.dirname(oxgate.__file__)
    except ImportError as e:  # the suite will fail loudly anyway; say why up front
        where = f"NOT IMPORTABLE ({e})"
    return f"oxgate under test: {where}"


@pytest.fixture
def h2_pki(tmp_path: Path):
    """Certificates for the HTTP/2 tests over TLS (tests/h2_support.py)."""
    from h2_support import make_pki

    return make_pki(tmp_path)


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    """Where the test apps record what happened to them (close() calls, ...)."""
    return tmp_path / "events.log"


@pytest.fixture
def oxgate(events_file: Path):
    """Factory: `oxgate("app_module", "--threads", "2", env={...})` starts a server.

    It binds 127.0.0.1:0 unless the args name a bind (or `bind=False`), waits for the
    `Listening at:` line, and is stopped at teardown whatever the test did.
    """
    started: list[OxgateProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        ready: object = "stderr",
        bind: bool = True,
        pythonpath: bool = True,
    ) -> OxgateProcess:
        argv = list(args)
        has_bind = any(a in ("-b", "--bind") or a.startswith("--bind=") for a in argv)
        if bind and not has_bind:
            argv = ["--bind", "127.0.0.1:0", *argv]
        if env is None:
            env = base_env({"OXGATE_TEST_EVENTS": str(events_file)}, pythonpath=pythonpath)
        if extra_env:
            env = {**env, **extra_env}
        server = OxgateProcess(argv, env=env, cwd=cwd, ready=ready)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def master(oxgate):
    """Like `oxgate`, and leaves no worker behind at teardown."""
    started: list[OxgateProcess] = []

    def start(*args: str, **kwargs) -> OxgateProcess:
        server = oxgate(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        reap(server)


@pytest.fixture(scope="session")
def django_site(tmp_path_factory) -> Path:
    """A private copy of examples/django_site with its SQLite database migrated."""
    site = tmp_path_factory.mktemp("django") / "django_site"
    shutil.copytree(
        EXAMPLES_DIR / "django_site",
        site,
        ignore=shutil.ignore_patterns("db.sqlite3", "__pycache__", "staticfiles"),
    )
    manage(site, "migrate", "--noinput")
    return site
