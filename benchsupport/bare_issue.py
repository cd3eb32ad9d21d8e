"""The bare SQL of one single coupon issue, for the baselines of bench/ (docs/performance.md).

What the engine writes for a single issue of a coupon reward priced in points, with nothing
else: lock the points account, take one code from the pool (SKIP LOCKED) and delete it,
write the transaction rows (issuance, line, issued unit), debit the account, append the
ledger entry, store an idempotency record. No validation, eligibility, pricing, limits or
response building. The same statements run two ways:

- through Django's connection in ``benchsupport.views.BareIssueView`` (baseline 2), and
- straight from pgbench (baseline 3) via ``pgbench_script()``.

Statements use ``{name}`` placeholders; a SELECT/RETURNING row's columns become names for the
statements after it (pgbench's ``\\gset``).
"""

import re
from decimal import Decimal

STATEMENTS = [
    "SELECT balance, held FROM issuance_pointsaccount WHERE id = {account} FOR UPDATE",
    "SELECT id AS code_id, code FROM catalogue_couponcode WHERE series_id = {series} ORDER BY code LIMIT 1 "
    "FOR UPDATE SKIP LOCKED",
    "DELETE FROM catalogue_couponcode WHERE id = {code_id}",
    "INSERT INTO issuance_issuance (org_id, till_id, brand_id, customer_id, account_id, group_loyalty_redemption, "
    "actor_id, channel, owner_type, reason, transaction_number, notes, event_log_id, status, response_code, "
    "created_at) "
    "VALUES ({org}, {till}, {brand}, {customer}, {account}, false, {actor}, 'API', '', '', '', '', '', 'SUCCESS', 200, "
    "now()) RETURNING id AS issuance_id",
    "INSERT INTO issuance_issuanceline (issuance_id, org_id, customer_id, reward_id, redemption_type, request_id, "
    "requested_quantity, quantity, planned_units, status, error_message, payment_mode, points_per_unit, total_points, "
    "held_points, pending_units, needs_attention, diagnostic, created_at, updated_at) "
    "VALUES ({issuance_id}, {org}, {customer}, {reward}, 'INTOUCH_REWARD', NULL, 1, 1, 1, 'ISSUED', '', 'POINTS', "
    "{points}, {points}, 0, 0, false, '', now(), now()) RETURNING id AS line_id",
    "INSERT INTO issuance_issuedunit (line_id, coupon_series_id, coupon_code, code_expiry, vendor_reference, points, "
    "created_at) VALUES ({line_id}, {series}, {code}, now() + interval '365 days', '', {points}, now())",
    "UPDATE issuance_pointsaccount SET balance = balance - {points}, updated_at = now() WHERE id = {account} "
    "RETURNING balance AS balance_after",
    "INSERT INTO issuance_ledgerentry (account_id, kind, amount, balance_after, reference_id, reason, actor_id, "
    "line_id, created_at) VALUES ({account}, 'REDEMPTION', -{points}, {balance_after}, "
    "substr(md5(random()::text || clock_timestamp()::text), 1, 12), 'bench', {actor}, {line_id}, now())",
    "INSERT INTO issuance_idempotencyrecord (org_id, request_id, fingerprint, shape, state, line_id, http_status, "
    "response_body, created_at, updated_at) VALUES ({org}, md5(random()::text || clock_timestamp()::text), "
    "md5('bench'), 'single', 'DONE', {line_id}, 200, '{}', now(), now())",
]
# Text values: quoted in the pgbench script (psycopg binds them as text anyway).
_TEXT = {"code"}
_NAME = re.compile(r"\{(\w+)\}")


def _for_psycopg(sql: str) -> str:
    return _NAME.sub(r"%(\1)s", sql)


def issue_bare(cursor, params: dict) -> dict:
    """Run the statements on a Django cursor inside the caller's transaction; returns the
    names gathered (``code``, ``line_id``, ``balance_after``, …). Raises LookupError when the
    pool is empty."""
    names = dict(params)
    for sql in STATEMENTS:
        cursor.execute(_for_psycopg(sql), names)
        if cursor.description is not None:
            row = cursor.fetchone()
            if row is None:
                raise LookupError("no row for: " + sql[:60])
            names.update(zip([c[0] for c in cursor.description], row, strict=True))
    return names


def pgbench_script(*, customers: int, series: int, reward: int, org: int, till: int, brand: int, actor: int,
                   points: Decimal) -> str:
    """The statements as a pgbench script: a random customer (whose account has the
    customer's id, as the bench loader makes them) per transaction."""
    lines = [
        f"\\set customer random(1, {customers})",
        "\\set account :customer",
        f"\\set series {series}",
        f"\\set reward {reward}",
        f"\\set org {org}",
        f"\\set till {till}",
        f"\\set brand {brand}",
        f"\\set actor {actor}",
        f"\\set points {points}",
        "BEGIN;",
    ]
    for sql in STATEMENTS:
        text = _NAME.sub(lambda m: f"':{m.group(1)}'" if m.group(1) in _TEXT else f":{m.group(1)}", sql)
        lines.append(text + (" \\gset" if " RETURNING " in text or text.startswith("SELECT") else ";"))
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"
