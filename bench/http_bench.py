"""Throughput and latency of the issue and list APIs under gunicorn, with same-run baselines.

    bench/run.sh [--rounds 9] [--seconds 5] [--workers 4] [--connections 8] [--quick] [--profile] [--ab NAME=VALUE]
                 [--worker-class gthread|sync]
    .venv/bin/python bench/http_bench.py --pool var/bench/A.json var/bench/B.json ...   # ratios over several runs

(``bench/run.sh`` installs wrk if absent and runs this under ``scripts/pg_test_cluster.sh with``;
this file needs DATABASE_URL to name a throwaway PostgreSQL cluster.) docs/performance.md
explains the method and keeps the figures.

1. Data, with COPY (loader: bench/list_rewards.py ``load``, plus the issue extras below), in three
   databases of the cluster: ``bench_10k`` (10,000 customers and rewards), ``bench_100k``
   (100,000 of each) and ``bench_100k_drained`` (a copy of bench_100k whose two coupon pools are
   90 % used: all but 100,000 codes of each, in the order the engine takes them, deleted, then
   VACUUM as autovacuum would have run meanwhile; made anew at every run, ``--reuse`` too). Sequential scans are not synchronised (see
   SEQSCAN_AS_IN_PRODUCTION). Every database has a points account per customer, one
   single-issue coupon reward on a pool of 1,000,000 codes, ten bulk coupon rewards sharing a
   second pool of 1,000,000 codes, a till login (HTTP Basic) and an OAuth2 API client.
2. One gunicorn per database (gthread workers of 1 thread with keep-alive, or ``--worker-class
   sync``: a connection per request; loopback, BENCH_VIEWS=1, DEBUG off).
3. Load from wrk (a separate C process; Lua scripts in bench/wrk/ build the bodies and count
   statuses) in alternating short rounds: every scenario of every database once per round.
   Within a round, what a ratio compares (a group of ``RUN_ORDER``, on every database) takes
   turns in 1-second slices (``--slice``), A B C C B A …, until each has run ``--seconds``;
   the slices of a scenario are merged into its row of the round (benchsupport/slices.py).
   The groups' order rotates each round. pgbench runs the bare SQL in the same rounds.
4. Prints, per scenario, the medians over rounds of requests/s and p50/p95/p99 latency, the
   CPU the app and PostgreSQL spent per call, queries per call, peak RSS per worker, then the
   ratios and the targets (met / not met). Raw results go to var/bench/<time>.json.

Scenarios: ping (baseline 1: authenticated trivial JSON view), bare (baseline 2: the issue's
bare SQL through Django, benchsupport), pgbench (baseline 3: that SQL straight from pgbench),
issue (single coupon issue), bulk (10 coupon rewards in one call), list (the list API, a
filtered 20-item page); on the 100k database also ping, issue, bulk and list with OAuth2 (``-oauth``). Issue and bulk calls carry a fresh requestId per reward, as clients do.
"""

import argparse
import base64
import datetime
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchsupport.slices import grid_of  # noqa: E402
from benchsupport.slices import merge as merge_slices  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewards_site.settings.base")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 60)
os.environ["BENCH_VIEWS"] = "1"

PG_BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
POOL = int(os.environ.get("BENCH_POOL", 1_000_000))
BULK_REWARDS = 10
OPENING_POINTS = Decimal(1_000_000_000)
REWARD_POINTS = Decimal(10)
TILL_USER, TILL_PASSWORD = "bench_till", "bench-pass-123"  # bench/list_rewards.py's till login
LIST_FILTER = {"redemptionType": "VOUCHER,MILES", "status": "LIVE"}
_SMALL, _LARGE = (int(n) for n in os.environ.get("BENCH_SCALES", "10000,100000").split(","))  # smaller: to debug
DATABASES = {
    "10k": ("bench_10k", _SMALL),
    "100k": ("bench_100k", _LARGE),
    "100k-drained": ("bench_100k_drained", _LARGE),
}
# Which scenarios run on which database: everything on the main one, what the scale and drain
# comparisons need on the others.
PLAN = {
    "100k": ["ping", "issue", "bare", "bulk", "pgbench", "list", "ping-oauth", "issue-oauth", "bulk-oauth",
             "list-oauth"],
    "10k": ["ping", "issue", "bare", "bulk", "pgbench", "list"],
    "100k-drained": ["ping", "issue", "bare", "bulk", "pgbench"],
}
# The groups of a round (what a ratio compares, taking turns in slices), and the order within
# one: each database's scenarios of a group together, then the next database's.
RUN_ORDER = {"ping": (0, 0), "list": (0, 1), "ping-oauth": (0, 2), "list-oauth": (0, 3),
             "issue": (1, 0), "bare": (1, 1), "issue-oauth": (1, 2), "bulk": (2, 0), "bulk-oauth": (2, 1),
             "pgbench": (2, 2)}
