"""RewardUsage: the counted lines of each reward with a REWARD-level limit, summed per UTC
hour, kept by PostgreSQL.

Three statement-level triggers on ``issuance_issuanceline`` (one per event: a trigger with
transition tables takes one event) add what the statement's new rows contribute and take away
what its old rows did, for the rewards that have a REWARD-level limit, grouped by (reward,
hour) and written in that order, so two transactions writing lines of the same rewards lock
their sums in the same order (no deadlock between them). Only those rewards: their issues
already wait for each other on the reward's row lock, so the sums' rows add no waiting; every
other reward's lines are written as before.

When a reward gets a REWARD-level limit (a constraint row inserted, or changed to that level or
reward), a trigger on ``catalogue_rewardconstraint`` recomputes its sums from its lines, after
``LOCK TABLE issuance_issuanceline IN SHARE MODE``: that waits for every transaction that may
have written lines of it without sums (their triggers ran before the limit was committed) and
holds new writers until the limit commits; their triggers then see it (READ COMMITTED: each
statement of the trigger function reads with a fresh snapshot). A reward whose last
REWARD-level limit is deleted (or changed to another level or reward) loses its sums, under the
same lock, so none is ever left behind to go stale.

Lines already there: the sums of the rewards with a REWARD-level limit, computed once here.
SQLite: the table stays empty and the limits read the lines (issuance.limits)."""

import django.db.models.deletion
from django.db import migrations, models

COUNTED = "('ISSUED', 'PARTIAL', 'PENDING')"  # issuance.limits._COUNTED
UNITS = "(quantity + pending_units)"  # issuance.limits._LINE_UNITS
VALUE = (f"CASE WHEN redemption_value IS NOT NULL THEN redemption_value * {UNITS} "
         "ELSE total_points + held_points END")  # issuance.limits._LINE_VALUE
LIMITED = ("EXISTS (SELECT 1 FROM catalogue_rewardconstraint AS c "
           "WHERE c.reward_id = changed.reward_id AND c.level = 'REWARD')")


def _sums(rows: str, where: str) -> str:
    """(reward, hour, units, value) of ``rows`` (a SELECT of sign and line columns)."""
    return (f"SELECT reward_id, date_trunc('hour', created_at, 'UTC') AS hour, sum(sign * {UNITS}) AS units, "
            f"sum(sign * ({VALUE})) AS value FROM ({rows}) AS changed WHERE status IN {COUNTED} AND {where} "
            "GROUP BY 1, 2")


