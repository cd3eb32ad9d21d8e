"""The staff pages under /staff/. Each view checks its input, calls one service or
selector, and renders; every query is scoped to ``request.staff_org_ids`` (an id of
another org is a 404, exactly like an unknown id)."""

import csv

import simplejson
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from catalogue.choices import PaymentMode
from catalogue.filters import RewardFilterSet
from catalogue.models import PaymentConfig, Reward
from issuance.eligibility import customer_facts, eligible_rewards_q
from issuance.errors import IssuanceError
from issuance.models import IssuanceLine

from . import selectors, services
from .choices import BulkJobStatus, BulkRowStatus, GoodwillStatus
from .filters import IssuanceLineFilterSet, org_time_zones
from .forms import (
    ApproveForm,
    BulkUploadForm,
    CustomerSearchForm,
    DashboardForm,
    FulfillmentForm,
    GoodwillForm,
    RejectForm,
    RequestIdForm,
)
from .models import GoodwillRequest
from .permissions import ApproverView, StaffView
from .why_not import reward_options

PAGE_SIZE = 20
HISTORY_PAGE_SIZE = 50
LEDGER_PAGE_SIZE = 25


def _page(request, queryset, *, size: int, param: str = "page"):
    return Paginator(queryset, size).get_page(request.GET.get(param))


def _customer_or_404(request, customer_id: int):
    customer = selectors.customer_for_staff(org_ids=request.staff_org_ids, customer_id=customer_id)
    if customer is None:
        raise Http404("No such customer")
    return customer


# ---------------------------------------------------------------- sign in / out


class LoginView(auth_views.LoginView):
    template_name = "staff/login.html"

    def get_default_redirect_url(self):
        return reverse("staff:search")


class LogoutView(auth_views.LogoutView):
    next_page = "staff:login"


# ---------------------------------------------------------------- customers


class CustomerSearchView(StaffView):
    def get(self, request):
        form = CustomerSearchForm(request.GET or None)
        results = None
        if form.is_valid():
            results = selectors.customers_find(org_ids=request.staff_org_ids, term=form.cleaned_data["q"])
            if len(results) == 1:
                return redirect("staff:customer", results[0].pk)
        return TemplateResponse(
            request,
            "staff/search.html",
            {"form": form, "results": results, "title": "Find a customer", "nav": "customers"},
        )


class CustomerDetailView(StaffView):
    def get(self, request, customer_id: int):
        customer = _customer_or_404(request, customer_id)
        profile = selectors.customer_profile(customer)
        ledger = _page(request, selectors.ledger_entries(profile.account), size=LEDGER_PAGE_SIZE)
        return TemplateResponse(
            request,
            "staff/customer.html",
            {"customer": customer, "p": profile, "ledger": ledger, "title": customer.display_name, "nav": "customers"},
        )


# ---------------------------------------------------------------- goodwill


def _default_till(request, org_id):
    tills = list(selectors.tills_usable(user=request.user, org_id=org_id)[:50])
    remembered = request.session.get(f"staff_till_{org_id}")
    return next((t for t in tills if t.pk == remembered), tills[0] if tills else None), tills


class GoodwillRewardsView(StaffView):
    """Pick a reward: the customer's eligible rewards (RewardFilterSet + eligible_rewards_q),
    each with what it costs or why it cannot be taken, and the rewards not targeted at
    this customer with the reason."""

    def get(self, request, customer_id: int):
        customer = _customer_or_404(request, customer_id)
        org = customer.org
        now = timezone.now()
        filterset = RewardFilterSet(request.GET, now=now, time_zone=org.time_zone)
        facts = customer_facts(customer)
        eligible_q = eligible_rewards_q(facts)
        base = Reward.objects.filter(org=org)
        rewards = filterset.filter_queryset(base) if filterset.is_valid() else base.none()
        configs = Prefetch("payment_configs", queryset=PaymentConfig.objects.order_by("id"))
        eligible_page = _page(request, rewards.filter(eligible_q).prefetch_related(configs), size=PAGE_SIZE)
        other_page = _page(request, rewards.exclude(eligible_q), size=PAGE_SIZE, param="opage")
        till, _tills = _default_till(request, org.pk)
        eligible, problem = reward_options(
            actor=request.user, customer=customer, rewards=list(eligible_page), till=till, now=now, facts=facts
        )
        others, _ = reward_options(
            actor=request.user, customer=customer, rewards=list(other_page), till=None, now=now, facts=facts
        )
        account = selectors.customer_profile_account(customer)
        return TemplateResponse(
            request,
            "staff/goodwill_rewards.html",
            {
                "customer": customer,
                "filterset": filterset,
                "eligible": eligible,
                "eligible_page": eligible_page,
                "others": others,
                "other_page": other_page,
                "problem": problem,
                "till": till,
                "account": account,
                "title": f"Goodwill for {customer.display_name}",
                "nav": "customers",
            },
        )


