"""On PostgreSQL, the database itself refuses UPDATE and DELETE of ledger rows, so not
even raw SQL or a bulk queryset update can rewrite history."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION issuance_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'issuance_ledgerentry is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER issuance_ledger_append_only
    BEFORE UPDATE OR DELETE ON issuance_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION issuance_ledger_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS issuance_ledger_append_only ON issuance_ledgerentry;
DROP FUNCTION IF EXISTS issuance_ledger_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # params=() would make psycopg read the plpgsql % as a placeholder


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("issuance", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
