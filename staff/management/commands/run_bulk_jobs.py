"""python manage.py run_bulk_jobs: the bulk goodwill worker as a process of its own."""

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from staff.worker import bulk_jobs_run, worker_name


class Command(BaseCommand):
    help = (
        "Issue the rows of running bulk goodwill jobs (staff pages). Runs until stopped "
        "(SIGTERM/SIGINT finish the current row first); --once works off what is there and exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Exit when no job is left to work on.")
        parser.add_argument("--poll", type=float, default=2.0, help="Seconds between looks for new jobs.")

    def handle(self, *args, once=False, poll=2.0, **options):
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        owner = worker_name()
        self.stdout.write(f"bulk goodwill worker {owner} started")
        while not stopping:
            close_old_connections()
            done = bulk_jobs_run(owner=owner, stop=lambda: bool(stopping))
            if done:
                self.stdout.write(f"{done} row(s) processed")
            if once:
                break
            if not done:
                time.sleep(poll)
        self.stdout.write("bulk goodwill worker stopped")