class GoodwillIssueView(StaffView):
    """Form → preview (a dry run) → confirm → issued (or waiting for approval)."""

    def _setup(self, request, customer_id, reward_id):
        self.customer = _customer_or_404(request, customer_id)
        self.reward = (
            Reward.objects.filter(pk=reward_id, org_id=self.customer.org_id).select_related("coupon_series").first()
        )
        if self.reward is None:
            raise Http404("No such reward")
        self.configs = selectors.payment_configs(self.reward)
        self.tills = selectors.tills_usable(user=request.user, org_id=self.customer.org_id)

    def _form(self, request, data=None, initial=None):
        org = self.customer.org
        config_ids = [c.pk for c in self.configs]
        return GoodwillForm(
            data,
            initial=initial,
            tills=self.tills,
            configs=PaymentConfig.objects.filter(pk__in=config_ids),
            config_count=len(self.configs),
            max_quantity=org.max_quantity,
            needs_code=not org.allow_skip_validation,
            value_reward=any(c.mode == PaymentMode.CONV_RATIO for c in self.configs),
        )

    def _render(self, request, form, *, quote=None, error=None, status=200):
        return TemplateResponse(
            request,
            "staff/goodwill_issue.html",
            {
                "customer": self.customer,
                "reward": self.reward,
                "configs": self.configs,
                "form": form,
                "quote": quote,
                "error": error,
                "account": selectors.customer_profile_account(self.customer),
                "title": f"Goodwill: {self.reward.name}",
                "nav": "customers",
            },
            status=status,
        )

    def get(self, request, customer_id: int, reward_id: int):
        self._setup(request, customer_id, reward_id)
        till, _ = _default_till(request, self.customer.org_id)
        initial = {"till": till, "quantity": 1, "payment_config": self.configs[0] if len(self.configs) == 1 else None}
        return self._render(request, self._form(request, initial=initial))

    def _order(self, form) -> services.GoodwillOrder:
        data = form.cleaned_data
        return services.GoodwillOrder(
            customer=self.customer,
            reward=self.reward,
            till=data["till"],
            quantity=data["quantity"],
            reason=data["reason"].strip(),
            payment_config_id=getattr(data.get("payment_config"), "pk", None),
            redemption_value=data.get("redemption_value"),
            validation_code=data.get("validation_code") or None,
        )

    def post(self, request, customer_id: int, reward_id: int):
        self._setup(request, customer_id, reward_id)
        form = self._form(request, request.POST)
        if not form.is_valid():
            return self._render(request, form, status=400)
        request.session[f"staff_till_{self.customer.org_id}"] = form.cleaned_data["till"].pk
        order = self._order(form)
        if request.POST.get("action") == "confirm":
            if form.cleaned_data["token"] and form.cleaned_data["digest"] == form.signature():
                return self._confirm(request, form, order)
            messages.warning(request, "The form changed after the preview: check this new preview, then confirm.")
        return self._preview(request, order)

    def _preview(self, request, order):
        data = request.POST.copy()
        data["token"] = services.new_token()
        form = self._form(request, data)
        form.is_valid()
        form.data["digest"] = form.signature()
        try:
            quote = services.goodwill_quote(actor=request.user, order=order)
        except IssuanceError as error:
            return self._render(request, form, error=f"{error.message} ({error.code})", status=422)
        return self._render(request, form, quote=quote)

    def _confirm(self, request, form, order):
        try:
            submitted = services.goodwill_submit(actor=request.user, order=order, token=form.cleaned_data["token"])
        except IssuanceError as error:
            return self._render(request, form, error=f"Not issued: {error.message} ({error.code})", status=422)
        except services.StaffError as error:
            return self._render(request, form, error=str(error), status=422)
        if submitted.goodwill_request is not None:
            gr = submitted.goodwill_request
            messages.info(
                request,
                f"{gr.points_quoted} points is above the approval threshold: goodwill request "
                f"{gr.pk} waits for a second staff member's approval.",
            )
            return redirect("staff:goodwill_request", gr.pk)
        line = (
            IssuanceLine.objects.filter(pk=submitted.line_id, org_id=self.customer.org_id).only("issuance_id").first()
        )
        status = submitted.body["status"]
        codes = [e["couponCode"] for e in submitted.body.get("intouch") or [] if e.get("couponCode")]
        vouchers = [str(v.get("voucher")) for v in submitted.body.get("vendor") or [] if v.get("voucher")]
        if submitted.body["quantity"]:
            extra = "".join(
                [
                    f" Coupon code(s): {', '.join(codes)}." if codes else "",
                    f" Voucher(s): {', '.join(vouchers)}." if vouchers else "",
                ]
            )
            messages.success(
                request,
                f"Issued {submitted.body['quantity']} × {self.reward.name} "
                f"for {submitted.body['totalPointsRedeemed']} points.{extra}",
            )
        else:
            messages.error(request, f"Not issued: {status['message']} ({status['code']})")
        return redirect("staff:issuance", line.issuance_id)


