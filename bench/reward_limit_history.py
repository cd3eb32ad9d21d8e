"""What a REWARD-level limit's history costs the list and the issue's limit check, read from
RewardUsage (the hourly sums PostgreSQL keeps) against read from every line in the window
(``LIMIT_REWARD_USAGE=false``, the way before), in the same run; and what keeping the sums
costs a write.

    scripts/pg_test_cluster.sh with .venv/bin/python bench/reward_limit_history.py \\
        [--customers 20000] [--lines 0,10000,100000,400000] [-n 200] [--rounds 3]

1. Migrates the PostgreSQL database of DATABASE_URL and loads bench/list_rewards.py's catalogue
   at ``--customers`` rewards and customers.
2. Puts two REWARD-level limits (all customers together: units per calendar month, value over
   a rolling 7 days) on the first reward of the bench's list page (bench/http_bench.py
   ``list_path``: every customer's page shows it).
3. For each figure of ``--lines``, adds lines of that reward (created over the last two days,
   all customers, counted statuses; one INSERT, the triggers summing them), VACUUM ANALYZE,
   then in ``--rounds`` alternating rounds, sums read and lines read: ``-n`` list calls for
   random customers through Django's test client (wall and process CPU per call) and ``-n``
   ``issuance.limits.limit_states`` calls of the two limits (what the engine runs under the
   reward's lock before issuing it).
4. What setting a REWARD-level limit on that history costs (its trigger recomputes the sums
   while holding the writers of lines): the first limit turned to CUSTOMER level and back, 3 times.
5. The write side: ``-n`` single-line INSERT transactions with the triggers on and off
   (``ALTER TABLE … DISABLE TRIGGER``), 2 × ``--rounds`` alternating rounds, of the limited reward (whose sums
   the triggers keep) and of a reward without a REWARD-level limit (the triggers only look).

Prints a markdown table of medians and the ratios lines / sums.
"""

import argparse
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewards_site.settings.base")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 60)
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["BENCH_VIEWS"] = "1"
os.environ["ALLOWED_HOSTS"] = "*"

TRIGGERS = ("issuance_rewardusage_insert", "issuance_rewardusage_update", "issuance_rewardusage_delete")
LINE_COLUMNS = ("redemption_type, requested_quantity, quantity, status, error_message, payment_mode, points_per_unit, "
                "total_points, held_points, needs_attention, created_at, updated_at, customer_id, issuance_id, org_id, "
                "reward_id, diagnostic, pending_units, planned_units")


def add_lines(cursor, reward, count: int, customers: int) -> None:
    """``count`` lines of ``reward`` over the last two days (ISSUED, some PARTIAL and PENDING),
    hanging off one issuance row of the bench's history (foreign keys checked as usual)."""
    cursor.execute("SELECT id FROM issuance_issuance ORDER BY id LIMIT 1")
    issuance = cursor.fetchone()[0]
    cursor.execute(
        f"INSERT INTO issuance_issuanceline ({LINE_COLUMNS}) "
        "SELECT %s, 2, CASE WHEN g %% 10 = 0 THEN 0 ELSE 1 + g %% 2 END, "
        "CASE WHEN g %% 10 = 0 THEN 'PENDING' WHEN g %% 7 = 0 THEN 'PARTIAL' ELSE 'ISSUED' END, '', 'POINTS', 10, "
        "CASE WHEN g %% 10 = 0 THEN 0 ELSE 10 END, CASE WHEN g %% 10 = 0 THEN 20 ELSE 0 END, false, "
        "now() - random() * interval '2 days', now(), 1 + g %% %s, %s, %s, %s, '', "
        "CASE WHEN g %% 10 = 0 THEN 2 ELSE 0 END, 2 FROM generate_series(1, %s) AS g",
        [reward.redemption_type, customers, issuance, reward.org_id, reward.pk, count],
    )


