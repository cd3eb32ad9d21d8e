"""RewardUsage: a reward's counted lines summed per UTC hour, kept by PostgreSQL.

Three statement-level triggers on ``issuance_issuanceline`` (one per event: a trigger with
transition tables takes one event) add what the statement's new rows contribute and take away
what its old rows did, grouped by (reward, hour) and written in that order, so two
transactions writing lines of the same rewards lock their sums in the same order (no deadlock
between them). Lines already there are summed once, here. SQLite: the table stays empty and
the limits read the lines (issuance.limits)."""

import django.db.models.deletion
from django.db import migrations, models

COUNTED = "('ISSUED', 'PARTIAL', 'PENDING')"  # issuance.limits._COUNTED
UNITS = "(quantity + pending_units)"  # issuance.limits._LINE_UNITS
VALUE = (f"CASE WHEN redemption_value IS NOT NULL THEN redemption_value * {UNITS} "
         "ELSE total_points + held_points END")  # issuance.limits._LINE_VALUE


def _sums(rows: str) -> str:
    """(reward, hour, units, value) of ``rows`` (a SELECT of sign and line columns)."""
    return (f"SELECT reward_id, date_trunc('hour', created_at, 'UTC') AS hour, sum(sign * {UNITS}) AS units, "
            f"sum(sign * ({VALUE})) AS value FROM ({rows}) AS changed WHERE status IN {COUNTED} GROUP BY 1, 2")


def _function(name: str, rows: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    INSERT INTO issuance_rewardusage AS u (reward_id, hour, units, value)
    SELECT * FROM ({_sums(rows)}) AS delta WHERE units <> 0 OR value <> 0 ORDER BY reward_id, hour
    ON CONFLICT (reward_id, hour) DO UPDATE SET units = u.units + EXCLUDED.units, value = u.value + EXCLUDED.value;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;"""


NEW_ROWS = "SELECT 1 AS sign, * FROM new_lines"
OLD_ROWS = "SELECT -1 AS sign, * FROM old_lines"
CREATE = "\n".join([
    _function("issuance_rewardusage_insert", NEW_ROWS),
    _function("issuance_rewardusage_update", f"{NEW_ROWS} UNION ALL {OLD_ROWS}"),
    _function("issuance_rewardusage_delete", OLD_ROWS),
    """
CREATE TRIGGER issuance_rewardusage_insert AFTER INSERT ON issuance_issuanceline
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_insert();
CREATE TRIGGER issuance_rewardusage_update AFTER UPDATE ON issuance_issuanceline
    REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_update();
CREATE TRIGGER issuance_rewardusage_delete AFTER DELETE ON issuance_issuanceline
    REFERENCING OLD TABLE AS old_lines FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_delete();
""",
    # The lines already written (no writer may add any meanwhile: SHARE lets readers through).
    "LOCK TABLE issuance_issuanceline IN SHARE MODE;",
    f"INSERT INTO issuance_rewardusage (reward_id, hour, units, value) "
    f"SELECT * FROM ({_sums('SELECT 1 AS sign, * FROM issuance_issuanceline')}) AS sums "
    f"WHERE units <> 0 OR value <> 0;",
])

DROP = """
DROP TRIGGER IF EXISTS issuance_rewardusage_insert ON issuance_issuanceline;
DROP TRIGGER IF EXISTS issuance_rewardusage_update ON issuance_issuanceline;
DROP TRIGGER IF EXISTS issuance_rewardusage_delete ON issuance_issuanceline;
DROP FUNCTION IF EXISTS issuance_rewardusage_insert();
DROP FUNCTION IF EXISTS issuance_rewardusage_update();
DROP FUNCTION IF EXISTS issuance_rewardusage_delete();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('catalogue', '0006_constraint_org_level_type_index'),
        ('issuance', '0006_transaction_number_254'),
    ]

    operations = [
        migrations.CreateModel(
            name='RewardUsage',
            fields=[
                ('pk', models.CompositePrimaryKey('reward', 'hour', blank=True, editable=False, primary_key=True, serialize=False)),
                ('hour', models.DateTimeField(help_text='The UTC hour the lines were created in (its start).')),
                ('units', models.BigIntegerField(help_text='Σ quantity + pending_units.')),
                ('value', models.DecimalField(decimal_places=4, help_text="Σ a line's contribution to a REDEMPTION_VALUE limit.", max_digits=30)),
                ('reward', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalogue.reward')),
            ],
            options={
                'ordering': ['reward', 'hour'],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