# ---------------------------------------------------------------- approvals


class GoodwillRequestView(StaffView):
    def get(self, request, pk: int, *, error=None, status=200, price_rose=None):
        try:
            gr = services.goodwill_request_get(pk=pk, org_ids=request.staff_org_ids)
        except GoodwillRequest.DoesNotExist:
            raise Http404("No such goodwill request") from None
        current, quote_error = None, None
        if gr.status == GoodwillStatus.PENDING:
            try:
                current = services.goodwill_requote(gr)
            except IssuanceError as e:
                quote_error = f"{e.message} ({e.code})"
        may_decide = request.is_approver and gr.status == GoodwillStatus.PENDING and gr.requester_id != request.user.pk
        current_points = current.points if current is not None else None
        return TemplateResponse(
            request,
            "staff/goodwill_request.html",
            {
                "gr": gr,
                "quote": current,
                "quote_error": quote_error,
                "may_decide": may_decide,
                "rose": current_points is not None and current_points > gr.points_quoted,
                "approve_form": ApproveForm(initial={"accepted_points": current_points or gr.points_quoted}),
                "reject_form": RejectForm(),
                "error": error,
                "price_rose": price_rose,
                "title": f"Goodwill request {gr.pk}",
                "nav": "approvals",
            },
            status=status,
        )


class GoodwillApproveView(ApproverView):
    def post(self, request, pk: int):
        form = ApproveForm(request.POST)
        accepted = form.cleaned_data["accepted_points"] if form.is_valid() else None
        try:
            gr = services.goodwill_approve(
                approver=request.user, pk=pk, org_ids=request.staff_org_ids, accepted_points=accepted
            )
        except GoodwillRequest.DoesNotExist:
            raise Http404("No such goodwill request") from None
        except services.PriceRose as rose:
            return GoodwillRequestView.get(self, request, pk, error=str(rose), status=409, price_rose=rose)
        except services.StaffError as error:
            return GoodwillRequestView.get(self, request, pk, error=str(error), status=409)
        if gr.status == GoodwillStatus.ISSUED:
            messages.success(request, f"Approved and issued goodwill request {gr.pk} ({gr.points_charged} points).")
        else:
            messages.error(request, f"Approved, but the issue failed: {gr.result_message} ({gr.result_code}).")
        return redirect("staff:goodwill_request", gr.pk)


