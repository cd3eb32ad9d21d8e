"""Latency of the list API over real HTTP on a catalogue of 100,000 rewards and 100,000 customers.

    scripts/pg_test_cluster.sh with .venv/bin/python bench/list_rewards.py [--requests N] [--explain]

1. Migrates the PostgreSQL database named by DATABASE_URL (it refuses anything else) and
   loads, with COPY: 100,000 rewards (60 % in brand BUKL, 10 % in each of four others)
   with categories, groups, images, videos, payment configs, language content, limits and
   targeting (segments, card series, labels, tiers), and 100,000 customers with segment
   memberships, cards, labels, tiers and an issue history. Then VACUUM ANALYZE.
2. Starts the app in a child process under a small WSGI server on 127.0.0.1: the standard
   library's wsgiref server with a fixed pool of 4 worker threads (persistent threads keep
   their database connection, as gunicorn's gthread workers do; ``runserver`` starts a
   thread, hence a new connection, per request, which would measure connection setup).
   DEBUG is off, CONN_MAX_AGE 60. A later task switches to gunicorn.
3. Times, one request at a time, a bounded loop of typical filtered calls (20-item pages)
   for random customers, plus a baseline (an authenticated call refused right after the
   permission check: 15006), then the same mix from 4 concurrent clients. Prints
   p50/p95/p99 per call and overall, and the machine's load average (other processes on
   the machine skew the figures). All of it twice, in the same run: from the list index
   (catalogue/list_index.py, the default; plus the first call after a catalogue write, which
   rebuilds the index) and from the database (``LIST_INDEX=false``), with the ratio of their
   median CPU per call.
4. With ``--explain``: EXPLAIN (ANALYZE, BUFFERS) of the count and page queries of the
   default call and of a price call, for customer 1, before the timed runs.

The rewards are written with COPY, which bypasses the models' save(): the loader refreshes
the listing cache (Reward.list_points / list_cash / targeting) of every reward with one
UPDATE at the end (catalogue.services.reward_listing_refresh), as the importer does.
"""

import argparse
import contextlib
import datetime
import http.client
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from decimal import Decimal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewards_site.settings.base")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 60)

REWARDS = 100_000
CUSTOMERS = 100_000
BRANDS = ["BUKL", "B2", "B3", "B4", "B5"]
BRAND_WEIGHTS = [60, 10, 10, 10, 10]
TILL_USER, TILL_PASSWORD = "bench_till", "bench-pass-123"
WORKER_THREADS = 4


# ---------------------------------------------------------------- loading


def copy_rows(model, fields: list[str], rows) -> int:
    """COPY ``rows`` (tuples in ``fields`` order) into ``model``'s table."""
    from django.db import connection

    columns = ", ".join(model._meta.get_field(name).column for name in fields)
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def reset_sequences(*models) -> None:
    from django.core.management.color import no_style
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(sql)


