"""App CPU, database CPU, queries and latency per issue call, against the bare-SQL baseline.

    scripts/pg_test_cluster.sh with .venv/bin/python bench/issue_cpu.py [-n 300] [--rounds 5] [--show-queries]
    scripts/pg_test_cluster.sh with .venv/bin/python bench/issue_cpu.py -n 300 --profile issue

(``--profile SCENARIO``: instead of the run, cProfile n calls in-process, in CPU time; with
ISSUE_CPU_PROFILE_OUT=FILE the raw stats are also written there for pstats.)

A quick, quiet measurement of the engine's own cost (docs/performance.md, "Queries per issue
call"), for before/after comparisons of engine changes; ``bench/run.sh`` remains the full
throughput bench. Needs DATABASE_URL to name a throwaway PostgreSQL cluster.

1. A database ``issue_cpu`` on the cluster (dropped first), migrated, with a small catalogue:
   one org, brand, till and till login (HTTP Basic), an OAuth2 API client, 200 customers each
   with a points account, one single-issue coupon reward on a pool of codes and ten bulk coupon
   rewards sharing a second pool (the shapes of bench/http_bench.py).
2. One gunicorn worker (gthread, 1 thread, DEBUG off, BENCH_VIEWS=1) on loopback.
3. One client in this process, keep-alive, one request at a time, in ``--rounds`` alternating
   rounds: single issue (Basic, OAuth2), bulk of 10 (Basic, OAuth2), benchsupport's bare issue
   (Basic, the baseline) and ping. Every issue carries a fresh requestId per reward.
4. Prints per scenario: app CPU ms per call (the worker process's CPU time over the calls),
   DB CPU ms per call (the PostgreSQL process tree), queries per call (Django's test client, in a
   child process, after a warm-up call), wall p50/p95 ms; then the ratios.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewards_site.settings.base")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 60)
os.environ["BENCH_VIEWS"] = "1"

from bench.http_bench import Server, bench_coupon_reward, postmaster_pid, tree_cpu_seconds  # noqa: E402

DB_NAME = "issue_cpu"
CUSTOMERS = 200
POOL = 50_000
BULK_REWARDS = 10
POINTS = Decimal(10)
TILL_USER, TILL_PASSWORD = "cpu_till", "cpu-pass-123"
SCENARIOS = ["ping", "bare", "issue", "issue-oauth", "bulk", "bulk-oauth"]


def load() -> dict:
    """Migrate and fill the database of DATABASE_URL; returns the ids the calls need."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apiclients.services import api_client_create
    from catalogue import models as cm
    from issuance import models as im
    from issuance.groups import API_GROUP

    call_command("migrate", verbosity=0)
    now = timezone.now()
    org = cm.Organisation.objects.create(name="cpu", allow_skip_validation=True)
    brand = cm.Brand.objects.create(org=org, name="BUKL")
    till = cm.Till.objects.create(org=org, code="t1")
    user = get_user_model().objects.create_user(TILL_USER, password=TILL_PASSWORD)
    cm.UserProfile.objects.create(user=user, org=org)
    user.groups.add(Group.objects.get(name=API_GROUP))
    till.users.add(user)
    customers = []
    for i in range(1, CUSTOMERS + 1):
        customer = cm.Customer(org=org, mobile=f"9{i:09d}")
        customer.save()
        customers.append(customer)
    im.PointsAccount.objects.bulk_create(
        im.PointsAccount(org=org, customer=c, opening_balance=Decimal(10**9), balance=Decimal(10**9))
        for c in customers
    )

    def coupon_reward(name: str, series) -> cm.Reward:
        return bench_coupon_reward(org=org, brand=brand, name=name, series=series, points=POINTS, now=now)

    pools = []
    for name in ("single", "bulk"):
        series = cm.CouponSeries.objects.create(org=org, name=f"cpu {name}",
                                                valid_till=now + datetime.timedelta(days=3650))
        cm.CouponCode.objects.bulk_create(
            (cm.CouponCode(series=series, code=f"{name[0].upper()}{i:09d}") for i in range(POOL)), batch_size=5000
        )
        pools.append(series)
    single = coupon_reward("cpu single", pools[0])
    bulk = [coupon_reward(f"cpu bulk {i}", pools[1]) for i in range(BULK_REWARDS)]
    client, secret = api_client_create(name="cpu", till=till, scopes=["rewards:issue", "rewards:read"])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {
        "org": org.pk, "brand": brand.pk, "till": till.pk, "customers": [c.pk for c in customers],
        "single_reward": single.pk, "single_series": pools[0].pk, "bulk_rewards": [r.pk for r in bulk],
        "client_id": client.application.client_id, "client_secret": secret,
    }


# ---------------------------------------------------------------- request shapes


SINGLE_PATH = "/api_gateway/rewards/core/v1/user/reward/{}/issue?username=t1&skip_validation=true"
BULK_PATH = "/api_gateway/rewards/core/v1/user/rewards/issue?username=t1&skip_validation=true"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def mobile(facts: dict, n: int) -> str:
    return f"9{(n % len(facts['customers'])) + 1:09d}"


