import datetime

from django.core.management.base import BaseCommand

from issuance.recovery import MINIMUM_AGE, pending_lines_recover


class Command(BaseCommand):
    help = "Settle vendor issuances left PENDING by a crash (see issuance/recovery.py)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=int, default=int(MINIMUM_AGE.total_seconds()),
            help=f"seconds (at least {int(MINIMUM_AGE.total_seconds())})",
        )

    def handle(self, *args, older_than: int, **options):
        report = pending_lines_recover(older_than=datetime.timedelta(seconds=older_than))
        self.stdout.write(
            f"settled {report.settled}, released {report.released}, flagged for staff {report.flagged}"
        )
