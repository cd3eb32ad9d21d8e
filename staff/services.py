"""Writes of the staff pages. Every issue goes through ``issuance.services.rewards_issue``
(channel STAFF or BULK_UPLOAD, owner type GOODWILL, the staff member as actor, the reason
mandatory); nothing here prices, checks eligibility or touches points by itself.

- ``goodwill_quote``: the dry run shown before confirming (no locks, no writes).
- ``goodwill_submit``: re-prices; at or below the org's approval threshold it issues at
  once, above it records a PENDING ``GoodwillRequest``. Idempotent per confirmed preview
  (the preview's token is the requestId / the request's ``submit_token``).
- ``goodwill_approve`` / ``goodwill_reject``: a second staff member decides. Approval
  flips the request PENDING → APPROVED under its row lock and commits *before* issuing
  (so two approvers cannot both issue; the engine call and any vendor call run with no
  lock of ours held); the issue uses the requestId ``goodwill-{id}``, so a retry can
  never issue twice.
- ``line_fulfillment_change``: one status change with its history row, under the line's lock.
- ``bulk_job_create`` / ``bulk_job_start`` / ``bulk_job_retry_failed`` / ``bulk_job_cancel``
  and ``bulk_row_issue`` (the worker's per-row call; staff/worker.py runs it).
"""

import csv
import io
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from catalogue.choices import OwnerType, PrimaryIdentifier
from catalogue.models import Customer, FulfillmentStatus, Organisation, Reward, Till
from issuance.errors import ErrorCode, IssuanceError
from issuance.models import Channel, FulfillmentChange, IdempotencyRecord, IssuanceLine
from issuance.pricing import PaymentRequest
from issuance.resolution import Identifiers
from issuance.services import BULK, IssueItem, IssueRequest, fingerprint, rewards_issue

from .choices import BulkJobStatus, BulkRowStatus, GoodwillStatus
from .models import BulkJob, BulkJobRow, GoodwillRequest

SUCCESS_CODE = 200
PARTIAL_CODE = ErrorCode.PARTIAL.code
BULK_RETRY_ATTEMPTS = 3  # a row refused for a lock (10004) is retried this many times


class StaffError(Exception):
    """A refusal of a staff action (shown to the user as is)."""


class PriceRose(StaffError):
    def __init__(self, *, accepted: Decimal, current: Decimal):
        self.accepted, self.current = accepted, current
        super().__init__(
            f"The price rose from {accepted} to {current} points since it was quoted; "
            "check the new price and approve again."
        )


# ---------------------------------------------------------------- the engine request


def customer_identifiers(customer: Customer, org: Organisation) -> Identifiers:
    """The customer's primary identifier: unique in the org, never ambiguous (R2)."""
    field = {
        PrimaryIdentifier.MOBILE: "mobile",
        PrimaryIdentifier.EMAIL: "email",
        PrimaryIdentifier.EXTERNAL_ID: "external_id",
    }[org.primary_identifier]
    return Identifiers(**{field: customer.primary_value})


@dataclass(frozen=True)
class GoodwillOrder:
    """What a staff member asks for: one reward for one customer."""

    customer: Customer  # with .org loaded
    reward: Reward
    till: Till
    quantity: int
    reason: str
    payment_config_id: int | None = None
    redemption_value: Decimal | None = None
    validation_code: str | None = None

    def fingerprint(self) -> str:
        return fingerprint(
            "staff-goodwill",
            self.customer.pk,
            self.reward.pk,
            self.quantity,
            self.payment_config_id,
            str(self.redemption_value) if self.redemption_value is not None else None,
            self.reason,
        )


# What a GoodwillRequest keeps of the order it waits to approve (not the validation code: an
# approved request is issued by the approver, without one).
_STORED_ORDER_FIELDS = ("customer", "reward", "till", "quantity", "reason", "payment_config_id", "redemption_value")