def load(seed: int = 7) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.utils import timezone

    from catalogue import models as cm
    from catalogue.choices import ConstraintLevel, Frequency, MediaKind, PaymentMode, RedemptionType, TargetingKind
    from catalogue.services import reward_listing_refresh
    from issuance import models as im
    from issuance.groups import API_GROUP

    rng = random.Random(seed)
    now = timezone.now()
    started = time.perf_counter()

    org = cm.Organisation.objects.create(name="bench", allow_skip_validation=True)
    user = get_user_model().objects.create_user(TILL_USER, password=TILL_PASSWORD)
    cm.UserProfile.objects.create(user=user, org=org)
    user.groups.add(Group.objects.get(name=API_GROUP))
    till = cm.Till.objects.create(org=org, code="t1")
    till.users.add(user)
    brands = [cm.Brand.objects.create(org=org, name=name) for name in BRANDS]
    categories = [cm.Category.objects.create(org=org, name=f"cat{i}") for i in range(30)]
    groups = [cm.RewardGroup.objects.create(org=org, name=f"group{i}", rank=i) for i in range(12)]
    labels = [cm.Label.objects.create(org=org, name=f"label{i}") for i in range(10)]
    series = [cm.CardSeries.objects.create(org=org, code=f"CS{i}") for i in range(5)]
    vendors = [cm.Vendor.objects.create(org=org, name=f"vendor{i}") for i in range(8)]
    partitions = []
    for s in range(10):
        segment = cm.Segment.objects.create(org=org, name=f"seg{s}")
        partitions += [cm.Partition.objects.create(segment=segment, name=f"p{p}") for p in range(4)]
    program = cm.Program.objects.create(org=org, name="Loyalty")
    tiers = [cm.Tier.objects.create(program=program, name=n, serial=i) for i, n in enumerate(["Blue", "Silver", "Gold"])]
    for rt in (RedemptionType.VOUCHER, RedemptionType.MILES, RedemptionType.GIFT_CARD):
        cm.RewardConstraint.objects.create(org=org, redemption_type=rt, level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
                                           frequency=Frequency.MONTHS, limit_value=10)

    types = list(RedemptionType.values)
    reward_rows, targets = [], {"segments": [], "cards": [], "labels": [], "tiers": []}
    for rid in range(1, REWARDS + 1):
        roll = rng.random()
        if roll < 0.2:  # ended
            start = now - datetime.timedelta(days=rng.randint(60, 700))
            end = now - datetime.timedelta(days=rng.randint(1, 59))
        elif roll < 0.3:  # upcoming
            start = now + datetime.timedelta(days=rng.randint(1, 60))
            end = start + datetime.timedelta(days=rng.randint(10, 365))
        else:
            start = now - datetime.timedelta(days=rng.randint(1, 700))
            end = now + datetime.timedelta(days=rng.randint(1, 700))
        brand = rng.choices(brands, BRAND_WEIGHTS)[0]
        vendor = rng.choice(vendors).pk if rng.random() < 0.3 else None
        reward_rows.append((
            rid, org.pk, brand.pk, f"Reward {rid}", "A bench reward", rng.choice(types), rng.random() < 0.9, start, end,
            rng.randint(0, 10), rng.randint(0, 100), Decimal(rng.choice([0, 50, 100, 250, 500, 750, 1000, 2000])),
            program.pk, "", "", None, f"https://img.example.com/{rid}.png", None, "", None, "", vendor, "{}",
            now - datetime.timedelta(days=rng.uniform(0, 730)), now, TargetingKind.NONE,  # targeting: refreshed below
        ))
        kind = rng.random()
        if kind < 0.15:
            for p in rng.sample(partitions, 2):
                targets["segments"].append((rid, p.pk))
        elif kind < 0.20:
            targets["cards"].append((rid, rng.choice(series).pk))
        elif kind < 0.25:
            targets["labels"].append((rid, rng.choice(labels).pk))
        elif kind < 0.30:
            targets["tiers"].append((rid, rng.choice(tiers[1:]).pk))
    copy_rows(cm.Reward, ["id", "org", "brand", "name", "description", "redemption_type", "enabled", "start_time",
                          "end_time", "priority", "rank", "intouch_points", "program", "owner_type", "owner_id",
                          "image_id", "image_url", "thumbnail_id", "thumbnail_url", "terms_id", "terms_url", "vendor",
                          "custom_fields", "created_at", "updated_at", "targeting"], reward_rows)
    del reward_rows
    ids = range(1, REWARDS + 1)
    copy_rows(cm.RewardSegmentTarget, ["reward", "partition"], targets["segments"])
    copy_rows(cm.Reward.card_series.through, ["reward", "cardseries"], targets["cards"])
    copy_rows(cm.Reward.labels.through, ["reward", "label"], targets["labels"])
    copy_rows(cm.Reward.target_tiers.through, ["reward", "tier"], targets["tiers"])
    copy_rows(cm.Reward.categories.through, ["reward", "category"],
              ((r, c.pk) for r in ids for c in rng.sample(categories, rng.randint(1, 2))))
    copy_rows(cm.Reward.groups.through, ["reward", "rewardgroup"],
              ((r, rng.choice(groups).pk) for r in ids if rng.random() < 0.5))
    copy_rows(cm.RewardMedia, ["reward", "kind", "name", "alt_text", "file_id", "url", "is_external", "position"],
              ((r, MediaKind.IMAGE if i else MediaKind.VIDEO, f"m{i}", "", None, f"https://m.example.com/{r}/{i}",
                True, i) for r in ids for i in range(rng.randint(1, 3))))
    copy_rows(cm.RewardLanguageContent, ["reward", "language", "content", "is_enabled", "default_value",
                                         "is_mandatory"], ((r, "en", "<p>x</p>", True, "x", False) for r in ids))

    def configs():
        for r in ids:
            roll = rng.random()
            points = Decimal(rng.choice([100, 250, 500, 750, 900, 1000, 1500, 3000]))
            if roll < 0.55:
                yield (r, PaymentMode.POINTS, points, None, None)
            elif roll < 0.75:
                yield (r, PaymentMode.POINTS, points, None, None)
                yield (r, PaymentMode.POINTS_CASH, points / 2, Decimal(rng.choice([50, 100, 200, 400])), None)
            elif roll < 0.85:
                yield (r, PaymentMode.CASH, None, Decimal(rng.choice([100, 300, 600])), None)
            elif roll < 0.90:
                yield (r, PaymentMode.FREE, None, None, None)
            # else: no config, priced by intouch_points

    copy_rows(cm.PaymentConfig, ["reward", "mode", "points", "cash_amount", "conversion_ratio"], configs())
    copy_rows(cm.RewardConstraint, ["org", "reward", "redemption_type", "level", "kpi", "frequency", "interval",
                                    "window_type", "cycle_start", "week_start_day", "limit_value", "is_active"],
              ((org.pk, r, "", rng.choice(["CUSTOMER", "REWARD"]), "QUANTITY", "DAYS", 1, "FIXED", None, "MONDAY",
                Decimal(5), True) for r in ids if rng.random() < 0.05))
    # COPY bypassed save(): one UPDATE fills every reward's listing cache (prices, targeting).
    reward_listing_refresh(rewards=cm.Reward.objects.filter(org=org))

    copy_rows(cm.Customer, ["id", "org", "mobile", "email", "external_id", "primary_value", "first_name", "last_name",
                            "points_redeemable", "created_at"],
              ((c, org.pk, f"9{c:09d}", f"c{c}@example.com", f"ext{c}", f"9{c:09d}", "Bench", f"C{c}", True, now)
               for c in range(1, CUSTOMERS + 1)))
    customers = range(1, CUSTOMERS + 1)
    copy_rows(cm.SegmentMembership, ["customer", "partition"],
              ((c, p.pk) for c in customers for p in rng.sample(partitions, rng.randint(0, 3))))
    copy_rows(cm.Card, ["series", "customer", "number", "status", "expires_at"],
              ((rng.choice(series).pk, c, f"{c:012d}", "ACTIVE", None) for c in customers if rng.random() < 0.3))
    copy_rows(cm.CustomerLabel, ["customer", "label", "status"],
              ((c, rng.choice(labels).pk, "ACTIVE") for c in customers if rng.random() < 0.2))
    copy_rows(cm.ProgramMembership, ["customer", "program", "tier"],
              ((c, program.pk, rng.choice(tiers).pk) for c in customers if rng.random() < 0.5))

    # Issue history: 20,000 customers (all of a smaller load) with an account, one issue call and
    # two lines each.
    history = range(1, min(20_000, CUSTOMERS) + 1)
    copy_rows(im.PointsAccount, ["id", "org", "customer", "opening_balance", "balance", "held", "updated_at"],
              ((c, org.pk, c, Decimal(10000), Decimal(10000), Decimal(0), now) for c in history))
    copy_rows(im.Issuance, ["id", "org", "till", "brand", "customer", "account", "group_loyalty_redemption", "actor",
                            "channel", "owner_type", "reason", "transaction_number", "notes", "event_log_id",
                            "status", "response_code", "created_at"],
              ((c, org.pk, till.pk, brands[0].pk, c, c, False, user.pk, "API", "", "", "", "", "", "SUCCESS", 200,
                now - datetime.timedelta(days=rng.uniform(0, 90))) for c in history))
    line_fields = {
        "issuance": None, "org": org.pk, "customer": None, "reward": None, "redemption_type": None,
        "requested_quantity": 1, "quantity": 1, "planned_units": 1, "status": "ISSUED", "error_message": "",
        "payment_mode": "POINTS", "points_per_unit": Decimal(100), "total_points": Decimal(100),
        "held_points": Decimal(0), "pending_units": 0, "needs_attention": False, "diagnostic": "",
        "created_at": None, "updated_at": now,
    }
    existing = {f.name for f in im.IssuanceLine._meta.get_fields()}
    line_fields = {k: v for k, v in line_fields.items() if k in existing}
    redemption_types = dict(cm.Reward.objects.values_list("id", "redemption_type"))

    def lines():
        for c in history:
            for _ in range(2):
                r = rng.randint(1, REWARDS)
                values = {**line_fields, "issuance": c, "customer": c, "reward": r,
                          "redemption_type": redemption_types[r],
                          "created_at": now - datetime.timedelta(days=rng.uniform(0, 90))}
                yield tuple(values.values())

    copy_rows(im.IssuanceLine, list(line_fields), lines())
    reset_sequences(cm.Reward, cm.Customer, im.PointsAccount, im.Issuance, im.IssuanceLine)
    # VACUUM as well: the refresh above rewrote every reward row, and a steady-state catalogue
    # has its visibility map set by autovacuum (which a bulk load or rewrite of this size
    # triggers within a minute), so the list's count can be an index-only scan.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    bukl = cm.Reward.objects.filter(brand=brands[0]).count()
    return {"seconds": time.perf_counter() - started, "bukl_rewards": bukl}


