"""python manage.py reencrypt_secrets — the last step of a key rotation (docs/hardening.md).

Every stored vendor header value is decrypted with any of FIELD_ENCRYPTION_KEYS and written
again under the first one; after that the old keys can be dropped. Values no key decrypts are
left as they are and named (never shown); the command then exits non-zero.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalogue.encryption import unreadable_names
from catalogue.models import VendorRedemptionConfig


class Command(BaseCommand):
    help = "Re-encrypt the stored vendor header values under the first FIELD_ENCRYPTION_KEYS key (key rotation)."

    def handle(self, *args, **options):
        rewritten, unreadable = 0, []
        with transaction.atomic():
            for config in VendorRedemptionConfig.objects.select_for_update().order_by("pk"):
                if not config.headers:
                    continue
                names = unreadable_names(config.headers)
                if names:
                    unreadable.append(f"config {config.pk}: {', '.join(names)}")
                    continue
                # Plain text in, so the field encrypts it again, under the first key.
                VendorRedemptionConfig.objects.filter(pk=config.pk).update(headers=config.headers)
                rewritten += 1
        self.stdout.write(f"Re-encrypted the header values of {rewritten} vendor redemption config(s).")
        if unreadable:
            raise CommandError(
                "header values that no FIELD_ENCRYPTION_KEYS key decrypts were left as they are: "
                + "; ".join(unreadable)
            )
