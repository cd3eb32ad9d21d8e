"""Vendor header values encrypted at rest; Reward.created_at settable by the catalogue importer.

1. The values of every stored ``VendorRedemptionConfig.headers`` become Fernet tokens under the
   first of ``settings.FIELD_ENCRYPTION_KEYS`` (names stay as they are), while the field is still
   a plain JSONField in this migration's state; then the field becomes
   ``catalogue.encryption.EncryptedValuesJSONField`` (same jsonb column: no schema change).
   Backwards, the values are decrypted again; one that no key decrypts stops it.
2. ``Reward.created_at``: ``default=timezone.now`` instead of ``auto_now_add`` (no schema change),
   so that an imported ``createdAt`` survives ``bulk_create``.
"""

import django.utils.timezone
from django.db import migrations, models

import catalogue.encryption


def headers_encrypt(apps, schema_editor):
    from catalogue.encryption import secret_encrypt

    alias = schema_editor.connection.alias
    configs = apps.get_model("catalogue", "VendorRedemptionConfig").objects.using(alias)
    for pk, headers in list(configs.values_list("pk", "headers")):
        if isinstance(headers, dict) and headers:
            encrypted = {str(name): secret_encrypt(str(value)) for name, value in headers.items()}
            configs.filter(pk=pk).update(headers=encrypted)


def headers_decrypt(apps, schema_editor):
    from cryptography.fernet import InvalidToken

    from catalogue.encryption import secret_decrypt

    alias = schema_editor.connection.alias
    configs = apps.get_model("catalogue", "VendorRedemptionConfig").objects.using(alias)
    for pk, headers in list(configs.values_list("pk", "headers")):
        if not isinstance(headers, dict) or not headers:
            continue
        plain = {}
        for name, token in headers.items():
            try:
                plain[name] = secret_decrypt(token)
            except InvalidToken:
                raise RuntimeError(
                    f"vendor redemption config {pk}: header {name} cannot be decrypted with "
                    "FIELD_ENCRYPTION_KEYS; configure the key it was stored with"
                ) from None
        configs.filter(pk=pk).update(headers=plain)


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0003_listing_cache"),
    ]

    operations = [
        migrations.RunPython(headers_encrypt, headers_decrypt),
        migrations.AlterField(
            model_name="vendorredemptionconfig",
            name="headers",
            field=catalogue.encryption.EncryptedValuesJSONField(
                blank=True, default=dict, help_text="Request headers {name: value}; the values are stored encrypted."
            ),
        ),
        migrations.AlterField(
            model_name="reward",
            name="created_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, editable=False),
        ),
    ]