def _function(name: str, rows: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    INSERT INTO issuance_rewardusage AS u (reward_id, hour, units, value)
    SELECT * FROM ({_sums(rows, LIMITED)}) AS delta WHERE units <> 0 OR value <> 0 ORDER BY reward_id, hour
    ON CONFLICT (reward_id, hour) DO UPDATE SET units = u.units + EXCLUDED.units, value = u.value + EXCLUDED.value;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;"""


def _recompute(rewards: str) -> str:
    """The sums of the rewards ``rewards`` (a SELECT of reward ids) anew from their lines."""
    return f"""
    LOCK TABLE issuance_issuanceline IN SHARE MODE;
    DELETE FROM issuance_rewardusage WHERE reward_id IN ({rewards});
    INSERT INTO issuance_rewardusage (reward_id, hour, units, value)
    SELECT * FROM ({_sums("SELECT 1 AS sign, * FROM issuance_issuanceline", f"reward_id IN ({rewards})")}) AS sums
    WHERE units <> 0 OR value <> 0 ORDER BY reward_id, hour;"""


NEW_ROWS = "SELECT 1 AS sign, * FROM new_lines"
OLD_ROWS = "SELECT -1 AS sign, * FROM old_lines"
NEWLY_LIMITED = ("SELECT n.reward_id FROM new_constraints AS n WHERE n.level = 'REWARD' AND n.reward_id IS NOT NULL "
                 "AND NOT EXISTS (SELECT 1 FROM old_constraints AS o WHERE o.id = n.id AND o.level = 'REWARD' "
                 "AND o.reward_id = n.reward_id)")
NO_LONGER_LIMITED = ("SELECT o.reward_id FROM old_constraints AS o WHERE o.level = 'REWARD' AND o.reward_id IS NOT NULL "
                     "AND NOT EXISTS (SELECT 1 FROM catalogue_rewardconstraint AS c "
                     "WHERE c.reward_id = o.reward_id AND c.level = 'REWARD')")
FORGET = f"""
        LOCK TABLE issuance_issuanceline IN SHARE MODE;
        DELETE FROM issuance_rewardusage WHERE reward_id IN ({NO_LONGER_LIMITED});"""
CREATE = "\n".join([
    _function("issuance_rewardusage_insert", NEW_ROWS),
    _function("issuance_rewardusage_update", f"{NEW_ROWS} UNION ALL {OLD_ROWS}"),
    _function("issuance_rewardusage_delete", OLD_ROWS),
    f"""
CREATE OR REPLACE FUNCTION issuance_rewardusage_limit_insert() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_constraints WHERE level = 'REWARD' AND reward_id IS NOT NULL) THEN
        {_recompute("SELECT reward_id FROM new_constraints WHERE level = 'REWARD' AND reward_id IS NOT NULL")}
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION issuance_rewardusage_limit_update() RETURNS trigger AS $$
BEGIN
    IF EXISTS ({NEWLY_LIMITED}) THEN
        {_recompute(NEWLY_LIMITED)}
    END IF;
    IF EXISTS ({NO_LONGER_LIMITED}) THEN{FORGET}
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION issuance_rewardusage_limit_delete() RETURNS trigger AS $$
BEGIN
    IF EXISTS ({NO_LONGER_LIMITED}) THEN{FORGET}
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;""",
    """
CREATE TRIGGER issuance_rewardusage_insert AFTER INSERT ON issuance_issuanceline
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_insert();
CREATE TRIGGER issuance_rewardusage_update AFTER UPDATE ON issuance_issuanceline
    REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_update();
CREATE TRIGGER issuance_rewardusage_delete AFTER DELETE ON issuance_issuanceline
    REFERENCING OLD TABLE AS old_lines FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_delete();
CREATE TRIGGER issuance_rewardusage_limit_insert AFTER INSERT ON catalogue_rewardconstraint
    REFERENCING NEW TABLE AS new_constraints
    FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_limit_insert();
CREATE TRIGGER issuance_rewardusage_limit_update AFTER UPDATE ON catalogue_rewardconstraint
    REFERENCING OLD TABLE AS old_constraints NEW TABLE AS new_constraints
    FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_limit_update();
CREATE TRIGGER issuance_rewardusage_limit_delete AFTER DELETE ON catalogue_rewardconstraint
    REFERENCING OLD TABLE AS old_constraints FOR EACH STATEMENT EXECUTE FUNCTION issuance_rewardusage_limit_delete();
""",
    _recompute("SELECT reward_id FROM catalogue_rewardconstraint WHERE level = 'REWARD' AND reward_id IS NOT NULL"),
])

DROP = """
DROP TRIGGER IF EXISTS issuance_rewardusage_insert ON issuance_issuanceline;
DROP TRIGGER IF EXISTS issuance_rewardusage_update ON issuance_issuanceline;
DROP TRIGGER IF EXISTS issuance_rewardusage_delete ON issuance_issuanceline;
DROP TRIGGER IF EXISTS issuance_rewardusage_limit_insert ON catalogue_rewardconstraint;
DROP TRIGGER IF EXISTS issuance_rewardusage_limit_update ON catalogue_rewardconstraint;
DROP TRIGGER IF EXISTS issuance_rewardusage_limit_delete ON catalogue_rewardconstraint;
DROP FUNCTION IF EXISTS issuance_rewardusage_insert();
DROP FUNCTION IF EXISTS issuance_rewardusage_update();
DROP FUNCTION IF EXISTS issuance_rewardusage_delete();
DROP FUNCTION IF EXISTS issuance_rewardusage_limit_insert();
DROP FUNCTION IF EXISTS issuance_rewardusage_limit_update();
DROP FUNCTION IF EXISTS issuance_rewardusage_limit_delete();
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