def _engine_request(
    order: GoodwillOrder, *, actor, request_id: str | None, dry_run: bool, channel: str = Channel.STAFF
) -> IssueRequest:
    org = order.customer.org
    return IssueRequest(
        org=org,
        actor=actor,
        till_code=order.till.code,
        mode=BULK,  # quantity units of the reward (the single call issues exactly one)
        identifiers=customer_identifiers(order.customer, org),
        items=[
            IssueItem(
                reward_id=order.reward.pk,
                quantity=order.quantity,
                payment=PaymentRequest(id=order.payment_config_id, redemption_value=order.redemption_value),
                request_id=request_id,
                fingerprint=order.fingerprint() if request_id else "",
            )
        ],
        skip_validation=order.validation_code in (None, ""),
        validation_code=order.validation_code or None,
        dry_run=dry_run,
        channel=channel,
        owner_type=OwnerType.GOODWILL,
        reason=order.reason,
    )


# ---------------------------------------------------------------- quote (dry run)


@dataclass(frozen=True)
class Quote:
    body: dict  # the engine's dry-run body (issuance.responses.dry_run_result)
    threshold: Decimal | None

    @property
    def line(self) -> dict:
        return self.body["rewards"][0]

    @property
    def points(self) -> Decimal:
        return Decimal(self.line["totalPointsRedeemed"])

    @property
    def status(self) -> dict:
        """The line's status, or the whole call's when the points do not cover it."""
        top = self.body["status"]
        return top if top["code"] == ErrorCode.POINTS_NOT_REDEEMABLE.code and self.points_short else self.line["status"]

    @property
    def ok(self) -> bool:
        return self.status["code"] in (SUCCESS_CODE, PARTIAL_CODE)

    @property
    def points_short(self) -> Decimal:
        return Decimal(self.body["pointsShortBy"])

    @property
    def needs_approval(self) -> bool:
        return self.threshold is not None and self.points > self.threshold


def goodwill_quote(*, actor, order: GoodwillOrder) -> Quote:
    """What issuing ``order`` would do now: price, payment config, limits left and when
    they reset, coupon stock, points available. No locks, no writes. Raises
    ``IssuanceError`` when the whole call would be refused (till, validation code, …)."""
    result = rewards_issue(_engine_request(order, actor=actor, request_id=None, dry_run=True))
    return Quote(body=result.body, threshold=order.customer.org.goodwill_approval_threshold)


# ---------------------------------------------------------------- submit / approve / reject


@dataclass(frozen=True)
class Submitted:
    line_id: int | None = None  # issued (or refused by the engine): the line
    body: dict | None = None
    goodwill_request: GoodwillRequest | None = None  # above the threshold: waiting for approval


def goodwill_submit(*, actor, order: GoodwillOrder, token: str) -> Submitted:
    """Issue ``order`` (re-priced now), or above the org's threshold record it for approval.

    ``token`` comes from the confirmed preview: submitting it twice (a double click, a
    reload) issues once — it is the engine requestId ``staff-{token}`` — or records one
    request. Raises ``IssuanceError`` for a refusal of the whole call."""
    if not order.reason.strip():
        raise StaffError("A reason is required for goodwill.")
    quote = goodwill_quote(actor=actor, order=order)
    if quote.needs_approval:
        existing = GoodwillRequest.objects.filter(submit_token=token).first()
        if existing is not None:
            return Submitted(goodwill_request=existing)
        try:
            with transaction.atomic():
                request = GoodwillRequest.objects.create(
                    org=order.customer.org,
                    requester=actor,
                    points_quoted=quote.points,
                    submit_token=token,
                    **{name: getattr(order, name) for name in _STORED_ORDER_FIELDS},
                )
        except IntegrityError:
            request = GoodwillRequest.objects.get(submit_token=token)
        return Submitted(goodwill_request=request)
    result = rewards_issue(_engine_request(order, actor=actor, request_id=f"staff-{token}", dry_run=False))
    line = result.body["rewards"][0]
    return Submitted(line_id=line.get("transactionId"), body=line)


def _order_of(request: GoodwillRequest) -> GoodwillOrder:
    return GoodwillOrder(**{name: getattr(request, name) for name in _STORED_ORDER_FIELDS})