class GoodwillRejectView(ApproverView):
    def post(self, request, pk: int):
        form = RejectForm(request.POST)
        if not form.is_valid():
            return GoodwillRequestView.get(self, request, pk, error="Say why the request is rejected.", status=400)
        try:
            gr = services.goodwill_reject(
                approver=request.user, pk=pk, org_ids=request.staff_org_ids, note=form.cleaned_data["note"]
            )
        except GoodwillRequest.DoesNotExist:
            raise Http404("No such goodwill request") from None
        except services.StaffError as error:
            return GoodwillRequestView.get(self, request, pk, error=str(error), status=409)
        messages.info(request, f"Goodwill request {gr.pk} rejected.")
        return redirect("staff:approvals")


class ApprovalQueueView(ApproverView):
    def get(self, request):
        pending = _page(request, selectors.goodwill_pending(org_ids=request.staff_org_ids), size=PAGE_SIZE)
        return TemplateResponse(
            request,
            "staff/approvals.html",
            {
                "pending": pending,
                "recent": selectors.goodwill_recent(org_ids=request.staff_org_ids),
                "title": "Approvals",
                "nav": "approvals",
            },
        )


# ---------------------------------------------------------------- follow-up


class IssuanceHistoryView(StaffView):
    def get(self, request):
        filterset = IssuanceLineFilterSet(
            request.GET, queryset=selectors.issuance_lines(org_ids=request.staff_org_ids), request=request
        )
        lines = filterset.qs if filterset.is_valid() else IssuanceLine.objects.none()
        page = _page(request, lines, size=HISTORY_PAGE_SIZE)
        # Dates and times in each org's calendar (the dashboard's), like the date filters.
        zones = org_time_zones(request.staff_orgs)
        tz_of = {org.pk: org.time_zone for org in request.staff_orgs}
        for line in page:
            line.local_tz = tz_of.get(line.org_id, "UTC")
        return TemplateResponse(
            request,
            "staff/issuances.html",
            {
                "filterset": filterset,
                "page": page,
                "time_zones": [(tz_name, [org.name for org in orgs]) for tz_name, orgs in zones.items()],
                "one_time_zone": next(iter(zones)) if len(zones) == 1 else None,
                "title": "Issuance history",
                "nav": "issuances",
            },
        )


class IssuanceDetailView(StaffView):
    def get(self, request, pk: int):
        issuance = selectors.issuance_detail(org_ids=request.staff_org_ids, issuance_id=pk)
        if issuance is None:
            raise Http404("No such issuance")
        statuses = selectors.fulfillment_statuses(issuance.org_id)
        goodwill = GoodwillRequest.objects.filter(line__issuance=issuance).select_related("decided_by").first()
        return TemplateResponse(
            request,
            "staff/issuance.html",
            {
                "issuance": issuance,
                "lines": list(issuance.lines.all()),
                "statuses": statuses,
                "goodwill": goodwill,
                "title": f"Issuance {issuance.pk}",
                "nav": "issuances",
            },
        )


class FulfillmentChangeView(StaffView):
    def post(self, request, line_id: int):
        line = (
            IssuanceLine.objects.filter(pk=line_id, org_id__in=request.staff_org_ids)
            .only("issuance_id", "org_id")
            .first()
        )
        if line is None:
            raise Http404("No such line")
        form = FulfillmentForm(request.POST, statuses=selectors.fulfillment_statuses_qs(line.org_id))
        if not form.is_valid():
            messages.error(request, "Choose one of the organisation's enabled fulfillment statuses.")
        else:
            try:
                change = services.line_fulfillment_change(
                    actor=request.user,
                    line_id=line_id,
                    org_ids=request.staff_org_ids,
                    status_id=form.cleaned_data["status"].pk,
                    note=form.cleaned_data["note"],
                )
            except services.StaffError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, f"Line {line_id} is now {change.to_status.name}.")
        return redirect(reverse("staff:issuance", args=[line.issuance_id]) + f"#line-{line_id}")