def per_call(fn, n: int) -> tuple[float, float]:
    """(wall ms, process CPU ms) per call of ``fn`` over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000, help="rewards and customers loaded")
    parser.add_argument("--lines", default="0,10000,100000,400000", help="lines of the limited reward, cumulative")
    parser.add_argument("-n", type=int, default=200, help="calls per measure and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from bench import list_rewards

    client = list_rewards.in_process_client(args.customers)
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from bench.http_bench import list_path
    from catalogue import models as cm
    from catalogue.choices import ConstraintKpi, ConstraintLevel, Frequency
    from issuance import limits

    reward = cm.Reward.objects.get(pk=client.get(list_path(1)).json()["rewardList"][0]["id"])
    cm.RewardConstraint.objects.filter(reward=reward).delete()
    constraints = [
        cm.RewardConstraint.objects.create(org=reward.org, reward=reward, level=ConstraintLevel.REWARD,
                                           kpi=ConstraintKpi.QUANTITY, frequency=Frequency.MONTHS,
                                           window_type="FIXED", limit_value=10**9),
        cm.RewardConstraint.objects.create(org=reward.org, reward=reward, level=ConstraintLevel.REWARD,
                                           kpi=ConstraintKpi.REDEMPTION_VALUE, frequency=Frequency.DAYS, interval=7,
                                           window_type="ROLLING", limit_value=10**12),
    ]
    rng = random.Random(3)

    def list_call():
        response = client.get(list_path(rng.randint(1, args.customers)))
        assert response.status_code == 200, response.content[:300]

    def limit_call():
        limits.limit_states(constraints, customer_id=1, org=reward.org, now=timezone.now())

    rows, had = [], 0
    for lines in (int(n) for n in args.lines.split(",")):
        with connection.cursor() as cursor:
            add_lines(cursor, reward, lines - had, args.customers)
            cursor.execute("VACUUM ANALYZE issuance_issuanceline")
            cursor.execute("VACUUM ANALYZE issuance_rewardusage")
        had = lines
        found = {}
        for round_ in range(args.rounds):
            for usage in ((True, False) if round_ % 2 == 0 else (False, True)):
                settings.LIMIT_REWARD_USAGE = usage
                consumed = [s.consumed for s in limits.limit_states(constraints, customer_id=1, org=reward.org,
                                                                    now=timezone.now())]
                found.setdefault(("consumed", usage), consumed)
                for name, fn in (("list", list_call), ("limit check", limit_call)):
                    fn()  # warm
                    wall, cpu = per_call(fn, args.n)
                    found.setdefault((name, usage), []).append((wall, cpu))
        assert found[("consumed", True)] == found[("consumed", False)], found  # the same answer either way
        for name in ("list", "limit check"):
            sums = [statistics.median(v[i] for v in found[(name, True)]) for i in (0, 1)]
            of_lines = [statistics.median(v[i] for v in found[(name, False)]) for i in (0, 1)]
            rows.append((lines, name, sums, of_lines))
        print(f"{lines:,} lines: consumed {found[('consumed', True)]}", flush=True)

    # What a new REWARD-level limit costs on this history: its trigger recomputes the reward's
    # sums with the writers of lines held (SHARE lock); timed as the limit turned to REWARD level.
    recompute = []
    for _ in range(3):
        cm.RewardConstraint.objects.filter(pk=constraints[0].pk).update(level=ConstraintLevel.CUSTOMER)
        started = time.perf_counter()
        cm.RewardConstraint.objects.filter(pk=constraints[0].pk).update(level=ConstraintLevel.REWARD)
        recompute.append((time.perf_counter() - started) * 1000)

    other = cm.Reward.objects.exclude(pk=reward.pk).exclude(constraints__level=ConstraintLevel.REWARD).first()

    def insert_one(of):
        def insert():
            with transaction.atomic(), connection.cursor() as cursor:
                add_lines(cursor, of, 1, args.customers)
        return insert

    writes = {}  # (the limited reward's sums disagree with its lines afterwards: a throwaway database)
    for round_ in range(2 * args.rounds):
        for on in ((True, False) if round_ % 2 == 0 else (False, True)):
            with connection.cursor() as cursor:
                for trigger in TRIGGERS:
                    cursor.execute(f"ALTER TABLE issuance_issuanceline {'ENABLE' if on else 'DISABLE'} TRIGGER {trigger}")
            for name, of in (("limited", reward), ("unlimited", other)):
                insert_one(of)()
                writes.setdefault((name, on), []).append(per_call(insert_one(of), args.n)[0])
    with connection.cursor() as cursor:
        for trigger in TRIGGERS:
            cursor.execute(f"ALTER TABLE issuance_issuanceline ENABLE TRIGGER {trigger}")
    print(f"\n{args.customers:,} customers and rewards; reward {reward.pk} with two REWARD-level limits; "
          f"{args.rounds} rounds × {args.n} calls; load average {os.getloadavg()[0]:.2f}\n")
    print("| lines in the window | call | sums: wall ms | sums: app CPU ms | lines: wall ms | lines: app CPU ms "
          "| wall lines / sums |\n|---|---|---|---|---|---|---|")
    for lines, name, sums, of_lines in rows:
        print(f"| {lines:,} | {name} | {sums[0]:.2f} | {sums[1]:.2f} | {of_lines[0]:.2f} | {of_lines[1]:.2f} "
              f"| {of_lines[0] / sums[0]:.1f} |")
    print(f"\na REWARD-level limit set on the reward with its {had:,} lines (the sums recomputed, writers of "
          f"lines held): {', '.join(f'{v:.0f}' for v in recompute)} ms")
    for name in ("limited", "unlimited"):
        on, off = statistics.median(writes[(name, True)]), statistics.median(writes[(name, False)])
        print(f"one-line INSERT transaction of a reward {'with' if name == 'limited' else 'without'} a REWARD-level "
              f"limit, wall ms: triggers on {on:.3f}, off {off:.3f} (on / off {on / off:.2f}; rounds "
              f"{', '.join(f'{v:.3f}' for v in writes[(name, True)])} / "
              f"{', '.join(f'{v:.3f}' for v in writes[(name, False)])})")


if __name__ == "__main__":
    main()
