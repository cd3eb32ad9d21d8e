"""Import a catalogue document (docs/catalogue-format.md).

``catalogue_import`` validates the whole document first (``reader``: types, enums, references,
catalogue rules; then the checks below that need the database) and only then writes, all in
ONE transaction: a file with any error writes nothing. Writing is idempotent: rows are matched
by explicit id or natural key and saved only when a value differs, so a second import of the
same file creates and changes nothing (and leaves ``updated_at`` alone).

Points: a customer's or group's ``openingBalance`` creates its points account with
``opening_balance = balance = N`` only when the account does not exist yet. An existing
account (and its ledger) is never touched by an import, whatever the file says.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from catalogue import models as cm
from catalogue.services import reward_listing_refresh
from catalogue.validation import custom_field_count_errors
from issuance.models import IssuedUnit, PointsAccount

from . import jsonio
from .reader import KIND_NAMES, Errors, Plan, Row, document_read

BATCH = 500
MAX_ERRORS_SHOWN = 50

# Tables that receive explicit ids; their sequences are reset after an import (PostgreSQL).
EXPLICIT_ID_MODELS = (
    cm.Organisation,
    cm.Program,
    cm.Category,
    cm.RewardGroup,
    cm.Label,
    cm.CardSeries,
    cm.Vendor,
    cm.VendorRedemptionConfig,
    cm.CouponSeries,
    cm.CartPromotion,
    cm.Customer,
    cm.CustomerGroup,
    cm.Reward,
    cm.PaymentConfig,
    cm.RewardConstraint,
)


class CatalogueFileError(Exception):
    """The document is refused; ``errors`` holds every ``(path, message)`` found."""

    def __init__(self, errors: Errors):
        self.errors = errors
        super().__init__(self.summary())

    def lines(self) -> list[str]:
        shown = [f"{path}: {message}" for path, message in self.errors[:MAX_ERRORS_SHOWN]]
        if len(self.errors) > MAX_ERRORS_SHOWN:
            shown.append(f"... and {len(self.errors) - MAX_ERRORS_SHOWN} more")
        return shown

    def summary(self) -> str:
        count = len(self.errors)
        return f"{count} error{'s' if count != 1 else ''} in the catalogue file:\n  " + "\n  ".join(self.lines())


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass
class ImportResult:
    counts: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    # Paths of customers/groups whose points account already existed (balance left alone).
    accounts_kept: list[str] = field(default_factory=list)
    # Pool codes of the file not added because they were already issued.
    codes_already_issued: int = 0
    dry_run: bool = False

    @property
    def created(self) -> int:
        return sum(c.created for c in self.counts.values())

    @property
    def changed(self) -> int:
        return sum(c.updated + c.deleted for c in self.counts.values())

    def report(self) -> list[str]:
        verb = "Would import" if self.dry_run else "Imported"
        lines = [f"{verb}: {self.created} created, {self.changed} changed."]
        for label, c in sorted(self.counts.items()):
            if c.created or c.updated or c.deleted:
                lines.append(f"  {label}: {c.created} created, {c.updated} updated, {c.deleted} removed")
        if self.accounts_kept:
            lines.append(
                f"  {len(self.accounts_kept)} points account(s) already existed: opening balance not re-applied, "
                "balance and ledger left alone."
            )
        if self.codes_already_issued:
            lines.append(
                f"  {self.codes_already_issued} pool code(s) of the file were already issued and were not re-added."
            )
        return lines


def document_load(text: str | bytes) -> Any:
    """Parse catalogue JSON (numbers with a fraction become Decimal, never float)."""
    try:
        return jsonio.loads(text)
    except jsonio.JsonError as exc:
        raise CatalogueFileError([("$", str(exc))]) from exc


def catalogue_import(*, document: Any, dry_run: bool = False) -> ImportResult:
    """Validate ``document`` completely, then write it.

    Atomic: validation against the database and every write run in one transaction; any
    error raises ``CatalogueFileError`` before the first write. ``dry_run`` rolls the writes
    back and only reports them. Rows are written, never locked for long: the catalogue is
    not on the issuing path's lock order (points accounts are only ever created here).
    """
    plan, errors = document_read(document)
    if errors:
        raise CatalogueFileError(errors)
    with transaction.atomic():
        errors = _database_errors(plan)
        if errors:
            raise CatalogueFileError(errors)
        result = _Writer(plan).write()
        result.dry_run = dry_run
        if dry_run:
            transaction.set_rollback(True)
    return result


# -- checks against the database -------------------------------------------------------------


def _chunks(values: Sequence, size: int = BATCH) -> Iterable[Sequence]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _nested(plan: Plan, section: str, key: str) -> list[Row]:
    return [child for row in plan[section] for child in row.extra[key]]


def _owner_text(fields: tuple[str, ...], values: tuple) -> str:
    parts = [
        f"{name.removesuffix('_id')} {value}" for name, value in zip(fields, values, strict=True) if value is not None
    ]
    return ", ".join(parts) or "no owner"


def _check_owners(
    errors: Errors, rows: list[Row], model, kind: str, fields: tuple[str, ...], want: Callable[[Row], tuple]
):
    """An id of the file already used by a row of another owner (org, vendor, reward)."""
    by_id = {row.id: row for row in rows if row.id is not None}
    for chunk in _chunks(list(by_id)):
        for pk, *have in model.objects.filter(pk__in=chunk).values_list("pk", *fields):
            row = by_id[pk]
            if tuple(have) != want(row):
                errors.append(
                    (f"{row.path}.id", f"{KIND_NAMES[kind]} {pk} already exists in {_owner_text(fields, tuple(have))}")
                )


def _check_taken(
    errors: Errors,
    rows: list[Row],
    model,
    attr: str,
    key: str,
    what: str,
    scope: str | None = "org_id",
    scope_of: Callable[[Row], Any] = lambda row: row.org_id,
):
    """A unique name of the file already used by another row that the file does not list."""
    file_ids = {row.id for row in rows}
    wanted: dict[tuple, Row] = {}
    for row in rows:
        value = row.attrs.get(attr)
        if value is not None:
            wanted[(scope_of(row) if scope else None, value)] = row
    values = sorted({value for _, value in wanted})
    for chunk in _chunks(values):
        query = model.objects.filter(**{f"{attr}__in": chunk})
        for pk, owner, value in query.values_list("pk", scope or "pk", attr):
            row = wanted.get((owner if scope else None, value))
            if row is not None and pk != row.id and pk not in file_ids:
                errors.append((f"{row.path}.{key}", f"{what} {value!r} is already used by id {pk} in the database"))


def _database_errors(plan: Plan) -> Errors:
    errors: Errors = []
    _check_orgs(plan, errors)
    org_owned = (
        ("programs", cm.Program, "program"),
        ("categories", cm.Category, "category"),
        ("rewardGroups", cm.RewardGroup, "rewardGroup"),
        ("labels", cm.Label, "label"),
        ("cardSeries", cm.CardSeries, "cardSeries"),
        ("vendors", cm.Vendor, "vendor"),
        ("couponSeries", cm.CouponSeries, "couponSeries"),
        ("cartPromotions", cm.CartPromotion, "cartPromotion"),
        ("customers", cm.Customer, "customer"),
        ("customerGroups", cm.CustomerGroup, "customerGroup"),
        ("rewards", cm.Reward, "reward"),
    )
    for section, model, kind in org_owned:
        _check_owners(errors, plan[section], model, kind, ("org_id",), lambda row: (row.org_id,))
    configs = _nested(plan, "vendors", "configs")
    _check_owners(
        errors, configs, cm.VendorRedemptionConfig, "vendorConfig", ("vendor_id",), lambda r: (r.extra["vendor_id"],)
    )
    _check_owners(
        errors,
        _nested(plan, "rewards", "payment_configs"),
        cm.PaymentConfig,
        "paymentConfig",
        ("reward_id",),
        lambda r: (r.extra["reward_id"],),
    )
    constraints = _nested(plan, "rewards", "constraints") + plan["orgConstraints"]
    _check_owners(
        errors,
        constraints,
        cm.RewardConstraint,
        "constraint",
        ("org_id", "reward_id"),
        lambda r: (r.org_id, r.extra["reward_id"]),
    )
    for section, model, attr, key, what in (
        ("programs", cm.Program, "name", "name", "program name"),
        ("categories", cm.Category, "name", "name", "category name"),
        ("rewardGroups", cm.RewardGroup, "name", "name", "reward group name"),
        ("labels", cm.Label, "name", "name", "label name"),
        ("cardSeries", cm.CardSeries, "code", "code", "card series code"),
        ("vendors", cm.Vendor, "name", "name", "vendor name"),
        ("cartPromotions", cm.CartPromotion, "promotion_code", "promotionCode", "promotion code"),
        ("customerGroups", cm.CustomerGroup, "external_id", "externalId", "group externalId"),
    ):
        _check_taken(errors, plan[section], model, attr, key, what)
    _check_taken(
        errors,
        configs,
        cm.VendorRedemptionConfig,
        "name",
        "name",
        "vendor redemption config name",
        scope="vendor_id",
        scope_of=lambda row: row.extra["vendor_id"],
    )
    _check_customers(plan, errors)
    _check_users(plan, errors)
    _check_custom_field_counts(plan, errors)
    _resolve_masked_headers(configs, errors)
    return errors


def _check_orgs(plan: Plan, errors: Errors) -> None:
    rows = plan["orgs"]
    _check_taken(errors, rows, cm.Organisation, "name", "name", "org name", scope=None)
    parents = dict(cm.Organisation.objects.values_list("id", "parent_id"))
    parents.update({row.id: row.extra["parent_id"] for row in rows})
    for row in rows:
        parent_id = row.extra["parent_id"]
        if parent_id is not None and parent_id not in parents:
            errors.append(
                (f"{row.path}.parentId", f"unknown org {parent_id} (neither in this file nor in the database)")
            )
            continue
        seen = {row.id}
        while parent_id is not None:
            if parent_id in seen:
                errors.append((f"{row.path}.parentId", f"org {parent_id} is its own ancestor through this parent"))
                break
            seen.add(parent_id)
            parent_id = parents.get(parent_id)


def _check_customers(plan: Plan, errors: Errors) -> None:
    rows = plan["customers"]
    file_ids = {row.id for row in rows}
    orgs = {row.id: row.attrs for row in plan["orgs"]}
    checks = [("primary_value", None)]
    checks += [(attr, key) for attr, key in (("mobile", "mobile"), ("email", "email"), ("external_id", "externalId"))]
    for attr, key in checks:
        wanted: dict[tuple, Row] = {}
        for row in rows:
            secondary = key is not None
            if secondary and orgs[row.org_id]["dual_eligibility"]:
                continue
            if row.attrs.get(attr) is not None:
                wanted[(row.org_id, row.attrs[attr])] = row
        values = sorted({value for _, value in wanted})
        for chunk in _chunks(values):
            query = cm.Customer.objects.filter(**{f"{attr}__in": chunk})
            for pk, org_id, value in query.values_list("pk", "org_id", attr).iterator():
                row = wanted.get((org_id, value))
                if row is None or pk in file_ids:
                    continue
                if key is None:
                    identifier = orgs[org_id]["primary_identifier"]
                    errors.append((row.path, f"customer {pk} already has {identifier} {value!r} in org {org_id}"))
                else:
                    errors.append(
                        (
                            f"{row.path}.{key}",
                            f"customer {pk} already has {key} {value!r} in org {org_id} (dual eligibility is off)",
                        )
                    )


def _check_users(plan: Plan, errors: Errors) -> None:
    where: dict[str, tuple[int, str]] = {}
    for row in plan["tills"]:
        for i, username in enumerate(row.extra["users"]):
            where[username] = (row.org_id, f"{row.path}.users[{i}]")
    user_model = get_user_model()
    lookup = {f"{user_model.USERNAME_FIELD}__in": list(where)}
    for username, org_id in user_model.objects.filter(**lookup).values_list(
        user_model.USERNAME_FIELD, "profile__org_id"
    ):
        till_org, path = where[username]
        if org_id is not None and org_id != till_org:
            errors.append((path, f"user {username!r} acts in org {org_id}; a till of org {till_org} cannot list it"))


def _check_custom_field_counts(plan: Plan, errors: Errors) -> None:
    scopes: dict[int, dict[tuple[str, str], str]] = defaultdict(dict)
    org_ids = {row.org_id for row in plan["customFields"]}
    for org_id, scope, name in cm.CustomFieldDefinition.objects.filter(org_id__in=org_ids).values_list(
        "org_id", "scope", "name"
    ):
        scopes[org_id][(scope, name)] = scope
    for row in plan["customFields"]:
        scopes[row.org_id][(row.attrs["scope"], row.attrs["name"])] = row.attrs["scope"]
    for org_id in sorted(org_ids):
        for _, message in custom_field_count_errors(scopes[org_id].values()):
            errors.append(("customFields", f"org {org_id}: {message}"))


def _resolve_masked_headers(configs: list[Row], errors: Errors) -> None:
    """``"********"`` in a header value (an export without secrets) keeps the stored value."""
    masked = {row.id: row for row in configs if row.extra["masked"]}
    stored = dict(cm.VendorRedemptionConfig.objects.filter(pk__in=list(masked)).values_list("pk", "headers"))
    for config_id, row in masked.items():
        for name in row.extra["masked"]:
            value = (stored.get(config_id) or {}).get(name)
            if value is None:
                errors.append(
                    (
                        f"{row.path}.headers.{name}",
                        "is masked (exported without --include-secrets) and no stored value exists to keep; "
                        "give the real value",
                    )
                )
            else:
                row.attrs["headers"][name] = value


# -- writing ---------------------------------------------------------------------------------


def _in_org(row: Row) -> dict[str, Any]:
    return {"org_id": row.org_id}


def _m2m_names(model, name: str) -> tuple[type[models.Model], str, str]:
    """The through model of ``model.name`` and the attnames of its two sides."""
    m2m = model._meta.get_field(name)
    return m2m.remote_field.through, f"{m2m.m2m_field_name()}_id", f"{m2m.m2m_reverse_field_name()}_id"


class _Writer:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.result = ImportResult()
        self.touched_rewards: set[int] = set()
        self.created: dict[str, set] = {}
        self.org_ids = [row.id for row in plan["orgs"]]

    def sync(
        self,
        label: str,
        model: type[models.Model],
        key: tuple[str, ...],
        desired: dict[tuple, dict[str, Any]],
        existing: Iterable[models.Model],
        *,
        delete: Callable[[models.Model], bool] | None = None,
        on_change: Callable[[models.Model], None] | None = None,
    ) -> dict[tuple, models.Model]:
        """Make the rows ``desired`` (key values → field values) exist with exactly those
        values, saving only rows that differ. ``existing``: the stored rows that may match;
        those not desired are deleted when ``delete(row)`` says so."""
        counts = self.result.counts[label]
        by_key: dict[tuple, models.Model] = {}
        stale: list[models.Model] = []
        seen: set = set()
        for obj in existing:
            if obj.pk in seen:
                continue
            seen.add(obj.pk)
            obj_key = tuple(getattr(obj, a) for a in key)
            # Rows not wanted, and duplicates of a key (made outside the importer), may go.
            if (obj_key in by_key or obj_key not in desired) and delete is not None and delete(obj):
                stale.append(obj)
                continue
            by_key.setdefault(obj_key, obj)
        create, update, changed_fields = [], [], set()
        for obj_key, attrs in desired.items():
            obj = by_key.get(obj_key)
            if obj is None:
                obj = model(**dict(zip(key, obj_key, strict=True)), **attrs)
                create.append(obj)
                by_key[obj_key] = obj
                continue
            diff = [attr for attr, value in attrs.items() if getattr(obj, attr) != value]
            if diff:
                for attr in diff:
                    setattr(obj, attr, attrs[attr])
                update.append(obj)
                changed_fields.update(diff)
        if stale:
            for chunk in _chunks([obj.pk for obj in stale]):
                model.objects.filter(pk__in=chunk).delete()
        if create:
            model.objects.bulk_create(create, batch_size=BATCH)
        if update:
            model.objects.bulk_update(update, sorted(changed_fields), batch_size=BATCH)
        self.created[label] = {obj.pk for obj in create}
        counts.created += len(create)
        counts.updated += len(update)
        counts.deleted += len(stale)
        if on_change is not None:
            for obj in (*create, *update, *stale):
                on_change(obj)
        return by_key

    def by_ids(self, model, ids: Iterable[int], **filters) -> list[models.Model]:
        ids = list(ids)
        return [obj for chunk in _chunks(ids) for obj in model.objects.filter(pk__in=chunk, **filters)]

    def by_parent(self, model, attr: str, ids: Iterable[int]) -> list[models.Model]:
        ids = list(ids)
        return [obj for chunk in _chunks(ids) for obj in model.objects.filter(**{f"{attr}__in": chunk})]

    def sync_ids(self, label: str, model, rows: list[Row], extra: Callable[[Row], dict] | None = None, **kwargs):
        desired = {(row.id,): {**row.attrs, **(extra(row) if extra else {})} for row in rows}
        existing = kwargs.pop("existing", None)
        if existing is None:
            existing = self.by_ids(model, [row.id for row in rows])
        return self.sync(label, model, ("id",), desired, existing, **kwargs)

    def links(
        self, label: str, model, key: tuple[str, str], pairs: dict[tuple, dict], parent_ids: Iterable[int], **kwargs
    ):
        """Rows linking a parent of the file to others: exactly ``pairs`` for those parents."""
        parent_ids = list(parent_ids)
        return self.sync(
            label, model, key, pairs, self.by_parent(model, key[0], parent_ids), delete=lambda obj: True, **kwargs
        )

    # -- sections

    def write(self) -> ImportResult:
        self.sync_ids("orgs", cm.Organisation, self.plan["orgs"], lambda row: {"parent_id": row.extra["parent_id"]})
        self.brands = self.natural("brands", cm.Brand, ("org_id", "name"))
        self.write_tills()
        self.write_programs()
        for section, model in (
            ("categories", cm.Category),
            ("rewardGroups", cm.RewardGroup),
            ("labels", cm.Label),
            ("cardSeries", cm.CardSeries),
            ("cartPromotions", cm.CartPromotion),
        ):
            self.sync_ids(section, model, self.plan[section], _in_org)
        self.write_segments()
        self.sync_ids("vendors", cm.Vendor, self.plan["vendors"], _in_org)
        configs = _nested(self.plan, "vendors", "configs")
        self.sync_ids(
            "vendors.redemptionConfigs",
            cm.VendorRedemptionConfig,
            configs,
            lambda row: {"vendor_id": row.extra["vendor_id"]},
        )
        self.write_coupon_series()
        self.natural("customFields", cm.CustomFieldDefinition, ("org_id", "scope", "name"))
        self.natural("fulfillmentStatuses", cm.FulfillmentStatus, ("org_id", "name"))
        self.write_customers()
        self.write_groups()
        self.write_rewards()
        self.sync_ids(
            "orgConstraints",
            cm.RewardConstraint,
            self.plan["orgConstraints"],
            lambda row: {"org_id": row.org_id, "reward_id": None},
        )
        self.sequences_reset()
        return self.result

    def natural(self, section: str, model, key: tuple[str, ...]) -> dict[tuple, models.Model]:
        """Rows matched by (org, natural key); ``key`` starts with ``org_id``."""
        desired = {}
        for row in self.plan[section]:
            attrs = dict(row.attrs)
            desired[(row.org_id, *(attrs.pop(a) for a in key[1:]))] = attrs
        return self.sync(section, model, key, desired, model.objects.filter(org_id__in=self.org_ids))

    def write_tills(self) -> None:
        tills = self.natural("tills", cm.Till, ("org_id", "code"))
        user_model = get_user_model()
        name_field = user_model.USERNAME_FIELD
        wanted: dict[str, int] = {}
        for row in self.plan["tills"]:
            for username in row.extra["users"]:
                wanted[username] = row.org_id
        users = {getattr(u, name_field): u for u in user_model.objects.filter(**{f"{name_field}__in": list(wanted)})}
        new_users = []
        for username in wanted:
            if username not in users:
                user = user_model(**{name_field: username})
                user.set_unusable_password()
                new_users.append(user)
        user_model.objects.bulk_create(new_users)
        self.result.counts["users"].created += len(new_users)
        users = {getattr(u, name_field): u for u in user_model.objects.filter(**{f"{name_field}__in": list(wanted)})}
        has_profile = set(cm.UserProfile.objects.filter(user__in=users.values()).values_list("user_id", flat=True))
        profiles = [
            cm.UserProfile(user=user, org_id=wanted[username])
            for username, user in users.items()
            if user.pk not in has_profile
        ]
        cm.UserProfile.objects.bulk_create(profiles)
        self.result.counts["userProfiles"].created += len(profiles)
        through, till_attr, user_attr = _m2m_names(cm.Till, "users")
        pairs, till_ids = {}, []
        for row in self.plan["tills"]:
            till = tills[(row.org_id, row.attrs["code"])]
            till_ids.append(till.pk)
            for username in row.extra["users"]:
                pairs[(till.pk, users[username].pk)] = {}
        self.links("tills.users", through, (till_attr, user_attr), pairs, till_ids)

    def write_programs(self) -> None:
        rows = self.plan["programs"]
        self.sync_ids("programs", cm.Program, rows, _in_org)
        desired = {}
        for row in rows:
            for tier in row.extra["tiers"]:
                attrs = dict(tier)
                desired[(row.id, attrs.pop("name"))] = attrs
        self.tiers = self.sync(
            "programs.tiers",
            cm.Tier,
            ("program_id", "name"),
            desired,
            self.by_parent(cm.Tier, "program_id", [row.id for row in rows]),
        )

    def write_segments(self) -> None:
        segments = self.natural("segments", cm.Segment, ("org_id", "name"))
        desired = {}
        for row in self.plan["segments"]:
            segment = segments[(row.org_id, row.attrs["name"])]
            for name in row.extra["partitions"]:
                desired[(segment.pk, name)] = {}
        partitions = self.sync(
            "segments.partitions",
            cm.Partition,
            ("segment_id", "name"),
            desired,
            self.by_parent(cm.Partition, "segment_id", [s.pk for s in segments.values()]),
        )
        by_pk = {segment.pk: segment for segment in segments.values()}
        self.partitions = {
            (by_pk[p.segment_id].org_id, by_pk[p.segment_id].name, p.name): p for p in partitions.values()
        }

    def write_coupon_series(self) -> None:
        rows = self.plan["couponSeries"]
        self.sync_ids("couponSeries", cm.CouponSeries, rows, _in_org)
        desired: dict[tuple, dict] = {}
        existing: list[cm.CouponCode] = []
        for row in rows:
            codes = row.extra["codes"]
            issued: set[str] = set()
            for chunk in _chunks(codes):
                existing += cm.CouponCode.objects.filter(series_id=row.id, code__in=chunk)
                issued.update(
                    IssuedUnit.objects.filter(coupon_series_id=row.id, coupon_code__in=chunk).values_list(
                        "coupon_code", flat=True
                    )
                )
            # A code that left the pool because it was issued never comes back.
            self.result.codes_already_issued += len(issued)
            desired.update({(row.id, code): {} for code in codes if code not in issued})
        self.sync("couponSeries.codes", cm.CouponCode, ("series_id", "code"), desired, existing)

    def accounts(self, rows: list[Row], owner: str) -> None:
        """Create missing points accounts with their opening balance; never touch existing ones."""
        rows = [row for row in rows if row.extra["opening_balance"] is not None]
        existing = set()
        for chunk in _chunks([row.id for row in rows]):
            existing.update(PointsAccount.objects.filter(**{f"{owner}__in": chunk}).values_list(owner, flat=True))
        new = []
        for row in rows:
            if row.id in existing:
                self.result.accounts_kept.append(row.path)
                continue
            balance = row.extra["opening_balance"]
            new.append(PointsAccount(org_id=row.org_id, opening_balance=balance, balance=balance, **{owner: row.id}))
        PointsAccount.objects.bulk_create(new, batch_size=BATCH)
        self.result.counts["pointsAccounts"].created += len(new)

    def write_customers(self) -> None:
        rows = self.plan["customers"]
        ids = [row.id for row in rows]
        self.sync_ids("customers", cm.Customer, rows, _in_org)
        self.accounts(rows, "customer_id")
        tiers, labels, cards, segments = {}, {}, {}, {}
        for row in rows:
            for program_id, tier in row.extra["tiers"]:
                tiers[(row.id, program_id)] = {"tier_id": self.tiers[(program_id, tier)].pk}
            for label_id, attrs in row.extra["labels"].items():
                labels[(row.id, label_id)] = attrs
            for card_key, attrs in row.extra["cards"].items():
                cards[card_key] = {**attrs, "customer_id": row.id}
            for segment, partition in row.extra["segments"]:
                segments[(row.id, self.partitions[(row.org_id, segment, partition)].pk)] = {}
        self.links("customers.tiers", cm.ProgramMembership, ("customer_id", "program_id"), tiers, ids)
        self.links("customers.labels", cm.CustomerLabel, ("customer_id", "label_id"), labels, ids)
        self.links("customers.segments", cm.SegmentMembership, ("customer_id", "partition_id"), segments, ids)
        file_customers = set(ids)
        existing_cards = {card.pk: card for card in self.by_parent(cm.Card, "customer_id", ids)}
        for series_id in {series_id for series_id, _ in cards}:
            numbers = [number for s, number in cards if s == series_id]
            for chunk in _chunks(numbers):
                existing_cards.update({c.pk: c for c in cm.Card.objects.filter(series_id=series_id, number__in=chunk)})
        self.sync(
            "customers.cards",
            cm.Card,
            ("series_id", "number"),
            cards,
            existing_cards.values(),
            delete=lambda card: card.customer_id in file_customers,
        )

    def write_groups(self) -> None:
        rows = self.plan["customerGroups"]
        self.sync_ids("customerGroups", cm.CustomerGroup, rows, _in_org)
        self.accounts(rows, "group_id")
        members = {(row.id, customer_id): {} for row in rows for customer_id in row.extra["members"]}
        self.links(
            "customerGroups.members", cm.GroupMembership, ("group_id", "customer_id"), members, [row.id for row in rows]
        )

    def write_rewards(self) -> None:
        rows = self.plan["rewards"]
        ids = [row.id for row in rows]
        # bulk_update and child rows skip auto_now: a reward whose row or any owned row
        # changed gets its updated_at set at the end; an unchanged reward keeps it.
        self.sync_ids(
            "rewards",
            cm.Reward,
            rows,
            lambda row: {"org_id": row.org_id, "brand_id": self.brands[(row.org_id, row.extra["brand"])].pk},
            on_change=lambda reward: self.touched_rewards.add(reward.pk),
        )
        new_rewards = self.created["rewards"]
        touch = lambda obj: self.touched_rewards.add(obj.reward_id)  # noqa: E731
        for name, label in (
            ("categories", "categoryIds"),
            ("groups", "groupIds"),
            ("card_series", "cardSeriesIds"),
            ("labels", "labelIds"),
        ):
            through, reward_attr, other_attr = _m2m_names(cm.Reward, name)
            pairs = {(row.id, other): {} for row in rows for other in row.extra[name]}
            self.links(f"rewards.{label}", through, (reward_attr, other_attr), pairs, ids, on_change=touch)
        through, reward_attr, tier_attr = _m2m_names(cm.Reward, "target_tiers")
        pairs = {(row.id, self.tiers[ref].pk): {} for row in rows for ref in row.extra["tiers"]}
        self.links("rewards.tiers", through, (reward_attr, tier_attr), pairs, ids, on_change=touch)
        pairs = {
            (row.id, self.partitions[(row.org_id, segment, partition)].pk): {}
            for row in rows
            for segment, partition in row.extra["segments"]
        }
        self.links(
            "rewards.segments", cm.RewardSegmentTarget, ("reward_id", "partition_id"), pairs, ids, on_change=touch
        )
        media = {}
        for row in rows:
            for item in row.extra["media"]:
                attrs = dict(item)
                media[(row.id, attrs.pop("kind"), attrs.pop("position"))] = attrs
        self.links("rewards.media", cm.RewardMedia, ("reward_id", "kind", "position"), media, ids, on_change=touch)
        languages = {}
        for row in rows:
            for item in row.extra["languages"]:
                attrs = dict(item)
                languages[(row.id, attrs.pop("language"))] = attrs
        self.links(
            "rewards.languageSpecificInfo",
            cm.RewardLanguageContent,
            ("reward_id", "language"),
            languages,
            ids,
            on_change=touch,
        )
        configs = [config for row in rows for config in row.extra["payment_configs"]]
        self.sync_ids(
            "rewards.paymentConfigs",
            cm.PaymentConfig,
            configs,
            lambda c: {"reward_id": c.extra["reward_id"]},
            existing=self.by_parent(cm.PaymentConfig, "reward_id", ids),
            delete=lambda obj: True,
            on_change=touch,
        )
        constraints = [c for row in rows for c in row.extra["constraints"]]
        self.sync_ids(
            "rewards.constraints",
            cm.RewardConstraint,
            constraints,
            lambda c: {"org_id": c.org_id, "reward_id": c.extra["reward_id"]},
            existing=self.by_parent(cm.RewardConstraint, "reward_id", ids),
            delete=lambda obj: True,
            on_change=touch,
        )
        stale = sorted(self.touched_rewards - new_rewards)
        for chunk in _chunks(stale):
            cm.Reward.objects.filter(pk__in=chunk).update(updated_at=timezone.now())
        # The rows above were written in bulk (no save()): the listing cache (prices,
        # targeting kind) of every reward of the file is recomputed once, in this transaction.
        # It is derived, so it is not in the file format and updated_at does not move for it.
        reward_listing_refresh(reward_ids=ids)

    def sequences_reset(self) -> None:
        """After explicit ids, later automatic ids must start above them (PostgreSQL sequences;
        SQLite's AUTOINCREMENT already follows the largest id)."""
        statements = connection.ops.sequence_reset_sql(no_style(), EXPLICIT_ID_MODELS)
        if statements:
            with connection.cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql)
