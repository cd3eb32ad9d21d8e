"""CatalogueVersion and, on PostgreSQL, the statement triggers that change it on every write
to the tables the list API shows (catalogue.models.LIST_TABLES; catalogue.list_index)."""

from django.db import migrations, models

# catalogue.models.LIST_TABLES as of this migration (a later table gets its own migration).
TABLES = [
    "catalogue_reward",
    "catalogue_reward_categories",
    "catalogue_reward_groups",
    "catalogue_reward_card_series",
    "catalogue_reward_labels",
    "catalogue_reward_target_tiers",
    "catalogue_rewardsegmenttarget",
    "catalogue_rewardmedia",
    "catalogue_rewardlanguagecontent",
    "catalogue_paymentconfig",
    "catalogue_rewardconstraint",
    "catalogue_category",
    "catalogue_rewardgroup",
    "catalogue_label",
    "catalogue_cardseries",
    "catalogue_tier",
    "catalogue_brand",
]

# BEFORE … FOR EACH STATEMENT: the version row is locked before the statement takes any row
# lock, so two catalogue writers wait for each other here instead of in a cycle (a writer that
# locks catalogue rows before writing, catalogue.services.reward_listing_refresh, runs an
# empty UPDATE first). nextval is never rolled back: a rolled-back transaction's number is
# never seen again. An upsert, so that the row comes back after a flush (tests) empties the
# table.
FUNCTION = """
CREATE SEQUENCE catalogue_version_seq;
CREATE FUNCTION catalogue_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalogue_catalogueversion (id, value) VALUES (1, nextval('catalogue_version_seq'))
        ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value;
    RETURN NULL;
END
$$;
"""
TRIGGER = ('CREATE TRIGGER catalogue_version_bump BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}" '
           'FOR EACH STATEMENT EXECUTE FUNCTION catalogue_version_bump()')


def forwards(apps, schema_editor):
    apps.get_model("catalogue", "CatalogueVersion").objects.using(schema_editor.connection.alias).create(
        id=1, value=0)
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    for table in TABLES:
        schema_editor.execute(TRIGGER.format(table=table))


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f'DROP TRIGGER catalogue_version_bump ON "{table}"')
    schema_editor.execute("DROP FUNCTION catalogue_version_bump(); DROP SEQUENCE catalogue_version_seq;")


class Migration(migrations.Migration):

    dependencies = [
        ("catalogue", "0004_encrypted_vendor_headers_reward_created_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="CatalogueVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={"verbose_name": "catalogue version"},
        ),
        migrations.RunPython(forwards, backwards),
    ]