def request_for(scenario: str, facts: dict, n: int) -> tuple[str, str, str | None]:
    """(method, path, body) of call ``n`` of a scenario."""
    kind = scenario.partition("-")[0]
    tag = uuid.uuid4().hex
    if kind == "ping":
        return "GET", "/bench/ping", None
    if kind == "bare":
        customer = facts["customers"][n % len(facts["customers"])]
        return "POST", "/bench/bare-issue", json.dumps({
            "customer": customer, "account": facts["accounts"][str(customer)], "series": facts["single_series"],
            "reward": facts["single_reward"], "org": facts["org"], "till": facts["till"], "brand": facts["brand"],
            "points": str(POINTS)})
    if kind == "issue":
        return "POST", SINGLE_PATH.format(facts["single_reward"]), json.dumps(
            {"mobile": mobile(facts, n), "brand": "BUKL", "requestId": tag})
    rewards = [{"rewardId": r, "quantity": 1, "requestId": f"{tag}-{i}"} for i, r in enumerate(facts["bulk_rewards"])]
    return "POST", BULK_PATH, json.dumps({"mobile": mobile(facts, n), "brand": "BUKL", "rewards": rewards})


# ---------------------------------------------------------------- queries per call (child process)


def count_queries(facts: dict, show: bool) -> dict:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    token = client.post("/oauth/token/", {"grant_type": "client_credentials", "scope": "rewards:issue rewards:read"},
                        HTTP_AUTHORIZATION=basic(facts["client_id"], facts["client_secret"])).json()["access_token"]
    headers = {"": basic(TILL_USER, TILL_PASSWORD), "oauth": f"Bearer {token}"}
    counts = {}
    for scenario in SCENARIOS:
        auth = headers[scenario.partition("-")[2]]

        def call(n, scenario=scenario, auth=auth):
            method, path, body = request_for(scenario, facts, n)
            if method == "GET":
                return client.get(path, HTTP_AUTHORIZATION=auth)
            return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=auth)

        assert call(1).status_code == 200, scenario  # warm: password check, caches
        with CaptureQueriesContext(connection) as ctx:
            response = call(2)
        assert response.status_code == 200, (scenario, response.content[:300])
        assert response.json()["status"]["code"] == 200, (scenario, response.content[:300])
        counts[scenario] = len(ctx.captured_queries)
        if show:
            print(f"--- {scenario}: {counts[scenario]} queries", file=sys.stderr)
            for q in ctx.captured_queries:
                print("   ", q["sql"][:160], file=sys.stderr)
    return counts


def profile_calls(facts: dict, scenario: str, count: int) -> None:
    """cProfile ``count`` calls of a scenario through Django's test client (in-process), in
    CPU time; prints the top functions by cumulative and by own time (stderr)."""
    import cProfile
    import pstats

    import django

    django.setup()
    from django.test import Client

    client = Client()
    auth = basic(TILL_USER, TILL_PASSWORD)
    if scenario.endswith("-oauth"):
        token = client.post("/oauth/token/", {"grant_type": "client_credentials", "scope": "rewards:issue"},
                            HTTP_AUTHORIZATION=basic(facts["client_id"], facts["client_secret"])).json()
        auth = f"Bearer {token['access_token']}"

    def call(n):
        method, path, body = request_for(scenario, facts, n)
        if method == "GET":
            return client.get(path, HTTP_AUTHORIZATION=auth)
        return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=auth)

    for n in range(5):
        assert call(n).status_code == 200
    profiler = cProfile.Profile(time.process_time)  # CPU time: waits on PostgreSQL do not count
    profiler.enable()
    for n in range(count):
        call(100 + n)
    profiler.disable()
    if os.environ.get("ISSUE_CPU_PROFILE_OUT"):
        profiler.dump_stats(os.environ["ISSUE_CPU_PROFILE_OUT"])
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("cumulative").print_stats(r"/(issuance|apiclients|rewards_site|benchsupport)/", 60)
    stats.sort_stats("tottime").print_stats(30)


# ---------------------------------------------------------------- the run