def goodwill_request_get(*, pk: int, org_ids) -> GoodwillRequest:
    return GoodwillRequest.objects.select_related(
        "customer__org", "reward", "till", "requester", "decided_by", "payment_config", "line"
    ).get(pk=pk, org_id__in=org_ids)


def goodwill_requote(request: GoodwillRequest) -> Quote:
    """The price of a pending request now (shown to the approver)."""
    return goodwill_quote(actor=request.requester, order=_order_of(request))


def _decide(*, pk: int, org_ids, approver, to_status: str, note: str = "") -> GoodwillRequest:
    """PENDING → ``to_status`` under the request's row lock; committed by the caller's block."""
    request = GoodwillRequest.objects.select_for_update(of=("self",)).get(pk=pk, org_id__in=org_ids)
    if request.status != GoodwillStatus.PENDING:
        raise StaffError(f"This request was already decided ({request.get_status_display().lower()}).")
    if request.requester_id == approver.pk:
        raise StaffError("You cannot approve or reject your own goodwill request: another staff member must.")
    request.status, request.decided_by, request.decided_at = to_status, approver, timezone.now()
    request.decision_note = note[:500]
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "updated_at"])
    return request


def goodwill_approve(*, approver, pk: int, org_ids, accepted_points: Decimal | None = None) -> GoodwillRequest:
    """Approve and issue a PENDING request (see the module docstring for the locking).

    The request is re-priced first; if the price now is above what the approver accepted
    (the quoted price unless they confirmed a newer one), nothing happens and
    ``PriceRose`` says by how much. The issue is booked as the requester's, on their till,
    with their reason; the approver is recorded as ``decided_by``."""
    request = goodwill_request_get(pk=pk, org_ids=org_ids)
    if request.status != GoodwillStatus.PENDING:
        raise StaffError(f"This request was already decided ({request.get_status_display().lower()}).")
    if request.requester_id == approver.pk:
        raise StaffError("You cannot approve your own goodwill request: another staff member must.")
    accepted = request.points_quoted if accepted_points is None else accepted_points
    try:
        current = goodwill_requote(request).points
    except IssuanceError:
        current = None  # refused as a whole now: the real call below records why
    if current is not None and current > accepted:
        raise PriceRose(accepted=accepted, current=current)
    with transaction.atomic():
        request = _decide(pk=pk, org_ids=org_ids, approver=approver, to_status=GoodwillStatus.APPROVED)
    request = goodwill_request_get(pk=pk, org_ids=org_ids)
    order = _order_of(request)
    try:
        result = rewards_issue(
            _engine_request(order, actor=request.requester, request_id=request.request_id, dry_run=False)
        )
    except IssuanceError as error:
        request.status, request.result_code, request.result_message = GoodwillStatus.FAILED, error.code, error.message
    else:
        line = result.body["rewards"][0]
        request.line_id = line.get("transactionId")
        request.result_code, request.result_message = line["status"]["code"], line["status"]["message"]
        request.points_charged = Decimal(line["totalPointsRedeemed"])
        request.status = GoodwillStatus.ISSUED if line["quantity"] else GoodwillStatus.FAILED
    request.save(update_fields=["status", "line", "result_code", "result_message", "points_charged", "updated_at"])
    return request


def goodwill_reject(*, approver, pk: int, org_ids, note: str) -> GoodwillRequest:
    with transaction.atomic():
        return _decide(pk=pk, org_ids=org_ids, approver=approver, to_status=GoodwillStatus.REJECTED, note=note)


# ---------------------------------------------------------------- fulfillment