AB_KEY = "100k-ab"  # --ab: the 100k database again, through a server with one setting changed
DATABASES[AB_KEY] = DATABASES["100k"]
WRK_LUA = ROOT / "bench" / "wrk" / "api.lua"
# The throwaway cluster runs with shared_buffers = 128 MB, so PostgreSQL "synchronises"
# sequential scans of the 2,000,000-code pool table (over a quarter of shared_buffers): each scan
# starts where the last one stopped, which hides what a scan from the first page costs. On a
# production server (shared_buffers several GB) every scan starts at page 0; so here too.
SEQSCAN_AS_IN_PRODUCTION = 'ALTER DATABASE "{}" SET synchronize_seqscans = off'



# ---------------------------------------------------------------- loading (child process per database)


def _capped_history_range(customers: int):
    """bench/list_rewards.py gives customers 1..20,000 an issue history; below 20,000
    customers that range must stop at the last customer."""
    import builtins

    def capped(*args):
        if args == (1, 20_001):
            return builtins.range(1, min(customers, 20_000) + 1)
        return builtins.range(*args)

    return capped


def load(scale: int) -> dict:
    """Migrate and fill the database of DATABASE_URL; returns the ids the load needs."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apiclients.services import api_client_create
    from bench import list_rewards
    from catalogue import models as cm
    from issuance import models as im

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    list_rewards.REWARDS = list_rewards.CUSTOMERS = scale
    if scale < 20_000:
        list_rewards.range = _capped_history_range(scale)
    list_rewards.load()
    org = cm.Organisation.objects.get(name="bench")
    brand = cm.Brand.objects.get(org=org, name="BUKL")
    till = cm.Till.objects.get(org=org, code="t1")
    now = timezone.now()

    # A points account per customer, with the customer's id, rich enough never to run dry.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE issuance_pointsaccount SET opening_balance = %s, balance = %s", [OPENING_POINTS] * 2)
    have = set(im.PointsAccount.objects.values_list("customer_id", flat=True))
    list_rewards.copy_rows(
        im.PointsAccount, ["id", "org", "customer", "opening_balance", "balance", "held", "updated_at"],
        ((c, org.pk, c, OPENING_POINTS, OPENING_POINTS, Decimal(0), now) for c in range(1, scale + 1) if c not in have),
    )
    list_rewards.reset_sequences(im.PointsAccount)

    def coupon_reward(name: str, series: cm.CouponSeries) -> cm.Reward:
        return bench_coupon_reward(org=org, brand=brand, name=name, series=series, points=REWARD_POINTS, now=now)

    pools = []
    for name in ("single", "bulk"):
        series = cm.CouponSeries.objects.create(
            org=org, name=f"bench {name}", valid_till=now + datetime.timedelta(days=3650)
        )
        list_rewards.copy_rows(cm.CouponCode, ["series", "code"],
                               ((series.pk, f"{name[0].upper()}{i:09d}") for i in range(POOL)))
        pools.append(series)
    single = coupon_reward("bench single", pools[0])
    bulk = [coupon_reward(f"bench bulk {i}", pools[1]) for i in range(BULK_REWARDS)]
    client, secret = api_client_create(name="bench", till=till, scopes=["rewards:issue", "rewards:read"])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {
        "scale": scale,
        "org": org.pk,
        "brand": brand.pk,
        "till": till.pk,
        "actor": till.users.get(username=TILL_USER).pk,
        "single_reward": single.pk,
        "single_series": pools[0].pk,
        "bulk_rewards": [r.pk for r in bulk],
        "bulk_series": pools[1].pk,
        "client_id": client.application.client_id,
        "client_secret": secret,
        "seconds": round(time.perf_counter() - started),
    }


def bench_coupon_reward(*, org, brand, name: str, series, points: Decimal, now):
    """A live INTOUCH_REWARD on a coupon pool, priced ``points`` by one POINTS config (the
    shape every issue scenario takes; bench/issue_cpu.py uses it too). Needs Django set up."""
    from catalogue import models as cm
    from catalogue.choices import PaymentMode, RedemptionType

    reward = cm.Reward.objects.create(
        org=org, brand=brand, name=name, redemption_type=RedemptionType.INTOUCH_REWARD, enabled=True,
        start_time=now - datetime.timedelta(days=1), end_time=now + datetime.timedelta(days=3650),
        intouch_points=points, coupon_series=series,
    )
    cm.PaymentConfig.objects.create(reward=reward, mode=PaymentMode.POINTS, points=points)
    return reward


def make_drained(base: str, facts: dict) -> None:
    """(Re)create ``bench_100k_drained``: a copy of ``bench_100k`` with both pools 90 % used."""
    import psycopg

    name = DATABASES["100k-drained"][0]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{DATABASES["100k"][0]}"')
        conn.execute(SEQSCAN_AS_IN_PRODUCTION.format(name))
    facts["100k-drained"] = dict(facts["100k"])
    drain(db_url(base, name), facts["100k-drained"], POOL // 10)
    print(f"100k-drained: a copy of 100k with both pools 90 % used ({POOL // 10:,} codes left of {POOL:,} each, "
          "the rest deleted in the order the engine takes them, then VACUUM)", flush=True)


def drain(url: str, facts: dict, leave: int) -> None:
    """Delete the first codes of each pool, leaving ``leave``, as if they had been issued: the
    codes the engine takes first (in code order, which is also the order the rows were loaded
    and lie on disk), then VACUUM, as autovacuum does while a pool drains over days."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for series in (facts["single_series"], facts["bulk_series"]):
            (count,) = conn.execute("SELECT count(*) FROM catalogue_couponcode WHERE series_id = %s",
                                    [series]).fetchone()
            if count < leave:
                sys.exit(f"the 100k database's pools are below {leave:,} codes: run without --reuse to reload")
            conn.execute(
                "DELETE FROM catalogue_couponcode WHERE id IN (SELECT id FROM catalogue_couponcode "
                "WHERE series_id = %s ORDER BY code LIMIT %s)", [series, count - leave],
            )
        conn.execute("VACUUM ANALYZE catalogue_couponcode")


