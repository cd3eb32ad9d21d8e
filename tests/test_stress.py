"""Stress: two app server processes (gunicorn) on one PostgreSQL, 32 concurrent HTTP clients.

Hot customers and a cold tail; single, bulk, coupon, limited and vendor rewards (the vendor a
slow local FakeVendor); requestIds replayed concurrently. Afterwards the invariants hold:
every balance equals its ledger, no coupon code went out twice, no limit was exceeded, no
PENDING line or hold is left, every call answered 200 is stored, and no call answered 5xx.

The second test restarts PostgreSQL mid-run (its own throwaway cluster, so the suite's server
is never touched): during the outage the app answers 503 with the status block (never 500),
it recovers by itself (CONN_HEALTH_CHECKS), and retrying the refused calls loses nothing.

Bounded: a fixed number of calls per client, or a fixed run time; under a minute together.
"""

import concurrent.futures
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from catalogue import models as cm
from catalogue.choices import ConstraintKpi, ConstraintLevel, Frequency, PaymentMode, RedemptionType
from issuance import ledger, limits
from issuance.fake_vendor import FakeVendor
from issuance.models import IdempotencyRecord, IssuanceLine, IssuedUnit, LedgerEntry, LineStatus, PointsAccount
from tests import factories as f
from tests.conftest import api_user_for, basic_auth

ROOT = Path(settings.BASE_DIR)
POSTGRES_ONLY = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (processes sharing one server)"
)
pytestmark = [pytest.mark.slow, POSTGRES_ONLY]

CLIENTS = 32
HOT, COLD = 6, 120
POOL = 200
CUSTOMER_LIMIT, REWARD_LIMIT = 3, 40
DUPLICATES = 10
AUTH = basic_auth("till_user", "pass")
SINGLE = "/api_gateway/rewards/core/v1/user/reward/{}/issue?username=till1&skip_validation=true"
BULK = "/api_gateway/rewards/core/v1/user/rewards/issue?username=till1&skip_validation=true"
# What a client may be answered: issued or replayed (200), refused for points, pool or limit
# (422), the customer or requestId busy (409). Never 5xx (503 only while the database is down).
EXPECTED = {200, 409, 422}


# ---------------------------------------------------------------- the world (built in-process or in a child)


def _points_reward(brand, points: str, **kwargs) -> cm.Reward:
    reward = f.RewardFactory(brand=brand, intouch_points=Decimal(points), **kwargs)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(points))
    return reward


def build_world(vendor_url: str | None = None) -> dict:
    """Org, till login (till_user / pass on till1), customers with accounts, and the rewards."""
    org = f.OrganisationFactory(name="Stress", allow_skip_validation=True)
    brand = f.BrandFactory(org=org, name="BUKL")
    api_user_for(org)
    hot = [f.CustomerFactory(org=org) for _ in range(HOT)]
    cold = [f.CustomerFactory(org=org) for _ in range(COLD)]
    for customer in hot:  # runs dry under load: 8004 for the late callers
        f.PointsAccountFactory(customer=customer, opening_balance=Decimal("300"))
    for customer in cold:
        f.PointsAccountFactory(customer=customer, opening_balance=Decimal("1000"))
    points = _points_reward(brand, "10")
    series = f.CouponSeriesFactory(org=org)
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=f"ST{i:05d}") for i in range(POOL))
    coupon = _points_reward(brand, "10", redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series)
    limited = _points_reward(brand, "5")
    for level, limit in ((ConstraintLevel.CUSTOMER, CUSTOMER_LIMIT), (ConstraintLevel.REWARD, REWARD_LIMIT)):
        cm.RewardConstraint.objects.create(org=org, reward=limited, level=level, frequency=Frequency.DAYS,
                                           kpi=ConstraintKpi.QUANTITY, limit_value=limit)
    world = {
        "hot": [c.mobile for c in hot],
        "cold": [c.mobile for c in cold],
        "points": points.pk,
        "coupon": coupon.pk,
        "series": series.pk,
        "limited": limited.pk,
        "vendor": None,
    }
    if vendor_url:
        vendor = f.VendorFactory(org=org)
        config = cm.VendorRedemptionConfig.objects.create(
            vendor=vendor, name="slow", url=f"{vendor_url}/redeem/slow", timeout_seconds=Decimal("5"),
            body_template='{"reference": "{{reference}}", "mobile": "{{mobile}}"}',
            context_map={"voucher": "data.voucherCode", "valid_till": "data.validTill"},
            status_url=f"{vendor_url}/status/{{{{reference}}}}",
        )
        world["vendor"] = _points_reward(brand, "20", redemption_type=RedemptionType.VENDOR_ONLY_REWARD,
                                         vendor=vendor, vendor_redemption=config).pk
    return world


