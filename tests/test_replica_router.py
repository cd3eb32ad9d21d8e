"""List reads from a real streaming replica (rewards_site/db_router.py, docs/scaling.md).

The test runs a primary of its own (scripts/pg_test_cluster.sh, switched to wal_level=replica)
and a hot standby made with ``pg_basebackup -R`` on a second local port, and drives the app in
a child process configured as in production: DATABASE_URL on the primary, DATABASE_REPLICA_URL
on the standby. With WAL replay paused on the standby, a reward created on the primary is
missing from the list (the list reads the standby) while the issue call finds and issues it
(everything else reads and writes the primary); once replay resumes, the list shows it.
It runs twice on the same two servers: directly, and with both behind one PgBouncer in
transaction pooling mode (tests/test_pgbouncer.py's), as docs/scaling.md has an operator run it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.db import connection

from rewards_site.db_router import ReplicaRouter
from tests.test_pgbouncer import PGBOUNCER, POOLING, PgBouncer, parse_url
from tests.test_stress import ROOT, ThrowawayCluster, free_port

PG_BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
OS_USER = os.environ.get("PG_TEST_OS_USER", "postgres")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
    pytest.mark.skipif(not os.path.exists(f"{PG_BINDIR}/pg_basebackup"), reason="needs the PostgreSQL server binaries"),
]


def test_router_never_writes_or_migrates_on_the_replica():
    router = ReplicaRouter()
    assert router.db_for_write(object) == "default"
    assert router.allow_migrate("replica", "catalogue") is False
    assert router.allow_migrate("default", "catalogue") is True


def as_owner(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool as the clusters' OS user (PostgreSQL refuses to run as root)."""
    prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], cwd="/", check=check, capture_output=True, text=True, timeout=120)