def oauth_token(port: int, facts: dict) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "rewards:issue rewards:read"})
    conn.request("POST", "/oauth/token/", body, {"Authorization": basic(facts["client_id"], facts["client_secret"]),
                                                 "Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    data = json.loads(response.read())
    assert response.status == 200, data
    return data["access_token"]


def run_calls(conn, scenario: str, facts: dict, auth: str, count: int, start: int) -> list[float]:
    walls = []
    for i in range(count):
        method, path, body = request_for(scenario, facts, start + i)
        headers = {"Authorization": auth}
        if body is not None:
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        data = response.read()
        walls.append(time.perf_counter() - t0)
        if response.status != 200 or (method == "POST" and json.loads(data)["status"]["code"] != 200):
            raise RuntimeError(f"{scenario}: HTTP {response.status} {data[:300]!r}")  # anything but all issued
    return walls


def proc_cpu(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:  # noqa: PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="single issues per scenario (bulk: n/10)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--show-queries", action="store_true", help="print each scenario's SQL (stderr)")
    parser.add_argument("--profile", metavar="SCENARIO",
                        help="instead of the run: cProfile n calls of SCENARIO in-process (stderr)")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load()), flush=True)
        return
    if args.queries:
        if args.profile:
            profile_calls(json.loads(args.queries), args.profile, args.n)
            return
        print(json.dumps(count_queries(json.loads(args.queries), args.show_queries)), flush=True)
        return

    import psycopg

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a throwaway PostgreSQL cluster (scripts/pg_test_cluster.sh with ...)")
    url = urllib.parse.urlsplit(base)._replace(path="/" + DB_NAME).geturl()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    facts = json.loads(subprocess.run([sys.executable, __file__, "--load"], env=env, check=True, capture_output=True,
                                      text=True).stdout.strip().splitlines()[-1])
    with psycopg.connect(url) as conn:
        facts["accounts"] = {str(c): a for c, a in conn.execute(
            "SELECT customer_id, id FROM issuance_pointsaccount WHERE customer_id IS NOT NULL")}
    print(f"loaded in {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.profile:
        subprocess.run([sys.executable, __file__, "--queries", json.dumps(facts), "--profile", args.profile,
                        "-n", str(args.n)], env={**env, "LOG_LEVEL": "WARNING"}, check=True)
        return
    queries_run = subprocess.run([sys.executable, __file__, "--queries", json.dumps(facts)]
                                 + (["--show-queries"] if args.show_queries else []),
                                 env=env, check=True, capture_output=True, text=True)
    if args.show_queries:
        print(queries_run.stderr, file=sys.stderr)
    queries = json.loads(queries_run.stdout.strip().splitlines()[-1])

    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    server = Server(url, 1, log_dir)
    pg_pid = postmaster_pid(base)
    try:
        (worker,) = server.workers
        auths = {"": basic(TILL_USER, TILL_PASSWORD), "oauth": f"Bearer {oauth_token(server.port, facts)}"}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        counts = {s: (args.n if s in ("ping", "bare", "issue", "issue-oauth") else max(args.n // 10, 1))
                  for s in SCENARIOS}
        for scenario in SCENARIOS:  # warm-up: password check, imports, caches
            run_calls(conn, scenario, facts, auths[scenario.partition("-")[2]], 5, 10_000)
        totals = {s: {"app": 0.0, "db": 0.0, "calls": 0, "walls": []} for s in SCENARIOS}
        loads = []
        for round_ in range(args.rounds):
            order = SCENARIOS[round_ % len(SCENARIOS):] + SCENARIOS[: round_ % len(SCENARIOS)]
            for scenario in order:
                n = max(counts[scenario] // args.rounds, 1)
                app0, db0 = proc_cpu(worker), tree_cpu_seconds(pg_pid)
                walls = run_calls(conn, scenario, facts, auths[scenario.partition("-")[2]], n, round_ * 1000)
                app1, db1 = proc_cpu(worker), tree_cpu_seconds(pg_pid)
                t = totals[scenario]
                t["app"] += app1 - app0
                t["db"] += db1 - db0
                t["calls"] += n
                t["walls"] += walls
            loads.append(os.getloadavg()[0])
    finally:
        server.stop()

    print(f"\nload average during the rounds: {', '.join(f'{v:.2f}' for v in loads)} on {os.cpu_count()} cores\n")
    print("| scenario | calls | queries/call | app CPU ms/call | DB CPU ms/call | wall p50 ms | wall p95 ms |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    for scenario in SCENARIOS:
        t = totals[scenario]
        rows[scenario] = {
            "app": t["app"] * 1000 / t["calls"], "db": t["db"] * 1000 / t["calls"],
            "p50": statistics.median(t["walls"]) * 1000, "p95": pct(t["walls"], 0.95) * 1000,
        }
        r = rows[scenario]
        print(f"| {scenario} | {t['calls']} | {queries[scenario]} | {r['app']:.2f} | {r['db']:.2f} | "
              f"{r['p50']:.1f} | {r['p95']:.1f} |")

    def cpu(s):
        return rows[s]["app"] + rows[s]["db"]

    print()
    print(f"issue / bare, CPU per call (app + DB) inverted (throughput estimate): {cpu('bare') / cpu('issue'):.2f}"
          f"   (app only: {rows['bare']['app'] / rows['issue']['app']:.2f}; wall p50: "
          f"{rows['bare']['p50'] / rows['issue']['p50']:.2f})")
    print(f"issue OAuth2 / Basic, CPU per call: {cpu('issue-oauth') / cpu('issue'):.2f}   "
          f"(queries {queries['issue-oauth']} vs {queries['issue']})")
    print(f"bulk of 10 units/s / single units/s (from CPU): {10 * cpu('issue') / cpu('bulk'):.2f}   "
          f"(OAuth2: {10 * cpu('issue-oauth') / cpu('bulk-oauth'):.2f})")


if __name__ == "__main__":
    main()