def world_problems(world: dict, answered: list[str]) -> list[str]:
    """Every invariant that does not hold (empty: all hold). ``answered``: requestIds of
    reward lines whose call was answered 200."""
    problems = []
    if bad := ledger.accounts_check_all():
        problems.append(f"balances disagree with their ledgers: {bad}")
    if usage := limits.usage_disagreements():
        problems.append(f"hourly reward usage disagrees with the lines: {usage[:5]}")
    if PointsAccount.objects.exclude(held=0).exists():
        problems.append("points still held")
    if pending := IssuanceLine.objects.filter(status=LineStatus.PENDING).count():
        problems.append(f"{pending} PENDING lines left")
    codes = list(IssuedUnit.objects.filter(coupon_series_id=world["series"]).values_list("coupon_code", flat=True))
    if len(codes) != len(set(codes)):
        problems.append(f"coupon codes issued twice: {[c for c, n in Counter(codes).items() if n > 1]}")
    left = cm.CouponCode.objects.filter(series_id=world["series"]).count()
    if len(codes) + left != POOL or not set(codes) <= {f"ST{i:05d}" for i in range(POOL)}:
        problems.append(f"pool does not add up: {len(codes)} issued + {left} left != {POOL}")
    limited = Counter(
        IssuedUnit.objects.filter(line__reward_id=world["limited"]).values_list("line__customer_id", flat=True)
    )
    if limited and max(limited.values()) > CUSTOMER_LIMIT:
        problems.append(f"customer limit exceeded: {limited.most_common(3)}")
    if sum(limited.values()) > REWARD_LIMIT:
        problems.append(f"reward limit exceeded: {sum(limited.values())} > {REWARD_LIMIT}")
    for line in IssuanceLine.objects.filter(quantity__gt=0):
        debited = -sum(LedgerEntry.objects.filter(line=line).values_list("amount", flat=True))
        if debited != line.total_points or line.units.count() != line.quantity:
            problems.append(f"line {line.pk}: {line.quantity} units, {line.total_points} points, debited {debited}")
    for k in range(DUPLICATES):
        lines = list(IssuanceLine.objects.filter(request_id=f"dup-{k}"))
        if len(lines) > 1 or any(line.quantity > 1 for line in lines):
            problems.append(f"requestId dup-{k} issued more than once")
    stored = set(IdempotencyRecord.objects.filter(state="DONE").values_list("request_id", flat=True))
    if lost := sorted(set(answered) - stored):
        problems.append(f"answered 200 but not stored: {lost[:10]}")
    return problems


# ---------------------------------------------------------------- app servers and clients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServers:
    """``count`` gunicorn processes (gthread workers) on the database at ``database_url``."""

    def __init__(self, database_url: str, count: int = 2, workers: int = 2, threads: int = 4,
                 extra_env: dict | None = None):
        self.ports = [free_port() for _ in range(count)]
        env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test",
               "ALLOWED_HOSTS": "127.0.0.1", "PYTHONPATH": str(ROOT), **(extra_env or {})}
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        # A file, not a pipe: nobody reads a pipe while the servers run, and a full pipe would
        # block every worker thread in its next log call.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.processes = [
            subprocess.Popen(
                [gunicorn, "rewards_site.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                 "--worker-class", "gthread", "--threads", str(threads), "--graceful-timeout", "5",
                 "--keep-alive", "120",
                 "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log, text=True,
            )
            for port in self.ports
        ]

    def __enter__(self) -> "AppServers":
        deadline = time.monotonic() + 60
        for port, process in zip(self.ports, self.processes, strict=True):
            while True:
                assert process.poll() is None, self.errors()
                try:
                    status = request(port, "POST", BULK, {})[0]  # loads the app in a worker: 400
                    assert status == 400, status
                    break
                except OSError:
                    assert time.monotonic() < deadline, "app server did not start"
                    time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log.close()

    def errors(self) -> str:
        """What the servers logged."""
        self.log.seek(0)
        return self.log.read()[-5000:]