# ---------------------------------------------------------------- the server (child process)


def serve(port: int) -> None:
    import concurrent.futures
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    import logging

    logging.disable(logging.WARNING)  # no access log lines, no warning per 4xx (the baseline)
    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class PooledWSGIServer(WSGIServer):
        """wsgiref with a fixed pool of worker threads (each keeps its DB connection)."""

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=WORKER_THREADS)

        def process_request(self, request, client_address):
            self.pool.submit(self._work, request, client_address)

        def _work(self, request, client_address):
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    server = PooledWSGIServer(("127.0.0.1", port), QuietHandler)
    server.request_queue_size = 64
    server.set_app(timed(get_wsgi_application()))
    print("ready", flush=True)
    server.serve_forever()


def timed(app):
    """The WSGI app, adding two response headers: the request thread's CPU time (the app's
    own work: Django, DRF, psycopg's client side, JSON) and the wall time spent in database
    calls. On a shared machine these separate what the code costs from waiting for a CPU."""
    from django.db import connection

    def wrapped(environ, start_response):
        db_seconds = 0.0
        cpu_start = time.thread_time()

        def count_db(execute, sql, params, many, context):
            nonlocal db_seconds
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                db_seconds += time.perf_counter() - started

        def start(status, headers, exc_info=None):
            # Called once the response is built (Django renders before starting the response).
            headers.append(("X-Bench-App-CPU-ms", f"{(time.thread_time() - cpu_start) * 1000:.2f}"))
            headers.append(("X-Bench-DB-ms", f"{db_seconds * 1000:.2f}"))
            return start_response(status, headers, exc_info)

        with connection.execute_wrapper(count_db):
            return app(environ, start)

    return wrapped