def line_fulfillment_change(*, actor, line_id: int, org_ids, status_id: int, note: str = "") -> FulfillmentChange:
    """Move a line to another enabled fulfillment status of its org and record the change.
    Locks the line so two changes cannot both read the same "from" status."""
    with transaction.atomic():
        line = IssuanceLine.objects.select_for_update(of=("self",)).get(pk=line_id, org_id__in=org_ids)
        if line.quantity == 0:
            raise StaffError("Nothing was issued on this line, so there is nothing to fulfil.")
        status = FulfillmentStatus.objects.filter(pk=status_id, org_id=line.org_id, enabled=True).first()
        if status is None:
            raise StaffError("Choose an enabled fulfillment status of this organisation.")
        if status.pk == line.fulfillment_status_id:
            raise StaffError(f"The line is already {status.name}.")
        change = FulfillmentChange.objects.create(
            line=line, from_status_id=line.fulfillment_status_id, to_status=status, actor=actor, note=note[:500]
        )
        line.fulfillment_status = status
        line.save(update_fields=["fulfillment_status", "updated_at"])
        return change


# ---------------------------------------------------------------- bulk goodwill

REQUIRED_COLUMNS = ("identifier", "reward", "quantity", "reason")
OPTIONAL_COLUMNS = ("requestid", "paymentconfigid")
_LOOKUP_CHUNK = 1000


class BulkFileError(StaffError):
    """The file as a whole cannot be read (not a CSV, missing columns, too many rows)."""


@dataclass
class _Row:
    number: int
    identifier: str
    reward_ref: str
    quantity_text: str
    reason: str
    request_id: str
    payment_config_text: str
    errors: list[str]
    customer: Customer | None = None
    reward: Reward | None = None
    quantity: int = 0
    payment_config_id: int | None = None


