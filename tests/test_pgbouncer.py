"""The app behind PgBouncer in transaction pooling mode, as docs/scaling.md ("Connection pooling")
tells an operator to run it: Debian's pgbouncer (1.18), ``DATABASE_TRANSACTION_POOLING=true``.

Two gunicorn processes (16 worker threads, each with its own client connection) reach the
database through a pool of 2 server connections, so every transaction may run on a server
session another client used before: 32 HTTP clients issue single, bulk, coupon, limited and
vendor rewards and replay requestIds (tests/test_stress.py's world and load). Afterwards the
invariants of the stress test hold, the list answers, ``manage.py check_ledger`` passes through
the pool, and PgBouncer's own counters show the multiplexing happened.

What the switch turns off, and what shows it is needed:
- the ``jit=off`` startup option: without the switch the app cannot connect at all (PgBouncer
  refuses startup options), the second test;
- prepared statements: with them on behind this PgBouncer, the first test fails at once (a
  statement prepared on one server session is executed on another: 500), tried by hand
  (docs/scaling.md); PgBouncer 1.21+ can track them;
- server-side cursors (``QuerySet.iterator``): with them on, a chunked walk while another client
  holds a transaction through the pool fails (the FETCH lands on a session without the cursor),
  the fourth test; with the switch the same walk reads every row.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import environ
import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections

from catalogue.models import Customer
from issuance.fake_vendor import FakeVendor
from issuance.models import IssuedUnit
from tests.test_stress import (
    CLIENTS,
    EXPECTED,
    POSTGRES_ONLY,
    SINGLE,
    AppServers,
    answered_ids,
    build_world,
    drive,
    drive_through_outage,
    request,
    free_port,
    world_problems,
)

ROOT = Path(settings.BASE_DIR)
PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
pytestmark = [
    pytest.mark.slow,
    POSTGRES_ONLY,
    pytest.mark.skipif(PGBOUNCER is None, reason="needs Debian's pgbouncer (make test installs it)"),
]
SERVER_CONNECTIONS = 2
parse_url = environ.Env.db_url_config
POOLING = {"DATABASE_TRANSACTION_POOLING": "true"}


class PgBouncer:
    """A PgBouncer of this test's own in front of the suite's PostgreSQL: transaction pooling,
    ``SERVER_CONNECTIONS`` server connections per database and user, on a loopback port. As
    root it runs as the ``postgres`` user (like the cluster: it refuses to run as root)."""

    def __init__(self, url: str | None = None, databases: dict[str, str] | None = None):
        """In front of the suite's database, or of ``url``'s server; ``databases`` maps more
        names to servers (PgBouncer's ``[databases]`` lines, e.g. a replica's host and port)."""
        db = connection.settings_dict if url is None else parse_url(url)
        self.user, self.database = db["USER"], db["NAME"]
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rewards-pgbouncer-"))
        (self.dir / "userlist.txt").write_text(f'"{self.user}" "{db["PASSWORD"] or ""}"\n')
        lines = [f"{name} = {target}" for name, target in (databases or {}).items()]
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            + "".join(f"{line}\n" for line in lines)
            + f"* = host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\n"
            f"admin_users = {self.user}\n"
            f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\nmin_pool_size = 0\n"
            "reserve_pool_size = 0\nmax_client_conn = 500\nserver_reset_query =\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        self.as_owner = []
        if os.geteuid() == 0:
            owner = os.environ.get("PG_TEST_OS_USER", "postgres")
            shutil.chown(self.dir, owner)
            for path in self.dir.iterdir():
                shutil.chown(path, owner)
            self.as_owner = ["runuser", "-u", owner, "--"]
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([*self.as_owner, PGBOUNCER, str(self.dir / "pgbouncer.ini")], cwd="/",
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"pgbouncer exited: {self.log()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"pgbouncer did not start: {self.log()}"
                time.sleep(0.1)

    def url(self, database: str | None = None) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    def show(self, what: str) -> list[dict]:
        """A SHOW of PgBouncer's admin console, as dicts."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None) as admin:
            cursor = admin.cursor()
            cursor.execute(f"SHOW {what}")
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGTERM: PgBouncer's immediate shutdown, every client and server connection dropped."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pgbouncer():
    bouncer = PgBouncer()
    yield bouncer
    bouncer.stop()


def manage(url: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test",
                               **env})


@pytest.mark.django_db(transaction=True)
def test_two_app_servers_through_a_transaction_pool_of_two_keep_every_invariant(pgbouncer):
    vendor = FakeVendor(slow_seconds=0.2).start()
    try:
        world = build_world(vendor.base_url)
        connections.close_all()
        with AppServers(pgbouncer.url(), extra_env=POOLING) as servers:
            calls = drive(servers.ports, world, calls=8)
            # The list, through the pool too (its first call per header authenticates the
            # usual way, the next ones re-check the kept principal inside the list's statement).
            customer = Customer.objects.get(mobile=world["hot"][0]).pk
            lists = [request(servers.ports[i % 2], "GET",
                             f"/api_gateway/rewards/core/v1/user/reward/brand/BUKL?userId={customer}", None)
                     for i in range(4)]
            server_log = servers.errors()
        pools = pgbouncer.show("POOLS")
        stats = pgbouncer.show("STATS")
    finally:
        vendor.stop()

    statuses = Counter((c.status, c.code) for c in calls)
    assert len(calls) == CLIENTS * 8
    assert all(c.status in EXPECTED for c in calls), (statuses, [c for c in calls if c.status not in EXPECTED][:5],
                                                      server_log, pgbouncer.log())
    assert statuses[(200, 200)] > len(calls) / 4, statuses
    assert any(c.status == 200 and c.path.startswith(SINGLE.format(world["vendor"])) for c in calls)
    assert len({c.port for c in calls if c.status == 200}) == 2
    assert [status for status, _ in lists] == [200] * 4, lists[0]
    assert len({str(body) for _, body in lists}) == 1 and lists[0][1]["rewardList"], lists[0]
    assert world_problems(world, answered_ids(calls)) == []
    assert len(IssuedUnit.objects.filter(line__reward_id=world["vendor"])) > 0

    # The pooling really happened: 16 app threads (and their connections) over 2 server sessions.
    ours = [p for p in pools if p["database"] == pgbouncer.database]
    assert ours and all(p["sv_active"] + p["sv_idle"] + p["sv_used"] + p["sv_tested"] + p["sv_login"]
                        <= SERVER_CONNECTIONS for p in ours), pools
    xacts = sum(s["total_xact_count"] for s in stats if s["database"] == pgbouncer.database)
    assert xacts > len(calls), (xacts, stats)

    # check_ledger walks every account with QuerySet.iterator: no server-side cursor behind the pool.
    checked = manage(pgbouncer.url(), "check_ledger", env=POOLING)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.django_db(transaction=True)
