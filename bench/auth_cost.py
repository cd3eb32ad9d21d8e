"""What HTTP Basic costs per request, with and without the verified-credentials cache.

Runs Django's production password hasher (PBKDF2, the default) in-process against an
in-memory SQLite database and times N authenticated API calls that hit a cheap 404
after authentication, once with the cache (the shipped design) and once with the cache
disabled (a full password hash per request, the naive design). Prints per-call
latency percentiles and the ratio. Usage:  .venv/bin/python bench/auth_cost.py [N]
"""

import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewards_site.settings.base")
os.environ["DATABASE_URL"] = "sqlite://:memory:"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def run(n: int, *, cached: bool) -> list[float]:
    from tests.conftest import basic_auth

    client = Client()
    header = basic_auth("bench_till", "bench-pass-123")
    timings = []
    for _ in range(n):
        if not cached:
            cache.clear()
        start = time.perf_counter()
        response = client.post("/api_gateway/rewards/core/v1/user/reward/999/issue?username=t1",
                               {"mobile": "1"}, content_type="application/json", HTTP_AUTHORIZATION=header)
        timings.append(time.perf_counter() - start)
        assert response.status_code in (403, 404), response.content
    return timings


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from catalogue.models import Organisation, Till, UserProfile
    from issuance.groups import API_GROUP

    org = Organisation.objects.create(name="bench", allow_skip_validation=True)
    user = get_user_model().objects.create_user("bench_till", password="bench-pass-123")
    UserProfile.objects.create(user=user, org=org)
    user.groups.add(Group.objects.get(name=API_GROUP))
    Till.objects.create(org=org, code="t1").users.add(user)
    print(f"hasher: {settings.PASSWORD_HASHERS[0].rsplit('.', 1)[-1]}, calls per round: {n}")
    naive = run(max(3, n // 4), cached=False)
    cache.clear()
    cached = run(n, cached=True)[1:]  # the first call verifies and fills the cache
    for name, t in (("hash every request", naive), ("verified-credentials cache", cached)):
        print(f"{name:28s} p50 {percentile(t, 50) * 1000:8.2f} ms  p95 {percentile(t, 95) * 1000:8.2f} ms  "
              f"mean {statistics.mean(t) * 1000:8.2f} ms  => {1 / statistics.mean(t):8.1f} calls/s/core")
    print(f"ratio (naive / cached, mean latency): {statistics.mean(naive) / statistics.mean(cached):.1f}x")


if __name__ == "__main__":
    main()
