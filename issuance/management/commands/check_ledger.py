"""Audit R9: every points account's balance equals its opening balance plus the sum of its
ledger entries. Exits 0 when all agree; otherwise lists each disagreeing account on stderr
and exits 1 (so cron / monitoring can alert on the exit status)."""

from django.core.management.base import BaseCommand, CommandError

from issuance.ledger import accounts_check_all


class Command(BaseCommand):
    help = "Check that every points account's balance equals opening balance + sum of its ledger entries."

    def handle(self, *args, **options):
        bad = accounts_check_all()
        if not bad:
            self.stdout.write(self.style.SUCCESS("ledger ok: every balance matches its entries"))
            return
        for check in bad:
            expected = check.opening_balance + check.entries_sum
            self.stderr.write(
                f"account {check.account_id}: balance {check.balance} != opening {check.opening_balance}"
                f" + entries {check.entries_sum} = {expected} (off by {check.balance - expected:+})"
            )
        raise CommandError(f"{len(bad)} points account(s) disagree with their ledger", returncode=1)
