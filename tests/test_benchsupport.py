"""The bench-only baselines (benchsupport/, docs/performance.md): absent unless BENCH_VIEWS is on,
and the bare issue SQL still matches the schema (a migration that breaks it fails here, not in
the middle of a bench run)."""

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings

from benchsupport.bare_issue import STATEMENTS, pgbench_script
from catalogue import models as cm
from issuance import ledger
from issuance.models import IssuanceLine, IssuedUnit, LedgerEntry, PointsAccount
from tests import factories as f


@pytest.mark.django_db
def test_bench_views_are_not_served_by_default(api):
    assert api.get("/bench/ping").status_code == 404
    assert api.post("/bench/bare-issue", {}, format="json").status_code == 404


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the bare SQL is PostgreSQL's (SKIP LOCKED, RETURNING)")
@override_settings(ROOT_URLCONF="benchsupport.urls")
def test_bare_issue_takes_a_code_debits_and_keeps_the_ledger(api, api_user, org, brand, customer, account):
    series = f.CouponSeriesFactory(org=org)
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=c) for c in ("B2", "B1"))
    reward = f.RewardFactory(brand=brand, coupon_series=series)
    till = cm.Till.objects.get(code="till1")
    body = {"customer": customer.pk, "account": account.pk, "series": series.pk, "reward": reward.pk,
            "org": org.pk, "till": till.pk, "brand": brand.pk, "points": "10"}

    assert api.get("/ping").json() == {"status": {"success": True, "code": 200, "message": "OK"}}
    response = api.post("/bare-issue", body, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["couponCode"] == "B1"  # the engine's order: the first free code
    line = IssuanceLine.objects.get(pk=response.json()["transactionId"])
    assert (line.quantity, line.total_points, line.status) == (1, Decimal("10"), "ISSUED")
    assert IssuedUnit.objects.get(line=line).coupon_code == "B1"
    assert LedgerEntry.objects.get(line=line).amount == Decimal("-10")
    assert PointsAccount.objects.get(pk=account.pk).balance == Decimal("99990")
    assert list(cm.CouponCode.objects.values_list("code", flat=True)) == ["B2"]
    assert ledger.accounts_check_all() == []
    api.post("/bare-issue", body, format="json")
    empty = api.post("/bare-issue", body, format="json")
    assert empty.status_code == 422 and json.loads(empty.content)["status"]["code"] == 8004


def test_pgbench_script_has_every_statement_in_one_transaction():
    script = pgbench_script(customers=10, series=1, reward=2, org=3, till=4, brand=5, actor=6, points=Decimal("10"))
    lines = script.splitlines()
    assert lines[0] == "\\set customer random(1, 10)"
    assert lines.count("BEGIN;") == 1 and lines[-1] == "COMMIT;"
    assert len([x for x in lines if not x.startswith("\\set")]) == len(STATEMENTS) + 2
    assert "':code'" in script and "%(" not in script


def test_slices_merge_into_one_measurement():
    from benchsupport.slices import grid_of, merge, mixed_percentile

    fast = list(range(1000, 2000))  # 1,000 calls of 1.000-1.999 ms
    slow = list(range(10000, 10500))  # 500 calls of 10.0-10.5 ms
    a = {"requests": 1000, "rps": 1000.0, "s2xx": 1000, "s4xx": 0, "s5xx": 0, "errors": 0,
         "app_cpu_ms": 1.0, "db_cpu_ms": 0.5, "grid": grid_of(fast)}
    b = {"requests": 500, "rps": 250.0, "s2xx": 499, "s4xx": 1, "s5xx": 0, "errors": 0,
         "app_cpu_ms": 4.0, "db_cpu_ms": 2.0, "grid": grid_of(slow), "first_error": "400 {...}"}
    # One slice: its own quantiles.
    assert mixed_percentile([a], 50) == 1500 and mixed_percentile([a], 95) == 1950
    merged = merge([a, b])
    # 1,500 calls in 1 s + 2 s; CPU weighted by calls; counts added.
    assert merged["rps"] == 500.0 and merged["requests"] == 1500 and merged["s4xx"] == 1
    assert merged["app_cpu_ms"] == 2.0 and merged["db_cpu_ms"] == 1.0
    # Two thirds of the calls are the fast ones: the median is fast, p95 and p99 slow, as in
    # the calls pooled.
    pooled = sorted(fast + slow)
    for q in (50, 95, 99):
        assert abs(merged[f"p{q}"] - pooled[int(q / 100 * len(pooled))]) <= 20, (q, merged[f"p{q}"])
    assert merged["first_error"] == "400 {...}" and merged["slices"] == 2 and merged["slice_rps"] == [1000.0, 250.0]
    assert merge([{**a, "app_cpu_ms": None}, b])["app_cpu_ms"] is None  # pgbench: no app CPU