# ---------------------------------------------------------------- queries per call (child process)


def count_queries(facts: dict) -> dict:
    """Queries one call of each kind runs, through Django's test client on the bench database."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    token = client.post("/oauth/token/", {"grant_type": "client_credentials", "scope": "rewards:issue rewards:read"},
                        HTTP_AUTHORIZATION=basic(facts["client_id"], facts["client_secret"])).json()["access_token"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    auth = {"HTTP_AUTHORIZATION": basic(TILL_USER, TILL_PASSWORD)}
    calls = {
        "ping": lambda: client.get("/bench/ping", **auth),
        "bare": lambda: client.post("/bench/bare-issue", bare_body(facts, 7), content_type="application/json", **auth),
        "issue": lambda: client.post(single_path(facts), issue_body(7, f"q-{random.random()}"),
                                     content_type="application/json", **auth),
        "bulk": lambda: client.post(BULK_PATH, bulk_body(facts, 7, f"q-{random.random()}"),
                                    content_type="application/json", **auth),
        "list": lambda: client.get(list_path(7), **auth),
        "ping-oauth": lambda: client.get("/bench/ping", **bearer),
        "issue-oauth": lambda: client.post(single_path(facts), issue_body(7, f"q-{random.random()}"),
                                           content_type="application/json", **bearer),
        "bulk-oauth": lambda: client.post(BULK_PATH, bulk_body(facts, 7, f"q-{random.random()}"),
                                          content_type="application/json", **bearer),
        "list-oauth": lambda: client.get(list_path(7), **bearer),
    }
    counts = {}
    for name, call in calls.items():
        assert call().status_code == 200, name  # warm: password check, caches
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        assert response.status_code == 200, (name, response.content[:300])
        counts[name] = len(ctx.captured_queries)
    return counts


# ---------------------------------------------------------------- request shapes (also used by the Lua script)


BULK_PATH = "/api_gateway/rewards/core/v1/user/rewards/issue?username=t1&skip_validation=true"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def single_path(facts: dict) -> str:
    return f"/api_gateway/rewards/core/v1/user/reward/{facts['single_reward']}/issue?username=t1&skip_validation=true"


def list_path(customer: int) -> str:
    return "/api_gateway/rewards/core/v1/user/reward/brand/BUKL?" + urllib.parse.urlencode(
        {"userId": customer, **LIST_FILTER})


def issue_body(customer: int, request_id: str) -> str:
    return json.dumps({"mobile": f"9{customer:09d}", "brand": "BUKL", "requestId": request_id})


def bulk_body(facts: dict, customer: int, request_id: str) -> str:
    rewards = [{"rewardId": r, "quantity": 1, "requestId": f"{request_id}-{i}"}
               for i, r in enumerate(facts["bulk_rewards"])]
    return json.dumps({"mobile": f"9{customer:09d}", "brand": "BUKL", "rewards": rewards})


def bare_body(facts: dict, customer: int) -> str:
    return json.dumps({"customer": customer, "series": facts["single_series"], "reward": facts["single_reward"],
                       "org": facts["org"], "till": facts["till"], "brand": facts["brand"],
                       "points": str(REWARD_POINTS)})


# ---------------------------------------------------------------- processes: CPU and memory


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process tree: live processes' own time plus the root's reaped children (so a
    backend that exited during the interval still counts)."""
    total = 0.0
    fields = _stat(root)
    if fields:
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    for child in children_of(root):
        child_fields = _stat(child)
        if child_fields:
            total += int(child_fields[11]) + int(child_fields[12])
    return total / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    """gunicorn on one bench database."""

    def __init__(self, url: str, workers: int, log_dir: Path, extra_env: dict | None = None,
                 worker_class: str = "gthread"):
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "BENCH_VIEWS": "1", "DEBUG": "false",
               "DJANGO_SETTINGS_MODULE": "rewards_site.settings.base", "ALLOWED_HOSTS": "127.0.0.1,localhost",
               "OAUTH2_ACCESS_TOKEN_SECONDS": "86400", "LOG_LEVEL": "WARNING", "CONN_MAX_AGE": "600",
               **(extra_env or {})}
        self.log = open(log_dir / f"gunicorn-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "rewards_site.wsgi:application",
             "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--worker-class", worker_class,
             "--threads", "1", "--keep-alive", "60", "--backlog", "512", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    @property
    def workers(self) -> list[int]:
        return children_of(self.process.pid)

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def oauth_token(port: int, facts: dict) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "rewards:issue rewards:read"})
    auth = basic(facts["client_id"], facts["client_secret"])
    conn.request("POST", "/oauth/token/", body, {"Authorization": auth,
                                                 "Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    data = json.loads(response.read())
    assert response.status == 200, data
    return data["access_token"]


# ---------------------------------------------------------------- load generators


def wrk_env(kind: str, facts: dict, auth: str, tag: str) -> dict:
    """What bench/wrk/api.lua reads from the environment."""
    env = {"BENCH_KIND": kind, "BENCH_AUTH": auth, "BENCH_CUSTOMERS": str(facts["scale"]), "BENCH_TAG": tag}
    if kind == "ping":
        env["BENCH_PATH"] = "/bench/ping"
    elif kind == "bare":
        env["BENCH_PATH"] = "/bench/bare-issue"
        env["BENCH_BODY"] = bare_body(facts, 0).replace('"customer": 0', '"customer": __CUSTOMER__')
    elif kind == "issue":
        env["BENCH_PATH"] = single_path(facts)
    elif kind == "bulk":
        env["BENCH_PATH"] = BULK_PATH
        env["BENCH_REWARDS"] = ",".join(str(r) for r in facts["bulk_rewards"])
    elif kind == "list":
        env["BENCH_PATH"] = list_path(0).replace("userId=0", "userId=__CUSTOMER__")
    return env


def run_wrk(port: int, env: dict, seconds: float, connections: int, threads: int = 2) -> dict:
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "--timeout", "10s",
               "-s", str(WRK_LUA), f"http://127.0.0.1:{port}"]
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON "):])
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise RuntimeError(f"wrk said: {result.stdout}\n{result.stderr}")


def run_pgbench(url: str, script: Path, seconds: float, clients: int, log_dir: Path) -> dict:
    parts = urllib.parse.urlsplit(url)
    prefix = log_dir / f"pgbench-{time.monotonic_ns()}"
    command = [f"{PG_BINDIR}/pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", str(min(clients, 2)),
               "-T", str(int(seconds)), "-l", f"--log-prefix={prefix}", "-h", parts.hostname, "-p", str(parts.port),
               "-U", parts.username, parts.path.lstrip("/")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(result.stdout + result.stderr)
    latencies = []
    for log in log_dir.glob(prefix.name + "*"):
        for line in log.read_text().splitlines():
            latencies.append(int(line.split()[2]))
        log.unlink()
    latencies.sort()
    tps = next(float(line.split("=")[1].split()[0]) for line in result.stdout.splitlines()
               if line.startswith("tps ="))

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))]

    return {"requests": len(latencies), "rps": tps, "p50": pct(50), "p95": pct(95), "p99": pct(99),
            "s2xx": len(latencies), "s4xx": 0, "s5xx": 0, "errors": 0, "grid": grid_of(latencies)}


