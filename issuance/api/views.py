"""The issue endpoints: validate the input, call ``rewards_issue``, render its result."""

import threading

from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.response import Response

from catalogue.models import Organisation
from issuance.errors import ErrorCode, IssuanceError, bad_request
from issuance.resolution import Identifiers, customer_for, till_for
from issuance.services import BULK, CONNECTED, SINGLE, IssueRequest, fingerprint, rewards_issue
from issuance.validation_codes import validation_code_issue

from .permissions import CanIssueThroughApi
from .schema import BULK_SCHEMA, CONNECTED_SCHEMA, SINGLE_SCHEMA, VALIDATION_CODE_SCHEMA
from .serializers import (
    BulkIssueSerializer,
    ConnectedIssueSerializer,
    IdentifierField,
    SingleIssueSerializer,
    common_kwargs,
    item_from,
    org_details_from,
)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def query_flag(request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f"{name}: must be true or false")


def json_object(request) -> dict:
    """The body as a JSON object, or a clear 4xx."""
    if not (request.content_type or "").lower().startswith("application/json"):
        raise UnsupportedMediaType(request.content_type or "(none)", detail="Content-Type must be application/json")
    if request.stream is None:
        raise bad_request("The request body is empty")
    data = request.data  # parsed (and refused when malformed) by ContractJSONParser
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object")
    return data


_serializers = threading.local()


def validated(serializer_class, data: dict) -> dict:
    """``data`` validated by ``serializer_class`` (a 400 naming the fields when it is not).

    One serializer per class and thread, its fields kept from call to call: DRF deep-copies a
    serializer's ~20 declared fields (and its nested serializers') into every new instance,
    ~10 % of a single issue's CPU (docs/performance.md, "Prepared statements and one serializer
    per thread"). Only the state of one validation is dropped before the next; the fields
    keep none between calls (they are bound to the serializer once and read ``initial_data``
    through it)."""
    kept = _serializers.__dict__
    serializer = kept.get(serializer_class)
    if serializer is None:
        serializer = kept[serializer_class] = serializer_class(data=data)
    else:
        for attr in ("_validated_data", "_errors", "_data"):
            serializer.__dict__.pop(attr, None)
        serializer.initial_data = data
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class RewardIssueViewSet(viewsets.ViewSet):
    """POST …/v1/user/reward/{rewardId}/issue and POST …/v1/user/rewards/issue."""

    permission_classes = [CanIssueThroughApi]

    def _request(self, request, *, mode, items, data) -> IssueRequest:
        return IssueRequest(
            org=request.user.profile.org,
            actor=request.user,
            till_code=request.query_params.get("username"),
            mode=mode,
            items=items,
            skip_validation=query_flag(request, "skip_validation"),
            dry_run=query_flag(request, "dryRun"),
            **common_kwargs(data),
        )

    @SINGLE_SCHEMA
    def issue_single(self, request, reward_id: int):
        raw = json_object(request)
        data = validated(SingleIssueSerializer, raw)
        reward_id = int(reward_id)
        item = item_from(data, reward_id=reward_id, fingerprint=fingerprint(SINGLE, reward_id, raw))
        result = rewards_issue(self._request(request, mode=SINGLE, items=[item], data=data))
        return Response(result.body, status=result.http_status)

    @BULK_SCHEMA
    def issue_bulk(self, request):
        raw = json_object(request)
        data = validated(BulkIssueSerializer, raw)
        context = {k: v for k, v in raw.items() if k != "rewards"}
        items = [
            item_from(item, reward_id=item["rewardId"], fingerprint=fingerprint(BULK, context, raw_item))
            for item, raw_item in zip(data["rewards"], raw["rewards"], strict=True)
        ]
        result = rewards_issue(self._request(request, mode=BULK, items=items, data=data))
        return Response(result.body, status=result.http_status)


MAX_SCOPE_ORGS = 2