class RequestIdLookupView(StaffView):
    def get(self, request):
        form = RequestIdForm(request.GET or None)
        records = None
        if form.is_valid():
            records = selectors.idempotency_records(
                org_ids=request.staff_org_ids, request_id=form.cleaned_data["requestId"].strip()
            )
            for record in records:
                record.pretty = _pretty_json(record.response_body)
        return TemplateResponse(
            request,
            "staff/request_ids.html",
            {"form": form, "records": records, "title": "requestId look-up", "nav": "request_ids"},
        )


def _pretty_json(text: str) -> str:
    if not text:
        return ""
    try:
        return simplejson.dumps(simplejson.loads(text, use_decimal=True), indent=2, use_decimal=True)
    except ValueError:
        return text


# ---------------------------------------------------------------- bulk goodwill


def _usable_tills(request):
    from catalogue.models import Till

    tills = Till.objects.filter(org_id__in=request.staff_org_ids, is_active=True).select_related("org")
    if not request.user.is_superuser:
        tills = tills.filter(users=request.user)
    return tills.order_by("org__name", "code")


class BulkListView(StaffView):
    def get(self, request, form=None, status=200):
        form = form or BulkUploadForm(tills=_usable_tills(request))
        return TemplateResponse(
            request,
            "staff/bulk_list.html",
            {
                "form": form,
                "jobs": selectors.bulk_jobs(org_ids=request.staff_org_ids),
                "max_rows": settings.STAFF_BULK_MAX_ROWS,
                "title": "Bulk goodwill",
                "nav": "bulk",
            },
            status=status,
        )

    def post(self, request):
        form = BulkUploadForm(request.POST, request.FILES, tills=_usable_tills(request))
        if not form.is_valid():
            return self.get(request, form=form, status=400)
        upload = form.cleaned_data["file"]
        if upload.size > settings.STAFF_BULK_MAX_UPLOAD_BYTES:
            form.add_error("file", f"The file is too big: at most {settings.STAFF_BULK_MAX_UPLOAD_BYTES // 1024} KiB.")
            return self.get(request, form=form, status=400)
        till = form.cleaned_data["till"]
        try:
            job = services.bulk_job_create(
                actor=request.user, org=till.org, till=till, file_name=upload.name, data=upload.read()
            )
        except services.StaffError as error:
            form.add_error("file", str(error))
            return self.get(request, form=form, status=400)
        return redirect("staff:bulk_job", job.pk)


def _job_or_404(request, pk):
    job = selectors.bulk_job(org_ids=request.staff_org_ids, job_id=pk)
    if job is None:
        raise Http404("No such bulk job")
    return job


def _worker_nudge(job) -> None:
    """A RUNNING job nobody works on (the server restarted, the thread died): restart the
    thread, when this process runs one."""
    if job.status != BulkJobStatus.RUNNING or not settings.STAFF_BULK_WORKER_THREAD:
        return
    if job.lease_until is None or job.lease_until < timezone.now():
        from .worker import worker_thread_ensure

        worker_thread_ensure()


class BulkJobView(StaffView):
    def get(self, request, pk: int):
        job = _job_or_404(request, pk)
        _worker_nudge(job)
        progress = selectors.bulk_job_progress(job)
        show = request.GET.get("show") or ""
        shown = show if show in BulkRowStatus.values else ""
        rows = _page(request, selectors.bulk_rows(job, status=shown or None), size=HISTORY_PAGE_SIZE)
        return TemplateResponse(
            request,
            "staff/bulk_job.html",
            {
                "job": job,
                "progress": progress,
                "rows": rows,
                "show": shown,
                "row_statuses": BulkRowStatus.choices,
                "cannot_start": services.bulk_job_can_start(job) if job.status == BulkJobStatus.VALIDATED else None,
                "title": f"Bulk job {job.pk}",
                "nav": "bulk",
            },
        )


