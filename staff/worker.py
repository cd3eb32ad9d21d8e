"""The bulk goodwill worker: issues the PENDING rows of RUNNING jobs, one row per engine call.

A worker takes a job by its lease (``BulkJob.lease_owner`` / ``lease_until``), renews the
lease before every row and lets it go when the job is done. A worker that dies simply
stops renewing: once the lease has expired any worker resumes the job where it stopped.
Two workers on one row (a lease lost during a very slow row) cannot issue twice: each
row has its own requestId and the engine answers a repeat with the stored result.

Where it runs (docs/staff-pages.md):
- ``python manage.py run_bulk_jobs`` — the production way, a process of its own;
- a daemon thread of the web process (``worker_thread_ensure``), started when a job is
  started or its progress page sees it stalled, when STAFF_BULK_WORKER_THREAD is on
  (the default, for ``make run``). It exits when there is nothing left to do.
"""

import datetime
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from .choices import BulkJobStatus, BulkRowStatus
from .models import BulkJob, BulkJobRow
from .services import bulk_row_issue

log = logging.getLogger(__name__)
ROW_BATCH = 100


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease_end() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=settings.STAFF_BULK_LEASE_SECONDS)


def job_claim(owner: str) -> BulkJob | None:
    """The oldest RUNNING job nobody holds (or whose holder's lease ran out), now ours."""
    with transaction.atomic():
        job = (
            BulkJob.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=BulkJobStatus.RUNNING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()) | Q(lease_owner=owner))
            .order_by("created_at", "pk")
            .first()
        )
        if job is None:
            return None
        job.lease_owner, job.lease_until = owner, _lease_end()
        job.save(update_fields=["lease_owner", "lease_until"])
        return job


def _lease_renew(job: BulkJob, owner: str) -> bool:
    """False when another worker took the job over (our lease had expired) or it was cancelled."""
    return bool(
        BulkJob.objects.filter(pk=job.pk, lease_owner=owner, status=BulkJobStatus.RUNNING).update(
            lease_until=_lease_end()
        )
    )


def _job_finish(job: BulkJob, owner: str) -> None:
    BulkJob.objects.filter(pk=job.pk, lease_owner=owner, status=BulkJobStatus.RUNNING).update(
        status=BulkJobStatus.DONE, finished_at=timezone.now(), lease_owner="", lease_until=None
    )


def job_process(
    job: BulkJob, owner: str, *, stop: Callable[[], bool] = lambda: False, max_rows: int | None = None
) -> int:
    """Issue the job's PENDING rows in row order; returns how many were attempted."""
    done = 0
    while True:
        rows = list(
            BulkJobRow.objects.filter(job=job, status=BulkRowStatus.PENDING)
            .select_related("job__org", "job__till", "job__created_by", "customer", "reward")
            .order_by("row_number")[:ROW_BATCH]
        )
        if not rows:
            _job_finish(job, owner)
            return done
        progressed = False
        for row in rows:
            if stop() or (max_rows is not None and done >= max_rows):
                return done
            if not _lease_renew(job, owner):
                return done
            bulk_row_issue(row)
            done += 1
            progressed = progressed or row.status != BulkRowStatus.PENDING
        if not progressed:
            return done  # every row of the batch asked to be retried later (locks): let the lease lapse


def bulk_jobs_run(
    *, owner: str | None = None, stop: Callable[[], bool] = lambda: False, max_rows: int | None = None
) -> int:
    """Work until no RUNNING job is left to take (or ``stop()``); returns rows attempted."""
    owner = owner or worker_name()
    total = 0
    while not stop():
        job = job_claim(owner)
        if job is None:
            break
        try:
            total += job_process(job, owner, stop=stop, max_rows=None if max_rows is None else max_rows - total)
        finally:
            # Stopped, or rows left that asked to be retried later: let the next worker (or
            # the next look of this one) take the job at once instead of after the lease.
            unfinished = BulkJob.objects.filter(pk=job.pk, lease_owner=owner).update(lease_until=None, lease_owner="")
        if unfinished or (max_rows is not None and total >= max_rows):
            break
    return total


# ---------------------------------------------------------------- the web process's thread

_lock = threading.Lock()
_thread: threading.Thread | None = None
_kicked = False


def _thread_main() -> None:
    global _thread, _kicked
    owner = worker_name()
    try:
        while True:
            with _lock:
                _kicked = False
            try:
                bulk_jobs_run(owner=owner)
            except Exception:  # noqa: BLE001  (logged; the page shows the job stalled and restarts us)
                log.exception("bulk goodwill worker thread failed")
                with _lock:
                    _thread = None
                return
            finally:
                close_old_connections()
            with _lock:
                if not _kicked:
                    _thread = None
                    return
    finally:
        connection.close()


def worker_thread_ensure() -> None:
    """Start the worker thread unless one is running; a running one is told to look again."""
    global _thread, _kicked
    with _lock:
        _kicked = True
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_thread_main, name="staff-bulk-worker", daemon=True)
        _thread.start()


def worker_thread_alive() -> bool:
    with _lock:
        return _thread is not None and _thread.is_alive()