def data_scope_orgs(request, *, write: bool) -> frozenset[int]:
    """R12: the orgs a call may act on, from the DATA-SCOPE / DATA-SCOPE-ORG headers.

    SELF (default): the caller's org. OTHER: the orgs listed in DATA-SCOPE-ORG (at most
    2), each a child of the caller's org. ALL: the caller's org and all its children, on
    GET only. Anything else is refused with 403."""
    org = request.user.profile.org
    scope = (request.headers.get("DATA-SCOPE") or "SELF").strip().upper()
    if scope == "SELF":
        return frozenset({org.pk})
    if scope == "ALL":
        if write:
            raise IssuanceError(ErrorCode.FORBIDDEN, "DATA-SCOPE ALL is allowed only on GET")
        return frozenset({org.pk, *Organisation.objects.filter(parent=org).values_list("pk", flat=True)})
    if scope != "OTHER":
        raise IssuanceError(ErrorCode.FORBIDDEN, "DATA-SCOPE must be SELF, OTHER or ALL")
    raw = [part.strip() for part in (request.headers.get("DATA-SCOPE-ORG") or "").split(",") if part.strip()]
    if not raw or len(raw) > MAX_SCOPE_ORGS or not all(part.isdigit() and len(part) < 19 for part in raw):
        raise IssuanceError(
            ErrorCode.FORBIDDEN, f"DATA-SCOPE OTHER needs DATA-SCOPE-ORG with 1 to {MAX_SCOPE_ORGS} org ids"
        )
    wanted = {int(part) for part in raw}
    children = set(Organisation.objects.filter(parent=org, pk__in=wanted).values_list("pk", flat=True))
    if children != wanted:
        raise IssuanceError(
            ErrorCode.FORBIDDEN, "DATA-SCOPE-ORG may only name child orgs connected to the caller's org"
        )
    return frozenset(wanted)


class ConnectedIssueViewSet(RewardIssueViewSet):
    """POST …/v1.1/user/rewards/issue/ (issue-reward-connected-orgs.txt)."""

    @CONNECTED_SCHEMA
    def issue_connected(self, request):
        allowed = data_scope_orgs(request, write=True)
        raw = json_object(request)
        data = validated(ConnectedIssueSerializer, raw)
        default_org = next(iter(allowed)) if len(allowed) == 1 else request.user.profile.org.pk
        context = {k: v for k, v in raw.items() if k != "rewards"}
        items = []
        for item, raw_item in zip(data["rewards"], raw["rewards"], strict=True):
            issue_item = item_from(item, reward_id=item["rewardId"], fingerprint=fingerprint(CONNECTED, context, raw_item))
            issue_item.org_id = issue_item.org_id or default_org
            items.append(issue_item)
        issue_request = self._request(request, mode=CONNECTED, items=items, data=data)
        issue_request.org_details = org_details_from(data)
        issue_request.allowed_org_ids = allowed
        result = rewards_issue(issue_request)
        return Response(result.body, status=result.http_status)


class ValidationCodeViewSet(viewsets.ViewSet):
    """POST …/v1/user/validation_code: send the customer a one-time code (R3). The code is
    delivered to the customer, never returned to the caller."""

    permission_classes = [CanIssueThroughApi]

    @VALIDATION_CODE_SCHEMA
    def create(self, request):
        till_for(org=request.user.profile.org, code=request.query_params.get("username"), user=request.user)  # R1
        raw = json_object(request)
        fields = {name: IdentifierField(required=False, allow_null=True) for name in ("mobile", "externalId")}
        identifiers = {}
        for name, field in fields.items():
            if raw.get(name) is not None:
                identifiers[name] = field.run_validation(raw[name])
        email = raw.get("email") or raw.get("emailId")
        if email is not None and not isinstance(email, str):
            raise bad_request("email: must be a string")
        customer = customer_for(
            org=request.user.profile.org,
            identifiers=Identifiers(
                mobile=identifiers.get("mobile"), email=email or None, external_id=identifiers.get("externalId")
            ),
        )
        row = validation_code_issue(customer=customer)
        return Response(
            {
                "status": {"success": True, "code": 200, "message": "Validation code sent"},
                "validTill": row.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            status=http.HTTP_200_OK,
        )