class BulkProgressView(StaffView):
    """The progress fragment the job page polls (htmx); stops the polling when the job
    is no longer running and asks the page to reload once to show the results."""

    def get(self, request, pk: int):
        job = _job_or_404(request, pk)
        _worker_nudge(job)
        response = TemplateResponse(
            request,
            "staff/_bulk_progress.html",
            {
                "job": job,
                "progress": selectors.bulk_job_progress(job),
            },
        )
        if job.status != BulkJobStatus.RUNNING and request.headers.get("HX-Request"):
            response["HX-Refresh"] = "true"
        return response


class BulkActionView(StaffView):
    action = ""

    def post(self, request, pk: int):
        service = {
            "start": lambda: services.bulk_job_start(job_id=pk, org_ids=request.staff_org_ids),
            "resume": lambda: services.bulk_job_resume(job_id=pk, org_ids=request.staff_org_ids),
            "retry": lambda: services.bulk_job_resume(job_id=pk, org_ids=request.staff_org_ids, retry_failed=True),
            "cancel": lambda: services.bulk_job_cancel(job_id=pk, org_ids=request.staff_org_ids),
        }[self.action]
        try:
            service()
        except services.BulkJob.DoesNotExist:
            raise Http404("No such bulk job") from None
        except services.StaffError as error:
            messages.error(request, str(error))
        return redirect("staff:bulk_job", pk)


class _Echo:
    def write(self, value):
        return value


RESULT_COLUMNS = [
    "row",
    "identifier",
    "reward",
    "quantity",
    "reason",
    "requestId",
    "status",
    "code",
    "message",
    "transactionId",
    "quantityIssued",
    "points",
    "couponCodes",
    "vouchers",
    "errors",
]


class BulkResultCsvView(StaffView):
    """One line per row of the file, streamed (thousands of rows in constant memory)."""

    def get(self, request, pk: int):
        job = _job_or_404(request, pk)
        writer = csv.writer(_Echo())

        def lines():
            yield writer.writerow(RESULT_COLUMNS)
            for row in selectors.bulk_rows(job).iterator(chunk_size=1000):
                yield writer.writerow(
                    [
                        row.row_number,
                        row.identifier,
                        row.reward_ref,
                        row.quantity or "",
                        row.reason,
                        row.request_id,
                        row.status,
                        row.result_code or "",
                        row.result_message,
                        row.line_id or "",
                        row.quantity_issued,
                        row.points if row.points else "0",
                        row.coupon_codes,
                        row.vouchers,
                        row.errors.replace("\n", "; "),
                    ]
                )

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="bulk-goodwill-{job.pk}-result.csv"'
        return response


class BulkTemplateCsvView(StaffView):
    def get(self, request):
        response = HttpResponse(
            "identifier,reward,quantity,reason,requestId,paymentConfigId\n919000000001,101,1,Late delivery apology,,\n",
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = 'attachment; filename="bulk-goodwill-template.csv"'
        return response


# ---------------------------------------------------------------- dashboard


class DashboardView(StaffView):
    def get(self, request):
        orgs = request.staff_orgs
        form = DashboardForm(request.GET or {"org": orgs[0].pk, "days": 30}, orgs=orgs)
        if form.is_valid():
            org = next(o for o in orgs if o.pk == form.cleaned_data["org"])
            days = form.cleaned_data["days"]
        else:
            org, days = orgs[0], 30
        data = selectors.dashboard(org=org, days=days, now=timezone.now())
        charts = {
            "days": data.days,
            "issued": data.issued_per_day,
            "points": data.points_per_day,
            "byType": {
                "labels": [r["label"] for r in data.by_type],
                "points": [float(r["points"] or 0) for r in data.by_type],
                "units": [r["units"] for r in data.by_type],
            },
            "byReward": {"labels": [r["label"] for r in data.by_reward], "units": [r["units"] for r in data.by_reward]},
            "failures": {
                "labels": [str(r["code"]) for r in data.failures],
                "counts": [r["count"] for r in data.failures],
            },
        }
        return TemplateResponse(
            request,
            "staff/dashboard.html",
            {
                "form": form,
                "org": org,
                "days": days,
                "data": data,
                "charts": charts,
                "title": "Dashboard",
                "nav": "dashboard",
            },
        )
