"""Audit the rewards' listing cache: ``Reward.list_points``, ``list_cash`` and ``targeting``
must equal what the rules compute from the payment configs, ``intouch_points`` and the
targeting links (catalogue.selectors, "the listing cache"). Exits 0 when they all agree;
otherwise lists each disagreement on stderr and exits 1 (for cron / monitoring), after
repairing them with ``--fix``. Drift means some write bypassed the catalogue's write paths
(raw SQL, ``QuerySet.update``/``bulk_create`` without a refresh): docs/list-api.md."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalogue.models import Reward
from catalogue.selectors import reward_listing_drift
from catalogue.services import reward_listing_refresh

SHOWN = 50


class Command(BaseCommand):
    help = "Check that every reward's cached list price and targeting kind equal the rules (--fix repairs them)."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="recompute the cache of the rewards that drifted")

    def handle(self, *args, **options):
        drift = reward_listing_drift(Reward.objects.all())
        if not drift:
            self.stdout.write(self.style.SUCCESS("listing cache ok: every reward's prices and targeting match the rules"))
            return
        for row in drift[:SHOWN]:
            self.stderr.write(f"reward {row['id']}: {row['field']} is {row['stored']}, the rule says {row['expected']}")
        if len(drift) > SHOWN:
            self.stderr.write(f"... and {len(drift) - SHOWN} more")
        reward_ids = sorted({row["id"] for row in drift})
        if options["fix"]:
            with transaction.atomic():
                reward_listing_refresh(reward_ids=reward_ids)
            self.stderr.write(f"fixed: the listing cache of {len(reward_ids)} reward(s) recomputed")
        raise CommandError(f"{len(reward_ids)} reward(s) with a stale listing cache", returncode=1)
