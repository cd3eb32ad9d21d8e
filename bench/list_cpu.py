"""App CPU per list call against ping, in-process: a quick, quiet measure for before/after
comparisons of the list's code (docs/performance.md, "The list index").

    scripts/pg_test_cluster.sh with .venv/bin/python bench/list_cpu.py [--rewards 20000] [-n 400] [--rounds 3]
    scripts/pg_test_cluster.sh with .venv/bin/python bench/list_cpu.py --profile    # cProfile the list calls
    (LIST_CPU_PROFILE_OUT=FILE: the raw stats also to FILE; the profile times the process's CPU)

1. Migrates the PostgreSQL database of DATABASE_URL and loads bench/list_rewards.py's catalogue at
   ``--rewards`` rewards and customers (60 % in brand BUKL).
2. Calls, through Django's test client in this process (no HTTP server, no network), the bench's
   list call (bench/http_bench.py ``list_path``: VOUCHER,MILES, LIVE, 20-item page, HTTP Basic)
   for random customers and benchsupport's ping, in ``--rounds`` alternating rounds after 20
   warm-up calls each, and prints the process's CPU time per call (``time.process_time``: the
   app's side only; PostgreSQL's CPU is not counted), with ``LIST_INDEX`` on and off.
"""

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewards_site.settings.base")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 60)
os.environ["BENCH_VIEWS"] = "1"
os.environ["ALLOWED_HOSTS"] = "*"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rewards", type=int, default=20_000, help="rewards and customers loaded")
    parser.add_argument("-n", type=int, default=400, help="calls per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile n list calls instead (index on)")
    args = parser.parse_args()
    from bench import list_rewards

    client = list_rewards.in_process_client(args.rewards)
    from django.conf import settings

    from bench.http_bench import list_path

    rng = random.Random(1)
    calls = {
        "ping": lambda: client.get("/bench/ping"),
        "list": lambda: client.get(list_path(rng.randint(1, args.rewards))),
    }
    for call in calls.values():
        for _ in range(20):
            assert call().status_code == 200

    if args.profile:
        profile = cProfile.Profile(time.process_time)  # CPU, not wall: waits on PostgreSQL are not the app's
        profile.enable()
        for _ in range(args.n):
            calls["list"]()
        profile.disable()
        if os.environ.get("LIST_CPU_PROFILE_OUT"):  # raw stats for pstats
            profile.dump_stats(os.environ["LIST_CPU_PROFILE_OUT"])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        return

    per_call: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for index in (True, False):
            settings.LIST_INDEX = index
            scenarios = {"ping": calls["ping"], f"list ({'index' if index else 'database'})": calls["list"]}
            for name, call in scenarios.items():
                call()  # a warm-up call after switching
                start = time.process_time()
                for _ in range(args.n):
                    call()
                per_call.setdefault(name, []).append((time.process_time() - start) * 1000 / args.n)
    print(f"\n{args.rewards:,} rewards and customers; {args.rounds} rounds × {args.n} calls; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| call | app CPU ms per call (median of rounds) | rounds |\n|---|---|---|")
    for name, values in per_call.items():
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    ping = statistics.median(per_call["ping"])
    for source in ("index", "database"):
        print(f"ping / list ({source}), app CPU: {ping / statistics.median(per_call[f'list ({source})']):.2f}")


if __name__ == "__main__":
    main()