class Standby:
    """A hot standby of ``primary`` (pg_basebackup -R) on another port."""

    def __init__(self, primary: ThrowawayCluster):
        self.dir = Path(tempfile.mkdtemp(prefix="rewards-pgreplica."))
        if os.geteuid() == 0:
            shutil.chown(self.dir, OS_USER)
        self.data = self.dir / "data"
        as_owner(f"{PG_BINDIR}/pg_basebackup", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres",
                 "-D", str(self.data), "-R", "-X", "stream", "--no-sync")
        self.port = str(free_port())
        as_owner(f"{PG_BINDIR}/pg_ctl", "-D", str(self.data), "-l", str(self.dir / "postgres.log"),
                 "-o", f"-p {self.port}", "-w", "start")
        self.url = primary.url.replace(f":{primary.port}/", f":{self.port}/")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            as_owner(f"{PG_BINDIR}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


# The app as production runs it, in a child process: primary and replica from the environment.
_CHILD = r"""
import json, os, time
import django
django.setup()
from decimal import Decimal
from django.conf import settings
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from catalogue.choices import PaymentMode
from tests import factories as f
from tests.conftest import ISSUE_SINGLE, api_user_for, basic_auth

assert set(settings.DATABASES) == {"default", "replica"}, settings.DATABASES
run = os.environ["REPLICA_TEST_RUN"]  # each run its own org and till login, on the same servers
org = f.OrganisationFactory(name=f"Replica {run}", allow_skip_validation=True)
brand = f.BrandFactory(org=org, name="BUKL")
api_user_for(org, username=f"till_{run}")
customer = f.CustomerFactory(org=org, mobile="11223569865")
f.PointsAccountFactory(customer=customer, opening_balance=Decimal("100"))

def reward(name):
    r = f.RewardFactory(brand=brand, name=name)
    f.PaymentConfigFactory(reward=r, mode=PaymentMode.POINTS, points=Decimal("10"))
    return r

def caught_up():
    with connections["default"].cursor() as c:
        c.execute("SELECT pg_current_wal_insert_lsn()")  # not the write position: commits may sit in WAL buffers (synchronous_commit off)
        lsn = c.fetchone()[0]
    for _ in range(200):
        with connections["replica"].cursor() as c:
            c.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
            if c.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("the standby did not catch up")

def replay(pause):
    with connections["replica"].cursor() as c:
        c.execute("SELECT pg_wal_replay_pause()" if pause else "SELECT pg_wal_replay_resume()")

client = Client(HTTP_AUTHORIZATION=basic_auth(f"till_{run}", "pass"))
LIST = f"/api_gateway/rewards/core/v1/user/reward/brand/BUKL?userId={customer.pk}"

def listed():
    with CaptureQueriesContext(connections["default"]) as primary:
        with CaptureQueriesContext(connections["replica"]) as replica:
            response = client.get(LIST)
    assert response.status_code == 200, response.content

    def tables(ctx):
        sql = " ".join(q["sql"] for q in ctx.captured_queries)
        return sorted(t for t in ("catalogue_reward", "catalogue_catalogueversion", "auth_user") if f'"{t}"' in sql)

    return [r["id"] for r in response.json()["rewardList"]], tables(primary), tables(replica)

first = reward("first")
caught_up()
out = {"first": first.pk, "before": listed()}
replay(pause=True)
second = reward("second")  # on the primary only, while the standby does not replay
out["second"] = second.pk
out["paused"] = listed()
response = client.post(ISSUE_SINGLE.format(second.pk), {"mobile": "11223569865"}, content_type="application/json")
out["issue"] = [response.status_code, response.json()["status"]["code"]]
replay(pause=False)
caught_up()
out["resumed"] = listed()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def primary_and_standby(tmp_path_factory):
    """A primary of the module's own (migrated, wal_level=replica) and its hot standby."""
    primary = ThrowawayCluster(tmp_path_factory.mktemp("replica") / "primary.env")
    standby = None
    try:
        as_owner(f"{PG_BINDIR}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres",
                 "-c", "ALTER SYSTEM SET wal_level = 'replica'", "-c", "ALTER SYSTEM SET max_wal_senders = 4")
        primary.stop_server()
        primary.start_server()
        env = {**os.environ, "DATABASE_URL": primary.url, "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True,
                       timeout=300)
        standby = Standby(primary)
        yield primary, standby
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


@pytest.mark.parametrize("pooled", [False, pytest.param(True, marks=pytest.mark.skipif(
    PGBOUNCER is None, reason="needs Debian's pgbouncer (make test installs it)"))], ids=["direct", "pgbouncer"])
def test_list_reads_come_from_the_streaming_replica_and_everything_else_from_the_primary(primary_and_standby, pooled):
    """``pgbouncer``: both servers behind one PgBouncer in transaction pooling mode (a database
    name for each), the app with ``DATABASE_TRANSACTION_POOLING=true``, as docs/scaling.md has
    an operator run it."""
    primary, standby = primary_and_standby
    env = {**os.environ, "DATABASE_URL": primary.url, "DATABASE_REPLICA_URL": standby.url,
           "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test", "PYTHONPATH": str(ROOT),
           "REPLICA_TEST_RUN": "pgbouncer" if pooled else "direct"}
    bouncer = None
    database = parse_url(primary.url)["NAME"]
    try:
        if pooled:
            bouncer = PgBouncer(primary.url, {"replica": f"host=127.0.0.1 port={standby.port} dbname={database}"})
            env.update(POOLING, DATABASE_URL=bouncer.url(), DATABASE_REPLICA_URL=bouncer.url("replica"))
        child = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, timeout=180,
                               env=env)
        assert child.returncode == 0, child.stderr[-3000:] + (bouncer.log() if bouncer else "")
        out = json.loads(child.stdout.strip().splitlines()[-1])
        stats = {s["database"]: s["total_xact_count"] for s in bouncer.show("STATS")} if bouncer else {}
    finally:
        if bouncer is not None:
            bouncer.stop()

    if pooled:
        # Both databases' traffic went through the pool.
        assert stats.get("replica", 0) > 0 and stats.get(database, 0) > 0, stats
    first, second = out["first"], out["second"]
    # Rewards and the catalogue version are read on the replica; the login (auth_user) always on
    # the primary.
    assert out["before"] == [[first], ["auth_user"], ["catalogue_catalogueversion", "catalogue_reward"]]
    # Replay paused: the list (replica) does not see the new reward; the issue call (primary) does.
    # The replica's catalogue version has not moved either, so the list answers from its index.
    assert out["paused"] == [[first], ["auth_user"], ["catalogue_catalogueversion"]]
    assert out["issue"] == [200, 200]
    assert sorted(out["resumed"][0]) == sorted([first, second])