# ---------------------------------------------------------------- the run


def postmaster_pid(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    return int(Path(data_dir, "postmaster.pid").read_text().split()[0])


def db_url(base: str, name: str) -> str:
    return urllib.parse.urlsplit(base)._replace(path="/" + name).geturl()


def prepare(base: str, names: list[str], log_dir: Path, reuse: bool) -> dict[str, dict]:
    import psycopg

    saved = ROOT / "var" / "bench" / f"facts-{urllib.parse.urlsplit(base).port}.json"
    if reuse and saved.exists():
        print(f"reusing the databases loaded earlier ({saved}), migrated to this code", flush=True)
        facts = json.loads(saved.read_text())
        for key in names:  # the code may have new migrations since they were loaded
            if key != "100k-drained":
                subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, check=True,
                               env={**os.environ, "DATABASE_URL": db_url(base, DATABASES[key][0])})
        if "100k-drained" in names:  # every run takes codes: drained anew to exactly 90 % used
            make_drained(base, facts)
        return facts

    with psycopg.connect(base, autocommit=True) as conn:
        for key in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASES[key][0]}"')
        for key in names:
            if key != "100k-drained":
                conn.execute(f'CREATE DATABASE "{DATABASES[key][0]}"')
                conn.execute(SEQSCAN_AS_IN_PRODUCTION.format(DATABASES[key][0]))
    loaders = {}
    for key in names:
        if key == "100k-drained":
            continue
        name, scale = DATABASES[key]
        loaders[key] = subprocess.Popen(
            [sys.executable, __file__, "--load", str(scale)], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=open(log_dir / f"load-{key}.log", "w"),  # noqa: SIM115
            env={**os.environ, "DATABASE_URL": db_url(base, name)}, text=True,
        )
    facts = {}
    for key, process in loaders.items():
        out, _ = process.communicate(timeout=3600)
        if process.returncode:
            raise RuntimeError(f"loading {key} failed: see {log_dir}/load-{key}.log")
        facts[key] = json.loads(out.strip().splitlines()[-1])
        print(f"loaded {key}: {facts[key]['scale']:,} customers and rewards, 2 pools of {POOL:,} codes "
              f"in {facts[key]['seconds']} s", flush=True)
    if "100k-drained" in names:
        make_drained(base, facts)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(facts))
    return facts