def test_without_the_switch_pgbouncer_refuses_the_apps_startup_option(pgbouncer):
    refused = manage(pgbouncer.url(), "check_ledger", env={"DATABASE_TRANSACTION_POOLING": "false"})
    assert refused.returncode != 0
    assert "unsupported startup parameter: options" in refused.stdout + refused.stderr
    # With it the same command connects and passes.
    assert manage(pgbouncer.url(), "check_ledger", env=POOLING).returncode == 0


def test_the_switch_turns_off_what_transaction_pooling_breaks(monkeypatch):
    from rewards_site.settings.base import _database_from_env

    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@127.0.0.1:6432/db")
    for name in ("DATABASE_PREPARED_STATEMENTS", "DATABASE_JIT_OFF_OPTION"):
        monkeypatch.delenv(name, raising=False)
    import rewards_site.settings.base as base

    monkeypatch.setattr(base, "TRANSACTION_POOLING", False)
    plain = _database_from_env()
    assert plain["OPTIONS"] == {"options": "-c jit=off", "prepare_threshold": 5}
    assert not plain.get("DISABLE_SERVER_SIDE_CURSORS")

    monkeypatch.setattr(base, "TRANSACTION_POOLING", True)
    pooled = _database_from_env()
    assert pooled.get("OPTIONS", {}) == {} and pooled["DISABLE_SERVER_SIDE_CURSORS"] is True
    # PgBouncer 1.21+ tracks protocol-level prepared statements: they may be turned back on.
    monkeypatch.setenv("DATABASE_PREPARED_STATEMENTS", "true")
    assert _database_from_env()["OPTIONS"] == {"prepare_threshold": 5}


@pytest.mark.django_db(transaction=True)
def test_pgbouncer_restart_mid_run_answers_503_recovers_and_loses_nothing(pgbouncer):
    """PgBouncer killed (every connection dropped, transactions cut mid-way) and started again
    on the same port while 32 clients issue: as with PostgreSQL restarted (tests/test_stress.py),
    the app answers 503 meanwhile, recovers by itself, and a retry of each refused call
    (same requestIds) loses nothing and issues nothing twice."""
    world = build_world()
    connections.close_all()
    with AppServers(pgbouncer.url(), extra_env=POOLING) as servers:
        calls, retries = drive_through_outage(servers, world, "PgBouncer", stop=pgbouncer.kill, start=pgbouncer.start,
                                              wait=1.5, run_for=7)
    assert world_problems(world, answered_ids(calls + retries)) == []


# A QuerySet.iterator() walked in chunks while another client runs a transaction through the
# same pool. In autocommit Django declares its server-side cursor WITH HOLD and PgBouncer hands
# the session back to the pool once the DECLARE's transaction ends; the other client then gets
# that session (PgBouncer reuses the most recently used one), and the next FETCH goes to another.
ITERATE_ACROSS_TRANSACTIONS = """
import psycopg
from issuance.models import PointsAccount
from django.db import connection
rows = PointsAccount.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=1)
seen = [next(rows)]
with psycopg.connect({url!r}, autocommit=True, prepare_threshold=None) as other, other.transaction():
    other.execute("SELECT 1")
    seen += list(rows)
print("walked", len(seen), "server-side cursors", not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"))
"""


@pytest.mark.django_db(transaction=True)
def test_server_side_cursors_break_behind_the_pool_and_the_switch_turns_them_off(pgbouncer):
    from tests import factories as f

    for _ in range(3):
        f.PointsAccountFactory()
    connections.close_all()
    script = ITERATE_ACROSS_TRANSACTIONS.format(url=pgbouncer.url())

    # Everything else PgBouncer needs, but server-side cursors left on: the FETCH reaches a
    # session where the cursor does not exist.
    cursors_on = {"DATABASE_TRANSACTION_POOLING": "false", "DATABASE_JIT_OFF_OPTION": "false",
                  "DATABASE_PREPARED_STATEMENTS": "false"}
    broken = manage(pgbouncer.url(), "shell", "-c", script, env=cursors_on)
    assert broken.returncode != 0, broken.stdout
    assert re.search(r'InvalidCursorName: cursor "_django_curs_\w+" does not exist', broken.stderr), broken.stderr[-2000:]

    # With the switch the iterator reads client-side: the same walk sees every account.
    walked = manage(pgbouncer.url(), "shell", "-c", script, env=POOLING)
    assert walked.returncode == 0, walked.stderr[-2000:]
    assert walked.stdout.splitlines()[-1] == "walked 3 server-side cursors False", walked.stdout
