"""Audit R9: every points account's balance equals its opening balance plus the sum of its
ledger entries; and (PostgreSQL) every reward's hourly usage sums, which the REWARD-level
limits read, equal its lines. Exits 0 when all agree; otherwise lists each disagreement on
stderr and exits 1 (so cron / monitoring can alert on the exit status)."""

from django.core.management.base import BaseCommand, CommandError

from issuance.ledger import accounts_check_all
from issuance.limits import usage_disagreements


class Command(BaseCommand):
    help = "Check that every points account's balance equals opening balance + sum of its ledger entries."

    def handle(self, *args, **options):
        bad = accounts_check_all()
        usage = usage_disagreements()
        if not bad and not usage:
            self.stdout.write(self.style.SUCCESS("ledger ok: every balance matches its entries"))
            return
        for check in bad:
            expected = check.opening_balance + check.entries_sum
            self.stderr.write(
                f"account {check.account_id}: balance {check.balance} != opening {check.opening_balance}"
                f" + entries {check.entries_sum} = {expected} (off by {check.balance - expected:+})"
            )
        for reward, hour, kept, lines in usage:
            self.stderr.write(f"reward {reward} at {hour:%Y-%m-%d %H}:00 UTC: usage kept {kept} != lines {lines}")
        problems = [f"{len(bad)} points account(s) disagree with their ledger"] if bad else []
        problems += [f"{len(usage)} hourly reward usage sum(s) disagree with the lines"] if usage else []
        raise CommandError("; ".join(problems), returncode=1)
