"""Staff services under real concurrency (PostgreSQL, separate connections): two approvers
approving one goodwill request at once issue it once; two workers on one bulk row issue it once;
two workers racing for one job split nothing twice."""

from decimal import Decimal

import pytest
from django.db import connection

from issuance import models as im
from issuance.groups import APPROVER_GROUP, STAFF_GROUP
from staff import services
from staff.choices import BulkJobStatus, BulkRowStatus, GoodwillStatus
from staff.models import BulkJob, BulkJobRow
from staff.worker import bulk_jobs_run
from tests.test_staff_pages import World, build_world, csv_bytes, order, staff_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _postgres_only(settings):
    settings.STAFF_BULK_WORKER_THREAD = False
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")


@pytest.fixture
def w() -> World:
    return build_world(codes=100)


def test_two_approvers_at_once_issue_the_request_once(w, run_concurrently):
    carol = staff_user("carol", w.org, STAFF_GROUP, APPROVER_GROUP, tills=[w.till])
    request = services.goodwill_submit(actor=w.staff, order=order(w, w.big_reward), token="tok").goodwill_request
    approvers = [w.approver, carol]

    def approve(i):
        return services.goodwill_approve(approver=approvers[i], pk=request.pk, org_ids={w.org.pk})

    outcomes = run_concurrently(approve, threads=2)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], services.StaffError), outcomes
    request.refresh_from_db()
    assert request.status == GoodwillStatus.ISSUED
    assert im.IssuanceLine.objects.count() == 1
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("3000")


def test_two_workers_on_one_row_issue_it_once(w, run_concurrently):
    job = services.bulk_job_create(
        actor=w.staff, org=w.org, till=w.till, file_name="a.csv",
        data=csv_bytes(f"919000000001,{w.coupon_reward.pk},2,Storm,"),
    )
    services.bulk_job_start(job_id=job.pk, org_ids={w.org.pk})

    def issue(_i):
        row = BulkJobRow.objects.select_related("job__org", "job__till", "job__created_by", "customer", "reward").get(
            job=job
        )
        return services.bulk_row_issue(row).status

    run_concurrently(issue, threads=2)
    assert im.IssuanceLine.objects.count() == 1 and im.IssuedUnit.objects.count() == 2
    assert im.LedgerEntry.objects.filter(kind="REDEMPTION").count() == 1


def test_two_workers_racing_for_a_job_issue_every_row_once(w, run_concurrently):
    data = csv_bytes(*[f"919000000001,{w.coupon_reward.pk},1,Storm," for _ in range(12)])
    job = services.bulk_job_create(actor=w.staff, org=w.org, till=w.till, file_name="a.csv", data=data)
    services.bulk_job_start(job_id=job.pk, org_ids={w.org.pk})
    run_concurrently(lambda i: bulk_jobs_run(owner=f"worker-{i}"), threads=2)
    bulk_jobs_run()  # whatever a worker left (it lost the race for the lease)
    job.refresh_from_db()
    assert job.status == BulkJobStatus.DONE
    assert set(job.rows.values_list("status", flat=True)) == {BulkRowStatus.ISSUED}
    assert im.IssuanceLine.objects.count() == 12 and im.IssuedUnit.objects.count() == 12
    assert BulkJob.objects.get().lease_owner == ""