# ---------------------------------------------------------------- the client


def percentile(values, q):
    """Nearest-rank percentile."""
    values = sorted(values)
    return values[min(len(values), max(1, math.ceil(q / 100 * len(values)))) - 1]


def in_process_client(size: int):
    """For the in-process benches (bench/list_cpu.py, bench/reward_limit_history.py): refuse any
    DATABASE_URL but PostgreSQL's, set Django up, migrate, load the catalogue at ``size``
    rewards and customers, and return a test client signed in as the bench till (HTTP Basic)."""
    global REWARDS, CUSTOMERS
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a throwaway PostgreSQL database (scripts/pg_test_cluster.sh with …)")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    REWARDS = CUSTOMERS = size
    load()
    return Client(HTTP_AUTHORIZATION=auth_header())


def auth_header() -> str:
    import base64

    return "Basic " + base64.b64encode(f"{TILL_USER}:{TILL_PASSWORD}".encode()).decode()


class Sample(float):
    """A request's wall time (seconds) carrying the server's app CPU and DB time (ms)."""

    app_cpu_ms: float
    db_ms: float


def call(port: int, path: str) -> tuple[Sample, int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": auth_header()})
    response = connection.getresponse()
    body = response.read()
    sample = Sample(time.perf_counter() - start)
    sample.app_cpu_ms = float(response.getheader("X-Bench-App-CPU-ms") or "nan")
    sample.db_ms = float(response.getheader("X-Bench-DB-ms") or "nan")
    connection.close()
    return sample, response.status, body


SCENARIOS = {
    "baseline: auth + permission, then 15006": ("", {}),
    "default (newest first)": ("BUKL", {}),
    "redemptionType=VOUCHER,MILES&status=LIVE": ("BUKL", {"redemptionType": "VOUCHER,MILES", "status": "LIVE"}),
    "category=cat3&sortBy=points": ("BUKL", {"category": "cat3", "sortBy": "points"}),
    "min/maxPoints 500-1000, sortBy=points DESC": ("BUKL", {"minPoints": 500, "maxPoints": 1000, "sortBy": "points",
                                                              "orderBy": "DESC"}),
    "the page's example (7 filters, sortBy=endDate)": ("BUKL", {
        "redemptionType": "VENDOR_ONLY_REWARD,MILES", "activationStatus": "ENABLED", "minPoints": 750,
        "maxPoints": 1000, "minCash": 100, "maxCash": 500, "status": "UPCOMING", "sortBy": "endDate",
        "createdOnDaysAgo": 4}),
    "groupName=group3&sortBy=endDate&orderBy=ASC": ("BUKL", {"groupName": "group3", "sortBy": "endDate",
                                                             "orderBy": "ASC"}),
    "includeExpired=true&sortBy=startDate, page 50": ("BUKL", {"includeExpired": "true", "sortBy": "startDate",
                                                               "page": 50}),
    "vendorId=1,2&label=1": ("BUKL", {"vendorId": "1,2", "label": "1"}),
    "small brand B3, default": ("B3", {}),
}
PRICE_SCENARIOS = ("category=cat3&sortBy=points", "min/maxPoints 500-1000, sortBy=points DESC",
                   "the page's example (7 filters, sortBy=endDate)")


def path_for(brand: str, params: dict, customer_id: int | None) -> str:
    query = dict(params)
    if brand:
        query = {"userId": customer_id, **query}
    return f"/api_gateway/rewards/core/v1/user/reward/brand/{brand or 'BUKL'}?" + urllib.parse.urlencode(query)


def run_sequential(port: int, requests: int, rng: random.Random, scenarios: dict) -> dict[str, list[float]]:
    timings = {}
    for name, (brand, params) in scenarios.items():
        for _ in range(5):  # warm-up: caches, plans
            call(port, path_for(brand, params, rng.randint(1, CUSTOMERS)))
        samples = []
        for _ in range(requests):
            elapsed, status, body = call(port, path_for(brand, params, rng.randint(1, CUSTOMERS)))
            expected = 400 if not brand else 200
            assert status == expected, (name, status, body[:300])
            samples.append(elapsed)
        timings[name] = samples
    return timings


def rebuilds(port: int, rng: random.Random, times: int = 10) -> list[Sample]:
    """The default call right after a catalogue write (a brand saved: the catalogue version
    moves, catalogue/list_index.py builds BUKL's index and renders the page again)."""
    from catalogue.models import Brand

    samples = []
    for _ in range(times):
        Brand.objects.filter(name="B5").update(name="B5")
        elapsed, status, _ = call(port, path_for("BUKL", {}, rng.randint(1, CUSTOMERS)))
        assert status == 200
        samples.append(elapsed)
    return samples


def run_concurrent(port: int, clients: int, per_client: int, seed: int) -> tuple[list[float], float]:
    mix = [s for s in SCENARIOS.values() if s[0]]
    samples: list[float] = []
    lock = threading.Lock()

    def worker(i: int):
        rng = random.Random(seed + i)
        mine = []
        for _ in range(per_client):
            brand, params = rng.choice(mix)
            elapsed, status, _ = call(port, path_for(brand, params, rng.randint(1, CUSTOMERS)))
            assert status == 200
            mine.append(elapsed)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples, time.perf_counter() - start


def line(name: str, samples: list[Sample]) -> str:
    ms = [s * 1000 for s in samples]
    app = statistics.median(s.app_cpu_ms for s in samples)
    db = statistics.median(s.db_ms for s in samples)
    return (f"| {name} | {percentile(ms, 50):.1f} | {percentile(ms, 95):.1f} | {percentile(ms, 99):.1f} | "
            f"{statistics.mean(ms):.1f} | {app:.1f} | {db:.1f} | {len(ms)} |")


def explain(brand_name: str, params: dict) -> None:
    """EXPLAIN ANALYZE of the count and page queries of one call (customer 1)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from catalogue.filters import RewardFilterSet
    from catalogue.models import Brand, Customer
    from catalogue.selectors import PageRequest, reward_page, rewards_available_to

    brand = Brand.objects.get(name=brand_name)
    customer = Customer.objects.get(pk=1)
    filterset = RewardFilterSet(params, now=timezone.now())
    assert filterset.is_valid(), filterset.errors
    qs = filterset.filter_queryset(rewards_available_to(customer=customer, brand=brand))
    with CaptureQueriesContext(connection) as ctx:
        reward_page(qs, request=PageRequest(page=1, size=20, unpaged_ceiling=1000))
    count = next(q["sql"] for q in ctx.captured_queries if "COUNT(*)" in q["sql"])
    page = next(q["sql"] for q in ctx.captured_queries if "LIMIT 20" in q["sql"])
    print(f"-- {brand_name} {params or 'default'}: count and page (jit is off for the app's connections)")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off", "the settings turn JIT off (rewards_site/settings/base.py)"
        for sql in (count, page):
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            print("\n".join(row[0] for row in cursor.fetchall()), "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per scenario")
    parser.add_argument("--explain", action="store_true", help="print query plans of the default and a price call")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a throwaway PostgreSQL database "
                 "(scripts/pg_test_cluster.sh with .venv/bin/python bench/list_rewards.py)")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from catalogue.models import Organisation

    if Organisation.objects.filter(name="bench").exists():
        print("the bench data is already loaded: reusing it")
    else:
        facts = load()
        print(f"loaded {REWARDS:,} rewards ({facts['bukl_rewards']:,} in BUKL) and {CUSTOMERS:,} customers "
              f"in {facts['seconds']:.0f} s")
    if args.explain:
        explain("BUKL", {})
        explain("BUKL", SCENARIOS["min/maxPoints 500-1000, sortBy=points DESC"][1])
    from django.db import connections

    connections.close_all()
    port = args.port or 18000 + os.getpid() % 1000
    rng = random.Random(11)
    every: dict[str, list[Sample]] = {}
    for index in ("true", "false"):
        label = "from the list index" if index == "true" else "from the database (LIST_INDEX=false)"
        with running_server(port, LIST_INDEX=index):
            print(f"\n### {label}\n\nsequential, {args.requests} timed requests per call, random customers, "
                  f"20-item pages (server: wsgiref + {WORKER_THREADS} threads, DEBUG off); {load_average()}\n")
            print(HEADER)
            timings = run_sequential(port, args.requests, rng, SCENARIOS)
            for name, samples in timings.items():
                print(line(name, samples))
            every_list_call = [s for name, samples in timings.items() if not name.startswith("baseline")
                               for s in samples]
            every[index] = every_list_call
            print(line("**all list calls**", every_list_call))
            no_price = [s for name, samples in timings.items()
                        if not name.startswith("baseline") and name not in PRICE_SCENARIOS for s in samples]
            print(line("**list calls without a price filter or sort**", no_price))
            if index == "true":
                print("\n" + HEADER)
                print(line("first call after a catalogue write (index rebuilt)", rebuilds(port, rng)))
            samples, wall = run_concurrent(port, clients=4, per_client=max(25, args.requests // 2), seed=5)
            print(f"\n4 concurrent clients, the list calls mixed: {len(samples) / wall:.1f} requests/s; "
                  f"{load_average()}\n")
            print(HEADER)
            print(line("mixed list calls, 4 clients", samples))
    ratio = statistics.median(s.app_cpu_ms + s.db_ms for s in every["false"]) / statistics.median(
        s.app_cpu_ms + s.db_ms for s in every["true"])
    print(f"\nall list calls, median app CPU + DB ms, database / index: {ratio:.1f}")
    print(f"\ndone; {load_average()}")


HEADER = ("| call | p50 ms | p95 ms | p99 ms | mean ms | app CPU ms (median) | DB ms (median) | n |\n"
          "|---|---|---|---|---|---|---|---|")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} CPUs"


@contextlib.contextmanager
def running_server(port: int, **env):
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **env})
    try:
        assert server.stdout.readline().strip() == "ready", "server did not start"
        call(port, path_for("", {}, None))  # verifies the password once (PBKDF2), then it is cached
        yield server
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