class Ratio(float):
    """A median of per-round ratios that keeps the rounds' own values (their spread is the noise)."""

    def __new__(cls, value: float, rounds: list[float]):
        ratio = super().__new__(cls, value)
        ratio.rounds = rounds
        return ratio


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_of(results: dict, key: str, scenario: str, field: str):
    """The median over rounds of one field of a scenario's rows (rounds that did not run it: None)."""
    return median([r.get(field) for r in results.get((key, scenario), []) if r is not None])


def main() -> None:  # noqa: C901, PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    parser.add_argument("--slice", type=float, default=1.0,
                        help="seconds per slice: what a ratio compares takes turns in slices this long within a "
                             "round (0: each scenario runs its --seconds in one go, as before 2026-12-04)")
    parser.add_argument("--rounds", type=int, default=9,
                        help="alternating rounds (medians of 3-5 rounds missed targets by noise alone)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one measured run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers per server")
    parser.add_argument("--worker-class", choices=["gthread", "sync"], default="gthread",
                        help="gunicorn's worker class (gthread: 1 thread, keep-alive; sync: a connection per request)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (pgbench clients: --workers)")
    parser.add_argument("--quick", action="store_true", help="100k only, 2 rounds of 3 s (a smoke run)")
    parser.add_argument("--reuse", action="store_true", help="keep the databases of the last run on this cluster (migrated to this code)")
    parser.add_argument("--profile", action="store_true",
                        help="also py-spy the issue call (var/bench/issue-profile.txt)")
    parser.add_argument("--ab", metavar="NAME=VALUE",
                        help="A/B a setting: a second server on the 100k database with this environment "
                             "variable runs issue and bare in the same rounds (scenarios of '100k-ab')")
    parser.add_argument("--pool", nargs="+", metavar="RESULTS.json",
                        help="no run: the ratios over the rounds of these earlier runs' raw results together "
                             "(each round pairs what it compares; a run without a scenario adds no round to its ratios)")
    args = parser.parse_args()
    if args.pool:
        pool_runs([Path(name) for name in args.pool])
        return
    if args.load:
        print(json.dumps(load(args.load)), flush=True)
        return
    if args.queries:
        import django  # noqa: F401

        print(json.dumps(count_queries(json.loads(args.queries))), flush=True)
        return

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a throwaway PostgreSQL cluster (bench/run.sh starts one)")
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk (bench/run.sh does it)")
    plan = dict(PLAN)
    if args.quick:
        plan = {"100k": PLAN["100k"]}
        args.rounds, args.seconds = 2, 3.0
    log_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-"))
    os.chmod(log_dir, 0o777)  # pgbench logs and the like
    print(f"machine: {os.cpu_count()} cores; load before: {Path('/proc/loadavg').read_text().split()[:3]}; "
          f"logs in {log_dir}", flush=True)

    ab_env = None
    if args.ab:
        name, sep, value = args.ab.partition("=")
        if not sep or not name:
            sys.exit("--ab takes NAME=VALUE, e.g. --ab ISSUE_WRITE_BATCH=false")
        ab_env = {name: value}
        plan[AB_KEY] = ["issue", "bare"]
    facts = prepare(base, [key for key in plan if key != AB_KEY], log_dir, args.reuse)
    if ab_env:
        facts[AB_KEY] = facts["100k"]
    servers, tokens, scripts = {}, {}, {}
    pg_pid = postmaster_pid(base)
    try:
        for key in plan:
            url = db_url(base, DATABASES[key][0])
            servers[key] = Server(url, args.workers, log_dir, ab_env if key == AB_KEY else None,
                                  worker_class=args.worker_class)
            tokens[key] = oauth_token(servers[key].port, facts[key])
            script = log_dir / f"bare-{key}.sql"
            from benchsupport.bare_issue import pgbench_script

            f = facts[key]
            script.write_text(pgbench_script(customers=f["scale"], series=f["single_series"],
                                             reward=f["single_reward"], org=f["org"], till=f["till"],
                                             brand=f["brand"], actor=f["actor"], points=REWARD_POINTS))
            os.chmod(script, 0o644)
            scripts[key] = script
        queries = json.loads(subprocess.run(
            [sys.executable, __file__, "--queries", json.dumps(facts["100k"])], cwd=ROOT, check=True,
            capture_output=True, text=True,
            env={**os.environ, "DATABASE_URL": db_url(base, DATABASES["100k"][0])}).stdout.strip().splitlines()[-1])

        basic_auth = basic(TILL_USER, TILL_PASSWORD)

        def measure(key: str, scenario: str, seconds: float, tag: str) -> dict:
            server = servers[key]
            app0, db0 = server.cpu(), tree_cpu_seconds(pg_pid)
            if scenario == "pgbench":
                result = run_pgbench(db_url(base, DATABASES[key][0]), scripts[key], seconds, args.workers, log_dir)
            else:
                kind, _, auth = scenario.partition("-")
                header = f"Bearer {tokens[key]}" if auth == "oauth" else basic_auth
                result = run_wrk(server.port, wrk_env(kind, facts[key], header, f"{tag}-{key}-{scenario}"), seconds,
                                 args.connections)
            app1, db1 = server.cpu(), tree_cpu_seconds(pg_pid)
            n = max(result["requests"], 1)
            result["app_cpu_ms"] = None if scenario == "pgbench" else (app1 - app0) * 1000 / n
            result["db_cpu_ms"] = (db1 - db0) * 1000 / n
            return result

        # Warm-up: every worker verifies the password once (PBKDF2), imports, plans, caches.
        for key, scenarios in plan.items():
            for scenario in scenarios:
                if scenario != "pgbench":
                    measure(key, scenario, 2, f"warm{os.getpid()}")
        if args.profile:
            profile(servers["100k"], wrk_env("issue", facts["100k"], basic_auth, "prof"), args.connections)

        # What a ratio compares runs close together (the machine's speed drifts within a run, by
        # up to 2x over minutes): list next to ping, bare next to the issue, Basic two runs from
        # OAuth2, the same scenario on another database at most 5 runs on (was up to 15).
        runs = sorted(((key, scenario) for key, scenarios in plan.items() for scenario in scenarios),
                      key=lambda run: (RUN_ORDER[run[1]][0], list(plan).index(run[0]), RUN_ORDER[run[1]][1]))
        results: dict[tuple[str, str], list[dict]] = {run: [] for run in runs}
        loads = []
        started = time.monotonic()
        groups: dict[int, list] = {}
        for run in runs:
            groups.setdefault(RUN_ORDER[run[1]][0], []).append(run)
        for round_ in range(args.rounds):
            tag = f"r{round_}p{os.getpid()}"
            if not args.slice:
                shift = (round_ * 3) % len(runs)
                order = runs[shift:] + runs[:shift]
                # Every other round backwards: of two neighbours (list and ping, Basic and OAuth2) each
                # runs first as often, so a machine slowing down or speeding up favours neither.
                for key, scenario in (order if round_ % 2 == 0 else order[::-1]):
                    results[(key, scenario)].append(measure(key, scenario, args.seconds, tag))
            else:
                # A group's runs (what its ratios compare, on every database) take turns in
                # slices of --slice seconds, A B C C B A A B C …, until each has had --seconds.
                order = [groups[g] for g in sorted(groups)]
                for members in order[round_ % len(order):] + order[:round_ % len(order)]:
                    members = members[round_ % len(members):] + members[:round_ % len(members)]
                    slices = {run: [] for run in members}
                    for k in range(max(1, round(args.seconds / args.slice))):
                        for key, scenario in (members if k % 2 == 0 else members[::-1]):
                            slices[(key, scenario)].append(measure(key, scenario, args.slice, f"{tag}s{k}"))
                    for run in members:
                        results[run].append(merge_slices(slices[run]))
            loads.append(Path("/proc/loadavg").read_text().split()[0])
            print(f"round {round_ + 1}/{args.rounds} done ({time.monotonic() - started:.0f} s, "
                  f"load {loads[-1]})", flush=True)
        rss = {key: [round(peak_rss_mib(pid)) for pid in server.workers] for key, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()

    report(plan, results, queries, rss, loads, args, facts)


def profile(server: Server, env: dict, connections: int) -> None:
    """py-spy one worker while wrk drives single issues (samples of the thread holding the GIL: where
    the worker's CPU goes); collapsed stacks to var/bench/issue-profile.txt."""
    worker = server.workers[0]
    out = ROOT / "var" / "bench" / "issue-profile.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker),
                            "--duration", "10", "--rate", "200", "--format", "raw", "--output", str(out),
                            "--nonblocking", "--gil"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    run_wrk(server.port, env, 12, connections)
    spy.wait(timeout=60)
    print(f"profile (collapsed stacks) in {out}; summary:", flush=True)
    subprocess.run([sys.executable, str(ROOT / "bench" / "profile_summary.py"), str(out), "--top", "20"])


def ratios_of(plan: dict, results: dict, rounds: int, ab: str | None = None) -> dict:  # noqa: C901
    """The ratios of ``results`` (per (database, scenario), one row per round, None for a round
    that did not run it): each the median of its per-round values (a ``Ratio``)."""
    def per_round(fn):
        values = []
        for i in range(rounds):
            try:
                values.append(fn(i))
            except (KeyError, IndexError, ZeroDivisionError, TypeError):
                pass
        return Ratio(median(values), values) if values else None

    def rps(key, scenario, i):
        return results[(key, scenario)][i]["rps"]

    main_ = "100k"

    def cpu(key, i, s):
        row = results[(key, s)][i]
        return (row["app_cpu_ms"] or 0) + row["db_cpu_ms"]

    ratios = {
        "issue / bare (engine overhead; target >= 0.60)": per_round(
            lambda i: rps(main_, "issue", i) / rps(main_, "bare", i)),
        "bare / pgbench (Django's share)": per_round(lambda i: rps(main_, "bare", i) / rps(main_, "pgbench", i)),
        "issue / pgbench": per_round(lambda i: rps(main_, "issue", i) / rps(main_, "pgbench", i)),
        "issue Basic / OAuth2 (target 0.90-1.10)": per_round(
            lambda i: rps(main_, "issue", i) / rps(main_, "issue-oauth", i)),
        "issue CPU/call OAuth2 / Basic": per_round(lambda i: cpu(main_, i, "issue-oauth") / cpu(main_, i, "issue")),
        "ping CPU/call OAuth2 / Basic": per_round(lambda i: cpu(main_, i, "ping-oauth") / cpu(main_, i, "ping")),
        "bulk Basic / OAuth2 (target 0.90-1.10)": per_round(
            lambda i: rps(main_, "bulk", i) / rps(main_, "bulk-oauth", i)),
        "bulk CPU/call OAuth2 / Basic": per_round(lambda i: cpu(main_, i, "bulk-oauth") / cpu(main_, i, "bulk")),
        "list Basic / OAuth2 (target 0.90-1.10)": per_round(
            lambda i: rps(main_, "list", i) / rps(main_, "list-oauth", i)),
        "list CPU/call OAuth2 / Basic": per_round(lambda i: cpu(main_, i, "list-oauth") / cpu(main_, i, "list")),
        "bulk units/s / single (target >= 4)": per_round(
            lambda i: BULK_REWARDS * rps(main_, "bulk", i) / rps(main_, "issue", i)),
        "list / ping (target >= 0.50)": per_round(lambda i: rps(main_, "list", i) / rps(main_, "ping", i)),
    }
    for scenario in ("issue", "bulk", "list", "bare", "ping", "pgbench"):
        # CPU per call (app + PostgreSQL) is what the machine's other tenants disturb least.
        if "10k" in plan and scenario in plan["10k"]:
            ratios[f"{scenario} CPU/call 100k / 10k (degradation; target <= 1.5)"] = per_round(
                lambda i, s=scenario: cpu(main_, i, s) / cpu("10k", i, s))
        if "100k-drained" in plan and scenario in plan["100k-drained"]:
            ratios[f"{scenario} CPU/call drained / full (degradation; target <= 1.5)"] = per_round(
                lambda i, s=scenario: cpu("100k-drained", i, s) / cpu(main_, i, s))
        if "10k" in plan and scenario in plan["10k"]:
            ratios[f"{scenario} req/s 10k / 100k (degradation; target <= 1.5)"] = per_round(
                lambda i, s=scenario: rps("10k", s, i) / rps(main_, s, i))
            ratios[f"{scenario} p95 100k / 10k (degradation; target <= 1.5)"] = per_round(
                lambda i, s=scenario: results[(main_, s)][i]["p95"] / results[("10k", s)][i]["p95"])
        if "100k-drained" in plan and scenario in plan["100k-drained"]:
            ratios[f"{scenario} req/s full / 90%-drained (degradation; target <= 1.5)"] = per_round(
                lambda i, s=scenario: rps(main_, s, i) / rps("100k-drained", s, i))
            ratios[f"{scenario} p95 drained / full (degradation; target <= 1.5)"] = per_round(
                lambda i, s=scenario: results[("100k-drained", s)][i]["p95"] / results[(main_, s)][i]["p95"])
    if AB_KEY in plan:
        ratios[f"issue req/s with {ab} / without"] = per_round(lambda i: rps(AB_KEY, "issue", i) / rps(main_, "issue", i))
        ratios[f"issue CPU/call with {ab} / without"] = per_round(lambda i: cpu(AB_KEY, i, "issue") / cpu(main_, i, "issue"))
        ratios[f"issue / bare with {ab}"] = per_round(lambda i: rps(AB_KEY, "issue", i) / rps(AB_KEY, "bare", i))
    ratios["list p95 ms (target < 100)"] = median_of(results, main_, "list", "p95") / 1000
    return ratios


def print_ratios(ratios: dict) -> None:
    print("\n## Ratios (median of the per-round ratios)\n")
    print("| ratio | value | by round (lowest–highest) |\n|---|---|---|")
    for name, value in ratios.items():
        rounds = getattr(value, "rounds", None)
        spread = f"{min(rounds):.2f}–{max(rounds):.2f}" if rounds else ""
        print(f"| {name} | {'n/a' if value is None else f'{value:.2f}'} | {spread} |")


def pool_runs(files: list[Path]) -> None:
    """Print the ratios over the rounds of several runs' raw results (var/bench/*.json)."""
    runs = [json.loads(path.read_text()) for path in files]
    plan: dict[str, list[str]] = {}
    for run in runs:
        for name in run["results"]:
            key, scenario = name.split("/", 1)
            if key != AB_KEY and scenario not in plan.setdefault(key, []):
                plan[key].append(scenario)
    results: dict[tuple[str, str], list] = {(k, s): [] for k, scenarios in plan.items() for s in scenarios}
    for run in runs:
        count = run["args"]["rounds"]
        for (key, scenario), rows in results.items():
            rows.extend(run["results"].get(f"{key}/{scenario}") or [None] * count)
    rounds = sum(run["args"]["rounds"] for run in runs)
    print(f"{len(runs)} runs, {rounds} rounds: " + ", ".join(
        f"{path.name} ({run['args']['rounds']} × {run['args']['seconds']:g} s, "
        f"{run['args'].get('worker_class', 'gthread')})" for path, run in zip(files, runs, strict=True)))
    print_ratios(ratios_of(plan, results, rounds))


def report(plan, results, queries, rss, loads, args, facts) -> None:  # noqa: C901, PLR0912, PLR0915
    def med(key, scenario, field):
        return median_of(results, key, scenario, field)

    print(f"\n## Results: medians of {args.rounds} rounds × {args.seconds:g} s; gunicorn {args.workers} {args.worker_class} "
          f"workers, wrk {args.connections} connections, pgbench {args.workers} clients; load average during the "
          f"rounds {', '.join(loads)} on {os.cpu_count()} cores\n")
    print("| database | scenario | req/s | p50 ms | p95 ms | p99 ms | app CPU ms/call | DB CPU ms/call | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, scenarios in plan.items():
        for scenario in scenarios:
            rows = results[(key, scenario)]
            bad = sum(r["s4xx"] + r["s5xx"] for r in rows)
            app = med(key, scenario, "app_cpu_ms")
            print(f"| {key} | {scenario} | {med(key, scenario, 'rps'):.0f} | {med(key, scenario, 'p50') / 1000:.1f} | "
                  f"{med(key, scenario, 'p95') / 1000:.1f} | {med(key, scenario, 'p99') / 1000:.1f} | "
                  f"{'-' if app is None else f'{app:.1f}'} | {med(key, scenario, 'db_cpu_ms'):.2f} | {bad} |")
    print(f"\nqueries per call (100k): {queries}")
    print(f"peak RSS per gunicorn worker (MiB): {rss}")

    main_ = "100k"
    ratios = ratios_of(plan, results, args.rounds, args.ab if AB_KEY in plan else None)
    print_ratios(ratios)
    issue_cpu = (med(main_, "issue", "app_cpu_ms") or 0) + med(main_, "issue", "db_cpu_ms")
    print(f"\nper core (100k): single issue {1000 / issue_cpu:.0f} calls per CPU-second (app + DB); "
          f"app alone {1000 / med(main_, 'issue', 'app_cpu_ms'):.0f}/s, DB alone "
          f"{1000 / med(main_, 'issue', 'db_cpu_ms'):.0f}/s; list app {1000 / med(main_, 'list', 'app_cpu_ms'):.0f}/s, "
          f"DB {1000 / med(main_, 'list', 'db_cpu_ms'):.0f}/s")
    out = ROOT / "var" / "bench" / f"{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "loads": loads, "queries": queries, "rss": rss,
                               "ratios": ratios,
                               "ratio_rounds": {n: getattr(v, "rounds", None) for n, v in ratios.items()},
                               "results": {f"{k}/{s}": v for (k, s), v in results.items()},
                               "facts": {k: {n: v for n, v in f.items() if n != "client_secret"}
                                         for k, f in facts.items()}}, indent=1))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