def _read_csv(data: bytes) -> list[_Row]:
    limit = settings.STAFF_BULK_MAX_ROWS
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BulkFileError("The file is not UTF-8 text: save it as CSV (UTF-8).") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = next(reader, None)
    if not header:
        raise BulkFileError("The file is empty.")
    columns = [name.strip().lower().replace("_", "").replace(" ", "") for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise BulkFileError(
            f"Missing column(s): {', '.join(missing)}. The header must name: identifier, reward, quantity, "
            "reason and optionally requestId, paymentConfigId."
        )
    index = {name: columns.index(name) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if name in columns}

    def cell(values, name):
        i = index.get(name)
        return values[i].strip() if i is not None and i < len(values) else ""

    rows = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(rows) >= limit:
                raise BulkFileError(f"Too many rows: at most {limit} per file. Split the file.")
            rows.append(
                _Row(
                    number=len(rows) + 1,
                    identifier=cell(values, "identifier"),
                    reward_ref=cell(values, "reward"),
                    quantity_text=cell(values, "quantity"),
                    reason=cell(values, "reason"),
                    request_id=cell(values, "requestid"),
                    payment_config_text=cell(values, "paymentconfigid"),
                    errors=[],
                )
            )
    except csv.Error as error:
        raise BulkFileError(f"The file is not valid CSV (line {reader.line_num}): {error}") from None
    if not rows:
        raise BulkFileError("The file has a header but no rows.")
    return rows


def _resolve_customers(org: Organisation, rows: list[_Row]) -> None:
    """Match each identifier against mobile, email and external id in the org (a few
    queries per thousand rows). One customer: that one. Several: the one whose primary
    identifier it is, else the row is refused as ambiguous (R2: never pick at random)."""
    values = sorted({r.identifier for r in rows if r.identifier})
    matches: dict[str, list[Customer]] = {}
    for start in range(0, len(values), _LOOKUP_CHUNK):
        chunk = values[start : start + _LOOKUP_CHUNK]
        found = (
            Customer.objects.filter(org=org)
            .filter(Q(mobile__in=chunk) | Q(email__in=chunk) | Q(external_id__in=chunk))
            .only("id", "org_id", "mobile", "email", "external_id", "primary_value")
        )
        for customer in found:
            for value in {customer.mobile, customer.email, customer.external_id} & set(chunk):
                matches.setdefault(value, []).append(customer)
    for row in rows:
        if not row.identifier:
            row.errors.append("identifier: required (mobile, email or external id)")
            continue
        candidates = matches.get(row.identifier, [])
        if len(candidates) > 1:
            candidates = [c for c in candidates if c.primary_value == row.identifier]
        if not candidates:
            row.errors.append(f"identifier: no customer with mobile, email or external id {row.identifier!r}")
        elif len(candidates) > 1:
            row.errors.append(f"identifier: {row.identifier!r} matches several customers; use their primary identifier")
        else:
            row.customer = candidates[0]


def _resolve_rewards(org: Organisation, rows: list[_Row]) -> None:
    ids = {int(r.reward_ref) for r in rows if r.reward_ref.isdigit() and len(r.reward_ref) < 19}
    names = {r.reward_ref for r in rows if r.reward_ref and not r.reward_ref.isdigit()}
    by_id, by_name = {}, {}
    if ids:
        by_id = {r.pk: r for r in Reward.objects.filter(org=org, pk__in=ids).prefetch_related("payment_configs")}
    if names:
        for reward in Reward.objects.filter(org=org, name__in=names).prefetch_related("payment_configs"):
            by_name.setdefault(reward.name, []).append(reward)
    for row in rows:
        if not row.reward_ref:
            row.errors.append("reward: required (a reward id or its exact name)")
            continue
        if row.reward_ref.isdigit():
            row.reward = by_id.get(int(row.reward_ref)) if len(row.reward_ref) < 19 else None
            if row.reward is None:
                row.errors.append(f"reward: no reward {row.reward_ref} in {org.name}")
        else:
            named = by_name.get(row.reward_ref, [])
            if len(named) == 1:
                row.reward = named[0]
            elif named:
                row.errors.append(f"reward: {len(named)} rewards are named {row.reward_ref!r}; use the reward id")
            else:
                row.errors.append(f"reward: no reward named {row.reward_ref!r} in {org.name}")
        if row.reward is None:
            continue
        configs = sorted(c.pk for c in row.reward.payment_configs.all())
        if row.payment_config_text:
            if not row.payment_config_text.isdigit() or int(row.payment_config_text) not in configs:
                row.errors.append(
                    f"paymentConfigId: {row.payment_config_text!r} is not a payment config of reward "
                    f"{row.reward.pk} (one of {', '.join(map(str, configs)) or 'none'})"
                )
            else:
                row.payment_config_id = int(row.payment_config_text)
        elif len(configs) > 1:
            row.errors.append(
                f"paymentConfigId: reward {row.reward.pk} has {len(configs)} payment configs; "
                f"give one of {', '.join(map(str, configs))}"
            )


def _check_fields(org: Organisation, rows: list[_Row]) -> None:
    reason_max = BulkJobRow._meta.get_field("reason").max_length
    request_id_max = BulkJobRow._meta.get_field("request_id").max_length
    seen: dict[str, int] = {}
    for row in rows:
        try:
            # R4: the integer part is taken (1.56 → 1), as the API does.
            quantity = int(Decimal(row.quantity_text)) if row.quantity_text else None
        except (InvalidOperation, ValueError, OverflowError):
            quantity = None
        if quantity is None or quantity < 1:
            row.errors.append(f"quantity: must be a whole number of at least 1, not {row.quantity_text!r}")
        elif quantity > org.max_quantity:
            row.errors.append(f"quantity: at most {org.max_quantity} in {org.name}")
        else:
            row.quantity = quantity
        if not row.reason:
            row.errors.append("reason: required for goodwill")
        elif len(row.reason) > reason_max:
            row.errors.append(f"reason: at most {reason_max} characters")
        if row.request_id:
            if len(row.request_id) > request_id_max:
                row.errors.append(f"requestId: at most {request_id_max} characters")
            elif row.request_id.startswith(("bulk-", "staff-", "goodwill-")):
                row.errors.append("requestId: the prefixes bulk-, staff- and goodwill- are reserved")
            elif row.request_id in seen:
                row.errors.append(f"requestId: {row.request_id!r} is also on row {seen[row.request_id]}")
            else:
                seen[row.request_id] = row.number


def row_fingerprint(row) -> str:
    """The engine fingerprint of a bulk row: the same row uploaded again (same requestId,
    same content) is recognised and never issued twice; different content is refused (10003)."""
    return fingerprint("staff-bulk", row.customer.pk, row.reward.pk, row.quantity, row.payment_config_id, row.reason)


def _check_request_ids(org: Organisation, rows: list[_Row]) -> None:
    """A requestId already used in the org for another payload would be refused (10003): say so now."""
    given = [r for r in rows if r.request_id and not r.errors]
    for start in range(0, len(given), _LOOKUP_CHUNK):
        chunk = given[start : start + _LOOKUP_CHUNK]
        stored = dict(
            IdempotencyRecord.objects.filter(org=org, request_id__in=[r.request_id for r in chunk]).values_list(
                "request_id", "fingerprint"
            )
        )
        for row in chunk:
            if row.request_id in stored and stored[row.request_id] != row_fingerprint(row):
                row.errors.append(f"requestId: {row.request_id!r} was already used for a different request (10003)")


def bulk_job_create(*, actor, org: Organisation, till: Till, file_name: str, data: bytes) -> BulkJob:
    """Read and validate a goodwill CSV; store the job and every row (valid rows PENDING,
    the others INVALID with their errors). Nothing is issued until ``bulk_job_start``.
    A few queries per thousand rows; rows are written in batches."""
    if len(data) > settings.STAFF_BULK_MAX_UPLOAD_BYTES:
        raise BulkFileError(f"The file is too big: at most {settings.STAFF_BULK_MAX_UPLOAD_BYTES // 1024} KiB.")
    if till.org_id != org.pk:
        raise StaffError("Choose a till of the organisation the rows are for.")
    rows = _read_csv(data)
    _check_fields(org, rows)
    _resolve_customers(org, rows)
    _resolve_rewards(org, rows)
    _check_request_ids(org, rows)
    with transaction.atomic():
        job = BulkJob.objects.create(
            org=org,
            till=till,
            created_by=actor,
            file_name=file_name[:255],
            total_rows=len(rows),
            invalid_rows=sum(1 for r in rows if r.errors),
        )
        BulkJobRow.objects.bulk_create(
            (
                BulkJobRow(
                    job=job,
                    row_number=r.number,
                    identifier=r.identifier[:254],
                    customer=r.customer,
                    reward_ref=r.reward_ref[:255],
                    reward=r.reward,
                    quantity=r.quantity,
                    payment_config_id=r.payment_config_id,
                    reason=r.reason[:500],
                    # Deterministic, so re-running the job (or resuming it) re-uses it (R8).
                    # An invalid row keeps a generated id: its own may be the duplicate that made it invalid.
                    request_id=(r.request_id if r.request_id and not r.errors else f"bulk-{job.pk}-{r.number}"),
                    status=BulkRowStatus.INVALID if r.errors else BulkRowStatus.PENDING,
                    errors="\n".join(r.errors),
                )
                for r in rows
            ),
            batch_size=1000,
        )
    return job


def bulk_job_can_start(job: BulkJob) -> str | None:
    """Why the job cannot be issued, or None."""
    if job.invalid_rows >= job.total_rows:
        return "No valid row to issue."
    return None


def _kick_worker() -> None:
    if settings.STAFF_BULK_WORKER_THREAD:
        from .worker import worker_thread_ensure

        transaction.on_commit(worker_thread_ensure)


def bulk_job_start(*, job_id: int, org_ids) -> BulkJob:
    """VALIDATED → RUNNING; the worker picks it up (a thread of this process when
    STAFF_BULK_WORKER_THREAD is on, else ``manage.py run_bulk_jobs``)."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update(of=("self",)).select_related("org").get(pk=job_id, org_id__in=org_ids)
        if job.status != BulkJobStatus.VALIDATED:
            raise StaffError(f"This job is already {job.get_status_display().lower()}.")
        problem = bulk_job_can_start(job)
        if problem:
            raise StaffError(problem)
        job.status, job.started_at = BulkJobStatus.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at"])
        _kick_worker()
    return job


def bulk_job_resume(*, job_id: int, org_ids, retry_failed: bool = False) -> BulkJob:
    """Run a job again: its PENDING rows (a job interrupted by a crash or a restart) and,
    with ``retry_failed``, its FAILED and PARTIAL rows too (after the points were topped
    up, say). Safe any number of times: each row keeps its requestId, so what was issued
    is never issued again and a partial row issues only what is outstanding (R8)."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update(of=("self",)).select_related("org").get(pk=job_id, org_id__in=org_ids)
        if job.status not in (BulkJobStatus.RUNNING, BulkJobStatus.DONE):
            raise StaffError(f"This job is {job.get_status_display().lower()}: it cannot be re-run.")
        if retry_failed:
            job.rows.filter(status__in=[BulkRowStatus.FAILED, BulkRowStatus.PARTIAL]).update(
                status=BulkRowStatus.PENDING, attempts=0
            )
        job.status, job.finished_at, job.lease_until = BulkJobStatus.RUNNING, None, None
        job.save(update_fields=["status", "finished_at", "lease_until"])
        _kick_worker()
    return job


def bulk_job_cancel(*, job_id: int, org_ids) -> BulkJob:
    """Stop issuing: rows not yet issued become SKIPPED (a row being issued finishes)."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update(of=("self",)).get(pk=job_id, org_id__in=org_ids)
        if job.status in (BulkJobStatus.DONE, BulkJobStatus.CANCELLED):
            raise StaffError(f"This job is already {job.get_status_display().lower()}.")
        job.rows.filter(status=BulkRowStatus.PENDING).update(status=BulkRowStatus.SKIPPED)
        job.status, job.finished_at = BulkJobStatus.CANCELLED, timezone.now()
        job.save(update_fields=["status", "finished_at"])
    return job


def _row_outcome(row: BulkJobRow, line: dict) -> None:
    code = line["status"]["code"]
    row.status = {SUCCESS_CODE: BulkRowStatus.ISSUED, PARTIAL_CODE: BulkRowStatus.PARTIAL}.get(
        code, BulkRowStatus.FAILED
    )
    row.result_code, row.result_message = code, line["status"]["message"]
    row.line_id = line.get("transactionId")
    row.quantity_issued = line.get("quantity") or 0
    row.points = Decimal(line.get("totalPointsRedeemed") or 0)
    row.coupon_codes = " ".join(e["couponCode"] for e in line.get("intouch") or [] if e.get("couponCode"))
    row.vouchers = " ".join(str(v.get("voucher")) for v in line.get("vendor") or [] if v.get("voucher"))


def bulk_row_issue(row: BulkJobRow) -> BulkJobRow:
    """Issue one PENDING row through the engine (channel BULK_UPLOAD) and record the
    outcome. ``row`` has ``job`` (with ``org``, ``till``, ``created_by``), ``customer``
    and ``reward`` loaded. A crash after the engine committed and before the row is saved
    leaves it PENDING: running it again replays the stored result (same requestId and
    fingerprint), it does not issue again."""
    job = row.job
    row.customer.org = job.org
    order = GoodwillOrder(
        customer=row.customer,
        reward=row.reward,
        till=job.till,
        quantity=row.quantity,
        reason=row.reason,
        payment_config_id=row.payment_config_id,
    )
    request = _engine_request(
        order, actor=job.created_by, request_id=row.request_id, dry_run=False, channel=Channel.BULK_UPLOAD
    )
    request.items[0].fingerprint = row_fingerprint(row)
    row.attempts += 1
    try:
        result = rewards_issue(request)
    except IssuanceError as error:
        retryable = error.error in (ErrorCode.PARALLEL_CALL, ErrorCode.IN_FLIGHT, ErrorCode.SERVICE_UNAVAILABLE)
        if retryable and row.attempts < BULK_RETRY_ATTEMPTS:
            row.save(update_fields=["attempts"])
            return row
        row.status, row.result_code, row.result_message = BulkRowStatus.FAILED, error.code, error.message
    else:
        _row_outcome(row, result.body["rewards"][0])
    row.processed_at = timezone.now()
    row.save()
    return row


def new_token() -> str:
    """A preview's token: the requestId of the issue it may confirm."""
    return secrets.token_hex(16)