def request(port: int, method: str, path: str, body, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, json.dumps(body), {"Authorization": AUTH, "Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    finally:
        if own:
            conn.close()
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"raw": raw[:300].decode(errors="replace")}
    return response.status, data


@dataclass
class Call:
    port: int
    path: str
    body: dict
    request_ids: list[str]
    status: int = 0
    code: int | None = None
    at: float = 0.0
    error: str = ""


def make_call(rng: random.Random, world: dict, thread: int, n: int) -> tuple[str, dict, list[str]]:
    """One client call: which customer, which kind, which requestId(s)."""
    mobile = rng.choice(world["hot"]) if rng.random() < 0.7 else rng.choice(world["cold"])
    rid = f"t{thread}-{n}"
    roll = rng.random()
    if roll < 0.12:  # a duplicate: the same payload under a shared requestId, from many clients
        k = rng.randrange(DUPLICATES)
        rid = f"dup-{k}"
        return SINGLE.format(world["points"]), {"mobile": world["cold"][k], "requestId": rid}, [rid]
    if roll < 0.30 and world["vendor"]:
        return SINGLE.format(world["vendor"]), {"mobile": mobile, "requestId": rid}, [rid]
    if roll < 0.50:
        rewards = [world["points"], world["limited"], world["coupon"]]
        items = [{"rewardId": r, "quantity": rng.randint(1, 2), "requestId": f"{rid}-{i}"}
                 for i, r in enumerate(rewards)]
        return BULK, {"mobile": mobile, "brand": "BUKL", "rewards": items}, [i["requestId"] for i in items]
    reward = rng.choice([world["points"], world["coupon"], world["limited"]])
    return SINGLE.format(reward), {"mobile": mobile, "brand": "BUKL", "requestId": rid}, [rid]


def drive(ports: list[int], world: dict, *, calls: int | None = None, until: float | None = None) -> list[Call]:
    """CLIENTS threads, each with a keep-alive connection to every server, calling them in
    turn: ``calls`` calls each, or until ``until`` (time.monotonic())."""
    barrier = threading.Barrier(CLIENTS)
    done: list[list[Call]] = [[] for _ in range(CLIENTS)]

    def client(i: int) -> None:
        rng = random.Random(i)
        conns = {port: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in ports}
        barrier.wait(timeout=30)
        n = 0
        while (calls is None or n < calls) and (until is None or time.monotonic() < until):
            port = ports[(i + n) % len(ports)]
            path, body, rids = make_call(rng, world, i, n)
            call = Call(port, path, body, rids)
            for _attempt in range(2):
                try:
                    call.status, data = request(port, "POST", path, body, conns[port])
                    call.code = (data.get("status") or {}).get("code")
                    break
                except (OSError, http.client.HTTPException) as error:
                    # A kept-alive connection the server has just closed: resend once on a new
                    # one, as HTTP clients do (safe: every call carries its requestIds).
                    call.status, call.error = -1, repr(error)
                    conns[port].close()
            call.at = time.monotonic()
            done[i].append(call)
            n += 1
            if call.status == 503:
                time.sleep(0.5)  # a polite client backs off (the answer says Retry-After)
        for conn in conns.values():
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "clients still running after 120 s"
    return [call for calls_ in done for call in calls_]


def answered_ids(calls: list[Call]) -> list[str]:
    return [rid for call in calls if call.status == 200 for rid in call.request_ids]


def database_url_of_this_test() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


# ---------------------------------------------------------------- 1. two servers, 32 clients


@pytest.mark.django_db(transaction=True)
def test_two_app_servers_and_32_clients_keep_every_invariant():
    vendor = FakeVendor(slow_seconds=0.3).start()
    try:
        world = build_world(vendor.base_url)
        connections.close_all()
        with AppServers(database_url_of_this_test()) as servers:
            started = time.monotonic()
            calls = drive(servers.ports, world, calls=12)
            elapsed = time.monotonic() - started
    finally:
        vendor.stop()

    statuses = Counter((c.status, c.code) for c in calls)
    assert len(calls) == CLIENTS * 12
    assert all(c.status in EXPECTED for c in calls), (statuses, [c for c in calls if c.status not in EXPECTED][:5])
    assert statuses[(200, 200)] > len(calls) / 4, statuses  # mostly real work, not refusals
    assert any(code == 8004 for _, code in statuses), statuses  # hot customers ran dry
    assert any(c.status == 200 and c.path.startswith(SINGLE.format(world["vendor"])) for c in calls)
    assert len(vendor.redeemed) == IssuedUnit.objects.filter(line__reward_id=world["vendor"]).count()
    assert {c.port for c in calls if c.status == 200} == set(servers.ports)
    assert world_problems(world, answered_ids(calls)) == []
    assert elapsed < 60, elapsed


# ---------------------------------------------------------------- 2. PostgreSQL restarted mid-run


def drive_through_outage(servers: AppServers, world: dict, what: str, *, stop, start, wait: float,
                         run_for: float) -> tuple[list[Call], list[Call]]:
    """Drive the clients for ``run_for`` s while ``what`` goes down (``stop()`` after ``wait`` s)
    and comes back (``start()`` ``wait`` s later), and check what the clients saw: nothing but
    the expected answers and 503 (with the status block) meanwhile, normal answers again on both
    servers after a short grace, then a retry of every refused call (same payload and requestIds)
    answered as expected. Returns the calls and the retries."""
    started = time.monotonic()
    outage: dict[str, float] = {}

    def restart() -> None:
        time.sleep(wait)
        stop()
        outage["down"] = time.monotonic()
        time.sleep(wait)
        start()
        outage["up"] = time.monotonic()

    restarter = threading.Thread(target=restart)
    restarter.start()
    calls = drive(servers.ports, world, until=started + run_for)
    restarter.join(timeout=60)
    assert "up" in outage, f"{what} did not come back"

    statuses = Counter(c.status for c in calls)
    refused = [c for c in calls if c.status == 503]
    odd = [(c.status, c.error, round(c.at - started, 1)) for c in calls if c.status not in EXPECTED | {503}]
    assert set(statuses) <= EXPECTED | {503}, (statuses, outage, started, odd[:8], servers.errors())
    assert refused, f"no 503 while {what} was down: {statuses}"
    assert all(c.code == 503 for c in refused)
    # Recovered by itself: after a short grace, everything is answered normally again.
    late = [c for c in calls if c.at > outage["up"] + 1.5]
    assert late and all(c.status in EXPECTED for c in late), Counter(c.status for c in late)
    assert {c.port for c in late if c.status == 200} == set(servers.ports)
    # A client retries what was refused, same payload and requestId: it is issued once.
    retries = [Call(c.port, c.path, c.body, c.request_ids) for c in refused]

    def retry(call: Call) -> None:
        call.status, _ = request(call.port, "POST", call.path, call.body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(retry, retries))
    assert all(c.status in EXPECTED for c in retries), Counter(c.status for c in retries)
    return calls, retries


class ThrowawayCluster:
    """A PostgreSQL of this test's own (scripts/pg_test_cluster.sh), which it may restart."""

    def __init__(self, state_file: Path):
        self.env = {**os.environ, "PG_TEST_STATE_FILE": str(state_file), "PG_TEST_PORT_BASE": "55430"}
        self.script = str(ROOT / "scripts" / "pg_test_cluster.sh")
        out = subprocess.run([self.script, "start"], env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        state = dict(line.split("=", 1) for line in state_file.read_text().split())
        self.url, self.data = state["DATABASE_URL"], Path(state["PG_TEST_DIR"]) / "data"
        self.port, self.log = state["PG_TEST_PORT"], Path(state["PG_TEST_DIR"]) / "postgres.log"
        self.pg_ctl = os.path.join(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"), "pg_ctl")

    def _pg_ctl(self, *args: str) -> None:
        as_owner = ["runuser", "-u", os.environ.get("PG_TEST_OS_USER", "postgres"), "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_owner, self.pg_ctl, "-D", str(self.data), *args], cwd="/", check=True,
                       capture_output=True, timeout=60)

    def stop_server(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        self._pg_ctl("-l", str(self.log), "-o", f"-p {self.port}", "-w", "start")

    def destroy(self) -> None:
        subprocess.run([self.script, "stop"], env=self.env, capture_output=True, timeout=120)


def in_django(url: str, code: str) -> str:
    """Run ``code`` in a child Python with Django set up on ``url``; returns its last stdout line."""
    script = f"import django, json\ndjango.setup()\n{code}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def test_postgres_restart_mid_run_answers_503_recovers_and_loses_nothing(tmp_path):
    if not os.path.exists(os.path.join(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"), "pg_ctl")):
        pytest.skip("needs the PostgreSQL server binaries to run a cluster of its own")
    cluster = ThrowawayCluster(tmp_path / "cluster.env")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True,
                       env={**os.environ, "DATABASE_URL": cluster.url,
                            "DJANGO_SETTINGS_MODULE": "rewards_site.settings.test"},
                       timeout=300)
        world = json.loads(in_django(cluster.url, "from tests.test_stress import build_world\n"
                                                  "print(json.dumps(build_world()))"))
        with AppServers(cluster.url) as servers:
            calls, retries = drive_through_outage(servers, world, "PostgreSQL", stop=cluster.stop_server,
                                                  start=cluster.start_server, wait=2.0, run_for=9)
        answered = answered_ids(calls + retries)
        problems = in_django(cluster.url, "from tests.test_stress import world_problems\n"
                                          f"print(json.dumps(world_problems({world!r}, {answered!r})))")
        assert json.loads(problems) == []
    finally:
        cluster.destroy()
