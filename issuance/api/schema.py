"""The OpenAPI description of the issue APIs (drf-spectacular): schema-only code.

Request bodies come from the serializers the views validate with
(issuance/api/serializers.py); the custom fields there are described by the field
extensions below. Response bodies are built by the engine (issuance/responses.py) as plain
dicts, so they are described here by documentation-only serializers that mirror those
functions; tests/test_fuzz_api.py checks every answer of the running API against them.
The spec pages' examples (/work/shared/spec/capillary-docs) are the examples.

The list endpoint is described from outside its package in catalogue/api_schema.py.
The schema is served at /api/schema/, Swagger UI at /api/docs/ (rewards_site/urls.py).
"""

import copy
import re

from django.conf import settings
from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

from apiclients.scopes import SCOPE_ISSUE, SCOPE_READ

from . import serializers as request_serializers

API_PREFIX = "/api_gateway/"
MAX_INT = request_serializers.MAX_INT

# ---------------------------------------------------------------------------------------
# Authentication: HTTP Basic and OAuth2 client credentials (docs/permissions.md)
# ---------------------------------------------------------------------------------------


class BasicAuthScheme(OpenApiAuthenticationExtension):
    target_class = "issuance.api.authentication.CachedBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "A till's (or staff user's) username and password. The user needs the "
            "API permission group and an organisation; `username` (query) names the till booked on.",
        }


class OAuth2ClientCredentialsScheme(OpenApiAuthenticationExtension):
    target_class = "issuance.api.authentication.ApiClientTokenAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "description": "Client-credentials tokens of a registered API client (apiclients). A token "
            "acts as the client's user, on the client's till, with the token's scopes.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": reverse("oauth2_provider:token"),
                    "scopes": dict(settings.OAUTH2_PROVIDER["SCOPES"]),
                }
            },
        }

    def get_security_requirement(self, auto_schema):
        # The same rule as issuance.api.permissions.required_scopes.
        scopes = getattr(auto_schema.view, "required_scopes", None)
        if scopes is None:
            scopes = [SCOPE_READ if auto_schema.method.upper() in SAFE_METHODS else SCOPE_ISSUE]
        return {self.name: sorted(scopes)}


# ---------------------------------------------------------------------------------------
# The request serializers' own field classes
# ---------------------------------------------------------------------------------------

_NUMERIC_TEXT = r"^[0-9]{1,18}(\.[0-9]{1,8})?$"


class IntegerPartFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "issuance.api.serializers.IntegerPartField"

    def map_serializer_field(self, auto_schema, direction):
        return {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_INT},
                {"type": "number", "minimum": 1, "maximum": MAX_INT},
                {"type": "string", "pattern": _NUMERIC_TEXT},
            ],
            "description": "A number (or numeric string); its integer part is taken (1.56 → 1). At least 1 "
            "and at most the org's maximum quantity.",
        }


class IdentifierFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "issuance.api.serializers.IdentifierField"

    def map_serializer_field(self, auto_schema, direction):
        if self.target.field_name == "programId":  # _CommonFields.validate_programId: digits only
            return {
                "anyOf": [{"type": "string", "pattern": "^[0-9]{1,18}$"},
                          {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}],
                "description": "The loyalty program's id: an integer, or a string of digits.",
            }
        return {
            "anyOf": [{"type": "string", "maxLength": 254}, {"type": "integer", "minimum": 0, "maximum": MAX_INT}],
            "description": "A string or a JSON integer.",
        }


# ---------------------------------------------------------------------------------------
# Response bodies (documentation only: the engine renders plain dicts, issuance/responses.py)
# ---------------------------------------------------------------------------------------


class PartnerErrorSerializer(serializers.Serializer):
    codes = serializers.ListField(child=serializers.CharField())
    messages = serializers.ListField(child=serializers.CharField())


class StatusSerializer(serializers.Serializer):
    """The spec's status block: every answer, success or error, carries one."""

    success = serializers.BooleanField()
    code = serializers.IntegerField(help_text="200, an HTTP status for request errors, or the spec's error code")
    message = serializers.CharField()
    partnerError = PartnerErrorSerializer(help_text="8004 only: the partner's codes (828, 1620, 1632)", required=False)


class ErrorResponseSerializer(serializers.Serializer):
    """Every error answer: the status block (and, for some issue refusals, the response's other keys)."""

    status = StatusSerializer()


class IntouchEntrySerializer(serializers.Serializer):
    pointsRedeemed = serializers.CharField(help_text="Points of this unit, as a string")
    couponCode = serializers.CharField(allow_null=True)
    codeExpiry = serializers.CharField(help_text="YYYY-MM-DD HH:MM:SS (UTC)", allow_null=True)
    codeExpiryDateTime = serializers.CharField(help_text="ISO-8601, UTC", allow_null=True, required=False)


class PromotionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    promotionCode = serializers.CharField()
    validTill = serializers.CharField(allow_null=True)


class PaymentConfigOutSerializer(serializers.Serializer):
    paymentMode = serializers.CharField(help_text="FREE, POINTS, CASH, POINTS_CASH or CONV_RATIO")
    id = serializers.IntegerField()
    points = serializers.FloatField(help_text="POINTS and POINTS_CASH: points per unit", required=False)
    cashAmount = serializers.FloatField(help_text="CASH and POINTS_CASH", allow_null=True, required=False)
    conversionRatio = serializers.FloatField(help_text="CONV_RATIO", required=False)


class RedemptionDetailsSerializer(serializers.Serializer):
    redemptionType = serializers.CharField()
    redemptionValue = serializers.FloatField(help_text="Per unit", required=False)
    totalRedemptionValue = serializers.FloatField(help_text="All issued units together", required=False)


class FulfillmentOutSerializer(serializers.Serializer):
    status = serializers.CharField()


_ANY_OBJECT = {"type": "object", "additionalProperties": True}


class SingleIssueResponseSerializer(serializers.Serializer):
    """issue-single-reward: the one issued unit (or the refusal, with the other keys null)."""

    status = StatusSerializer()
    intouch = IntouchEntrySerializer(help_text="The coupon of a coupon reward", allow_null=True)
    transactionId = serializers.IntegerField(help_text="The issuance line's id", allow_null=True, required=False)
    promotion = PromotionSerializer(allow_null=True)
    vendor = serializers.DictField(allow_null=True, help_text="The vendor's answer via the context map (voucher, …)")
    paymentConfig = PaymentConfigOutSerializer(allow_null=True, required=False)
    redemptionDetails = RedemptionDetailsSerializer(allow_null=True, required=False)
    fulfillmentDetails = FulfillmentOutSerializer(allow_null=True, required=False)
    customFields = serializers.DictField(allow_null=True, required=False)
    eventLogId = serializers.CharField(allow_null=True, required=False)
    requestId = serializers.CharField(allow_null=True, required=False)
    totalPointsRedeemed = serializers.FloatField(help_text="Ours: the points actually deducted", required=False)


class IssueLineSerializer(serializers.Serializer):
    """One reward of a bulk or v1.1 call."""

    status = StatusSerializer()
    transactionId = serializers.IntegerField(help_text="The issuance line's id", allow_null=True)
    rewardId = serializers.IntegerField()
    requestedQuantity = serializers.IntegerField()
    quantity = serializers.IntegerField(help_text="Units issued")
    pointsReferenceId = serializers.CharField(help_text="The first of pointsReferenceIds", allow_null=True)
    pointsReferenceIds = serializers.ListField(child=serializers.CharField())
    eventLogId = serializers.CharField(allow_null=True)
    requestId = serializers.CharField(allow_null=True)
    intouch = IntouchEntrySerializer(many=True, allow_null=True)
    promotions = PromotionSerializer(many=True)
    vendor = serializers.ListField(child=serializers.DictField())
    eventDateTime = serializers.CharField(allow_null=True, required=False)
    restrictions = serializers.DictField(allow_null=True)
    paymentConfig = PaymentConfigOutSerializer(allow_null=True)
    fulfillmentDetails = FulfillmentOutSerializer(allow_null=True)
    customFields = serializers.DictField(allow_null=True)
    redemptionDetails = RedemptionDetailsSerializer(allow_null=True)
    totalPointsRedeemed = serializers.FloatField(help_text="Ours: the points actually deducted", required=False)


class BulkIssueResponseSerializer(serializers.Serializer):
    status = StatusSerializer(help_text="200 all issued; 8010 some issued; otherwise the first refusal")
    rewards = IssueLineSerializer(many=True)


class ConnectedIssueLineSerializer(IssueLineSerializer):
    orgId = serializers.IntegerField(help_text="The org the reward was issued in")


class ConnectedIssueResponseSerializer(serializers.Serializer):
    status = StatusSerializer()
    rewards = ConnectedIssueLineSerializer(many=True)


class DryRunLimitSerializer(serializers.Serializer):
    rewardConstraintId = serializers.IntegerField()
    constraintLevel = serializers.CharField()
    kpi = serializers.CharField()
    frequencyType = serializers.CharField()
    constraintLimitValue = serializers.FloatField()
    consumed = serializers.FloatField()
    remaining = serializers.FloatField()
    resetsAt = serializers.CharField(allow_null=True)


class DryRunLineSerializer(serializers.Serializer):
    status = StatusSerializer()
    rewardId = serializers.IntegerField()
    requestedQuantity = serializers.IntegerField()
    quantity = serializers.IntegerField(help_text="Units that would be issued")
    totalPointsRedeemed = serializers.FloatField()
    paymentConfig = PaymentConfigOutSerializer(allow_null=True)
    redemptionDetails = RedemptionDetailsSerializer(allow_null=True)
    limits = DryRunLimitSerializer(many=True)
    couponStock = serializers.IntegerField(allow_null=True, help_text="Codes available, counted up to the line's need")
    replay = serializers.BooleanField(help_text="The requestId was already answered")


class DryRunResponseSerializer(serializers.Serializer):
    """``dryRun=true``: what the call would do; nothing is locked, written or sent to a vendor."""

    status = StatusSerializer()
    dryRun = serializers.BooleanField()
    pointsAvailable = serializers.FloatField()
    pointsRequired = serializers.FloatField()
    pointsShortBy = serializers.FloatField()
    rewards = DryRunLineSerializer(many=True)


class ValidationCodeSerializer(serializers.Serializer):
    """At least one identifier of the customer (R2)."""

    mobile = request_serializers.IdentifierField(required=False, allow_null=True)
    email = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    emailId = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    externalId = request_serializers.IdentifierField(required=False, allow_null=True)


class ValidationCodeResponseSerializer(serializers.Serializer):
    status = StatusSerializer()
    validTill = serializers.CharField(help_text="When the code expires (ISO-8601, UTC)")


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

USERNAME = OpenApiParameter(
    "username", str, OpenApiParameter.QUERY, required=True,
    description="The till (store) code the transaction is booked on. Missing → 400; a till the caller "
    "may not use (another org's, or not the token's) → 403.",
    examples=[OpenApiExample("demo till", value="demo_till")],
)
SKIP_VALIDATION = OpenApiParameter(
    "skip_validation", bool, OpenApiParameter.QUERY,
    description="true skips the validation code; honoured only when the org allows it "
    "(ALLOW_SKIPPING_VALIDATION), otherwise `validationCode` is required (808).",
)
DRY_RUN = OpenApiParameter(
    "dryRun", bool, OpenApiParameter.QUERY,
    description="true prices and checks everything and changes nothing (docs/issuance.md, \"Dry run\").",
)
DATA_SCOPE = OpenApiParameter(
    "DATA-SCOPE", str, OpenApiParameter.HEADER, enum=["SELF", "OTHER"],
    description="SELF (default): the caller's org. OTHER: the orgs of DATA-SCOPE-ORG, each a child of the "
    "caller's org (403 otherwise). ALL is for GET only (403 here).",
)
DATA_SCOPE_ORG = OpenApiParameter(
    "DATA-SCOPE-ORG", str, OpenApiParameter.HEADER, pattern=r"^[0-9]{1,18}(,[0-9]{1,18})?$",
    description="With DATA-SCOPE: OTHER, one or two org ids, comma-separated.",
)
REWARD_ID = OpenApiParameter(
    "reward_id", int, OpenApiParameter.PATH,
    description="The reward's id (at most 18 digits)",
    examples=[OpenApiExample("a reward of the demo catalogue", value=225086)],
)


def _error(description: str, *examples) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description, examples=list(examples))


def _status_example(name: str, code: int, message: str, *, http: int, partner=None, **extra) -> OpenApiExample:
    status = {"success": False, "code": code, "message": message}
    if partner:
        status["partnerError"] = {"codes": [partner[0]], "messages": [partner[1]]}
    return OpenApiExample(name, value={"status": status, **extra}, response_only=True, status_codes=[str(http)])


COMMON_ERRORS = {
    401: _error(
        "No credentials, or wrong ones (Basic: wrong username/password; bearer: unknown, expired or revoked token).",
        _status_example("invalid credentials", 401, "Invalid username/password.", http=401),
    ),
    403: _error(
        "The caller may not use the API, the till, or (v1.1) the DATA-SCOPE.",
        _status_example("till not available", 403, "The till is not available to this user", http=403),
    ),
    503: _error(
        "The database cannot be reached; retry later (Retry-After).",
        _status_example("database unavailable", 503,
                        "Service temporarily unavailable: the database cannot be reached. Retry later.", http=503),
    ),
}

BODY_ERRORS = {
    413: _error(
        "The body is larger than API_MAX_BODY_BYTES.",
        _status_example("too large", 413, "Request body too large (at most 1048576 bytes)", http=413),
    ),
    415: _error(
        "The body is not application/json.",
        _status_example("not JSON", 415, "Content-Type must be application/json", http=415),
    ),
}

# ---------------------------------------------------------------------------------------
# The spec pages' examples
# ---------------------------------------------------------------------------------------

OK = {"success": True, "code": 200, "message": "Reward issued successfully"}


def _request(name: str, value: dict, summary: str = "") -> OpenApiExample:
    return OpenApiExample(name, value=value, summary=summary or name, request_only=True)


def _response(name: str, value: dict, http: int = 200) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(http)])


SINGLE_REQUEST_EXAMPLES = [
    _request("by mobile", {"mobile": "919456430850", "brand": "BUKL", "transactionNumber": "23444", "notes": "test"}),
    _request("by externalId", {"externalId": "919456430850", "brand": "BUKL", "transactionNumber": "01987"}),
    _request("by emailId", {"emailId": "", "brand": "BUKL", "transactionNumber": "23444", "notes": "test"}),
    _request("with reward ownership", {
        "mobile": "917411982768", "brand": "SAHANA_TEST",
        "rewardOwnershipRO": {"ownerType": "CAMPAIGNS", "ownerId": "abc7"},
    }),
    _request("with programId", {
        "mobile": "919456430850", "brand": "BUKL", "transactionNumber": "23444", "notes": "test", "programId": "626",
    }),
    _request("with redemption value", {
        "mobile": "11223569865", "brand": "BUKL", "paymentConfig": {"redemptionValue": 1000},
    }, "CONV_RATIO: (1000 / 0.44) × 1 = 2273 points"),
]

_SINGLE_NULLS = {"promotion": None, "vendor": None, "paymentConfig": None, "fulfillmentDetails": None,
                 "customFields": None}
SINGLE_RESPONSE_EXAMPLES = [
    _response("coupon issued", {
        "status": OK,
        "intouch": {"pointsRedeemed": "10", "couponCode": "9632782882", "codeExpiry": "2024-12-13 00:00:00"},
        "transactionId": 303095, "promotion": None, "vendor": None,
        "paymentConfig": {"paymentMode": "POINTS", "id": 55, "points": 50.0000},
        "redemptionDetails": {"redemptionType": "MILES", "redemptionValue": 2},
        "fulfillmentDetails": None, "customFields": None, "eventLogId": "eventLogId124", "requestId": "req3",
    }),
    _response("miles issued (CONV_RATIO)", {
        "status": OK, "intouch": None, "transactionId": 330114, "promotion": None, "vendor": {},
        "paymentConfig": {"paymentMode": "CONV_RATIO", "id": 3799, "conversionRatio": 0.33},
        "redemptionDetails": {"redemptionType": "MILES", "totalRedemptionValue": 1000},
        "fulfillmentDetails": None, "customFields": None, "eventLogId": None, "requestId": None,
    }),
    _response("invalid payment mode", {
        "status": {"success": False, "code": 12016, "message": "Invalid payment mode passed."},
        "intouch": None, **_SINGLE_NULLS,
    }, 422),
    _response("no valid card", {
        "status": {"success": False, "code": 12050,
                   "message": "User has no valid cards from card series linked to the reward."},
        "intouch": None, "transactionId": 207595, **_SINGLE_NULLS, "redemptionDetails": None,
        "eventLogId": None, "requestId": None,
    }, 422),
]

GROUP_AND_REDEEMABLE_EXAMPLES = [
    _status_example("user not in the group", 8004,
                    "fail to issue reward as user 373971337 does not belong to group 124",
                    http=422, partner=("1620", "user 373971337 does not belong to group 124")),
    _status_example("points not redeemable", 8004, "fail to issue reward as points are not redeemable", http=422,
                    partner=("828", "points redemption rules/configuration not allowing redemption"),
                    intouch=None, promotion=None, vendor=None),
    _status_example("unknown group", 8004, "fail to issue reward as points are not redeemable", http=422,
                    partner=("1632", "group id/externalId/primary userId 381751178 passed is not valid"),
                    intouch=None, promotion=None, vendor=None),
    _status_example("payload does not match the requestId", 10003,
                    "Request payload is not matching for the passed requestId/s", http=422),
    _status_example("wrong validation code", 808, "Validation code is invalid", http=422),
]

BAD_REQUEST_EXAMPLES = [
    _status_example("payment config id mandatory", 400,
                    "Invalid payment mode passed.,Payment configuration id is mandatory", http=400),
    _status_example("duplicate requestId", 400, "Duplicate requestId", http=400),
    _status_example("no identifier", 15006, "The request is missing the primary identifier.", http=400),
    _status_example("a field named", 400, "rewards[0].quantity: must be at least 1", http=400),
    _status_example("no till", 400, "username (the till) is required", http=400),
]

NOT_FOUND_EXAMPLES = [
    _status_example("brand not found", 3004, "Brand not found", http=404),
    _status_example("customer not found", 1014, "The provided identifier does not match any existing customer.",
                    http=404),
    _status_example("reward not found", 404, "Reward not found: 225086", http=404),
]

CONFLICT_EXAMPLES = [
    _status_example("parallel call", 10004, "Parallel calls are not allowed for same customer", http=409),
]

BULK_REQUEST_EXAMPLES = [
    _request("with payment config", {
        "mobile": "919886022338", "brand": "marvel_automation", "transactionNumber": "Transaction-1716621508000",
        "rewards": [{"rewardId": 13649, "quantity": 40, "paymentConfig": {"id": 307, "points": 500}}],
    }),
    _request("with fulfillment status and custom field", {
        "brand": "lekhanaBrand", "transactionNumber": "123456789", "mobile": "916677777777",
        "rewards": [{"rewardId": 9252, "quantity": 1, "customFields": {"issue-reward-1": "issue-reward-values"},
                     "fulfillmentDetails": {"status": "SHIPPED"}}],
    }),
    _request("with user_group2_primary_user_id", {
        "mobile": "11223569865", "brand": "BUKL", "transactionNumber": "107",
        "rewards": [{"rewardId": 221441, "quantity": 2, "paymentConfig": {"id": 456}}],
        "user_group2_primary_user_id": "11223569865",
    }),
    _request("with params at reward level", {
        "mobile": "162651476021", "brand": "BUKL", "transactionNumber": 1719466915,
        "rewards": [{"rewardId": 153873, "quantity": 1, "paymentConfig": {"id": 34}, "params": {"test": "test"}},
                    {"rewardId": 225087, "quantity": 1}],
    }),
    _request("with params at request level", {
        "mobile": "9988776655", "brand": "BUKL", "transactionNumber": "NeeTesttr11",
        "params": {"denomination": 100, "quantity": 1},
        "rewards": [{"rewardId": 225086, "quantity": 1}, {"rewardId": 225087, "quantity": 1}],
    }),
    _request("with redemptionValue", {
        "mobile": "9988776655", "brand": "BUKL", "transactionNumber": "NeeTesttr11",
        "rewards": [{"rewardId": 225086, "quantity": 1, "paymentConfig": {"redemptionValue": 500}},
                    {"rewardId": 225087, "quantity": 1, "paymentConfig": {"redemptionValue": 100}}],
    }),
    _request("with eventLogId and requestId", {
        "mobile": "919825752814", "brand": "testOrg_marvel_20230822_147", "transactionNumber": "2344s4",
        "notes": "This is test", "eventLogId": "eventLogId124",
        "rewards": [{"rewardId": 125099, "quantity": 2, "requestId": "req3"},
                    {"rewardId": 125101, "quantity": 2, "requestId": "req4"}],
    }),
    _request("quantity and redemption value", {
        "mobile": "11223569865", "brand": "BUKL",
        "rewards": [{"rewardId": 311509, "quantity": 3, "paymentConfig": {"redemptionValue": 100}}],
    }, "CONV_RATIO: 3 units of 100, each 100 / ratio points"),
    _request("only quantity", {
        "mobile": "11223569865", "brand": "BUKL", "rewards": [{"rewardId": 308697, "quantity": 3}],
    }, "CONV_RATIO: one unit whose redemption value is the quantity: (3 / 0.44) × 1 = 7 points"),
]


def _line(reward_id, *, status=OK, quantity=2, requested=2, refs=("eiEWkQ",), request_id=None, event_log_id=None,
          intouch=None, transaction_id=177831, **extra):
    return {
        "status": status, "transactionId": transaction_id, "rewardId": reward_id, "requestedQuantity": requested,
        "quantity": quantity, "pointsReferenceId": None, "pointsReferenceIds": list(refs),
        "eventLogId": event_log_id, "requestId": request_id, "intouch": intouch, "promotions": [], "vendor": [],
        "restrictions": None, "paymentConfig": None, "fulfillmentDetails": None, "customFields": None,
        "redemptionDetails": None, **extra,
    }


def _coupons(*pairs):
    return [{"pointsRedeemed": points, "couponCode": code, "codeExpiry": "2024-12-27 00:00:00"}
            for points, code in pairs]


PARTIAL = {"success": False, "code": 8010, "message": "Reward issued partially"}
BULK_RESPONSE_EXAMPLES = [
    _response("200 OK", {
        "status": {"success": False, "code": 8010, "message": "Reward issued successfully"},
        "rewards": [
            _line(125099, request_id="req3", event_log_id="eventLogId124",
                  intouch=_coupons(("10", "32213631321782942853"), ("10", "05544786382604497680")),
                  redemptionDetails={"redemptionType": "MILES", "redemptionValue": 2}),
            _line(126100, request_id="req4", event_log_id="eventLogId125",
                  intouch=_coupons(("15", "3221363134382942853"), ("20", "055447842352604497680")),
                  redemptionDetails={"redemptionType": "MILES", "redemptionValue": 2}),
        ],
    }),
    _response("reward issued partially", {
        "status": PARTIAL,
        "rewards": [
            _line(125099, request_id="req3", event_log_id="eventLogId124",
                  intouch=_coupons(("10", "32213631321782942853"), ("10", "05544786382604497680"))),
            _line(125101, status={"success": False, "code": 8004,
                                  "message": "fail to issue reward as Coupon Series ID is invalid"},
                  quantity=0, refs=(), request_id="req4", event_log_id="eventLogId124", transaction_id=177832),
        ],
    }),
    _response("a free reward issued partially", {
        "status": OK,
        "rewards": [
            _line(225086, status=PARTIAL, requested=1, refs=(), transaction_id=397107,
                  intouch=[{"pointsRedeemed": "0", "couponCode": "1908009843", "codeExpiry": "2025-10-31 00:00:00",
                            "codeExpiryDateTime": "2025-10-31T00:00:00Z"},
                           {"pointsRedeemed": "0", "couponCode": "2088404495", "codeExpiry": "2025-10-31 00:00:00",
                            "codeExpiryDateTime": "2025-10-31T00:00:00Z"}],
                  eventDateTime="2025-05-08T13:48:13Z", paymentConfig={"paymentMode": "FREE", "id": 463}),
            _line(225087, status={"success": False, "code": 8003, "message": "fail to issue reward"}, requested=1,
                  quantity=0, refs=(), transaction_id=397108, eventDateTime="2025-05-08T13:48:13Z",
                  paymentConfig={"paymentMode": "FREE", "id": 464}),
        ],
    }),
]

CONNECTED_REQUEST_EXAMPLES = [
    _request("connected org", {
        "brand": "O2Brand", "transactionNumber": "123456789", "orgLevelDetails": [{"orgId": 4000876}],
        "rewards": [{"rewardId": 350, "quantity": 1, "orgId": 4000876, "paymentConfig": {"redemptionValue": 1}}],
        "externalId": "ext_id98543198",
    }, "DATA-SCOPE: OTHER, DATA-SCOPE-ORG: 4000876"),
]


def _connected_line(org_id: int) -> dict:
    return _line(
        350, requested=1, quantity=1, refs=("7Scaq1",), transaction_id=57097, orgId=org_id,
        pointsReferenceId="7Scaq1",
        vendor=[{"valid_till": "2027-11-01", "voucher": "OV4GJYQV3Y", "pointsRedeemed": "2",
                 "offer_name": "marvel-loadtest", "coupon_series_id": "234"}],
        paymentConfig={"paymentMode": "CONV_RATIO", "id": 54, "conversionRatio": 0.5000},
        redemptionDetails={"redemptionType": "MILES", "totalRedemptionValue": 1},
    )


CONNECTED_RESPONSE_EXAMPLES = [
    _response("issued in a child org", {"status": OK, "rewards": [_connected_line(4004543)]}),
    _response("issued in the own org", {"status": OK, "rewards": [_connected_line(4000085)]}),
]

DRY_RUN_EXAMPLE = _response("dry run", {
    "status": PARTIAL, "dryRun": True, "pointsAvailable": 100000, "pointsRequired": 20, "pointsShortBy": 0,
    "rewards": [
        {"status": OK, "rewardId": 125099, "requestedQuantity": 2, "quantity": 2, "totalPointsRedeemed": 20,
         "paymentConfig": {"paymentMode": "POINTS", "id": 7, "points": 10.0000}, "redemptionDetails": None,
         "limits": [], "couponStock": 2, "replay": False},
        {"status": {"success": False, "code": 8004, "message": "fail to issue reward as Coupon Series ID is invalid"},
         "rewardId": 125101, "requestedQuantity": 1, "quantity": 0, "totalPointsRedeemed": 0,
         "paymentConfig": {"paymentMode": "POINTS", "id": 8, "points": 10.0000}, "redemptionDetails": None,
         "limits": [], "couponStock": 0, "replay": False},
    ],
})


def _issue_responses(success, *, success_examples, refusal, path_not_found: bool = False) -> dict:
    """200 (issued, partial or a dry run) and every error of an issue call."""
    outcome = PolymorphicProxySerializer(
        component_name=success.__name__.removesuffix("Serializer").replace("Response", "Outcome"),
        serializers=[success, DryRunResponseSerializer],
        resource_type_field_name=None,
    )
    return {
        200: OpenApiResponse(
            response=outcome,
            description="At least one reward issued (status 200, or 8010 when partial), or `dryRun=true`'s "
            "prediction (`DryRunResponse`).",
            examples=[*success_examples, DRY_RUN_EXAMPLE],
        ),
        400: _error("The request is malformed or invalid; the message names the field or parameter.",
                    *BAD_REQUEST_EXAMPLES),
        **COMMON_ERRORS,
        404: _error("Unknown brand (3004), customer (1014) or reward"
                    + (" (also a reward id that is not a number)" if path_not_found else "") + ".",
                    *NOT_FOUND_EXAMPLES),
        409: _error("10004: the customer's account is busy, or the requestId is still being processed.",
                    *CONFLICT_EXAMPLES),
        **BODY_ERRORS,
        422: OpenApiResponse(
            response=refusal,
            description="A business refusal (8003, 8004, 808, 10003, 12005, 12016, 12034, 12035, 12050, …): "
            "the status block, with the response's other keys when rewards were planned.",
            examples=GROUP_AND_REDEEMABLE_EXAMPLES,
        ),
    }


SINGLE_SCHEMA = extend_schema(
    operation_id="issue-single-reward",
    summary="Issue single reward",
    description="Issues one unit of the reward to the customer named by mobile / email / externalId "
    "(issue-single-reward). Exactly one unit is issued whatever the quantity (R4).",
    tags=["Issue rewards"],
    parameters=[REWARD_ID, USERNAME, SKIP_VALIDATION, DRY_RUN],
    request=request_serializers.SingleIssueSerializer,
    examples=SINGLE_REQUEST_EXAMPLES,
    responses=_issue_responses(SingleIssueResponseSerializer, success_examples=SINGLE_RESPONSE_EXAMPLES,
                               refusal=SingleIssueResponseSerializer, path_not_found=True),
)

BULK_SCHEMA = extend_schema(
    operation_id="issue-bulk-reward",
    summary="Issue bulk reward",
    description="Issues `quantity` units of each reward (issue-bulk-reward): all-or-nothing on points, "
    "partial on issue (R7). At most API_MAX_BULK_REWARDS rewards per call.",
    tags=["Issue rewards"],
    parameters=[USERNAME, SKIP_VALIDATION, DRY_RUN],
    request=request_serializers.BulkIssueSerializer,
    examples=BULK_REQUEST_EXAMPLES,
    responses=_issue_responses(BulkIssueResponseSerializer, success_examples=BULK_RESPONSE_EXAMPLES,
                               refusal=BulkIssueResponseSerializer),
)

CONNECTED_SCHEMA = extend_schema(
    operation_id="issue-reward-connected-orgs",
    summary="Issue reward in connected orgs",
    description="Bulk issue across connected orgs (v1.1, R12): each reward names its `orgId`; DATA-SCOPE / "
    "DATA-SCOPE-ORG say which orgs the call may act on.",
    tags=["Issue rewards"],
    parameters=[USERNAME, SKIP_VALIDATION, DRY_RUN, DATA_SCOPE, DATA_SCOPE_ORG],
    request=request_serializers.ConnectedIssueSerializer,
    examples=CONNECTED_REQUEST_EXAMPLES,
    responses=_issue_responses(ConnectedIssueResponseSerializer, success_examples=CONNECTED_RESPONSE_EXAMPLES,
                               refusal=ConnectedIssueResponseSerializer),
)

VALIDATION_CODE_SCHEMA = extend_schema(
    operation_id="validation-code",
    summary="Send a validation code",
    description="Sends the customer a one-time code for issue calls without skip_validation (R3). The code "
    "goes to the customer (email / SMS), never to the caller; asking again within its life sends the same code.",
    tags=["Validation codes"],
    parameters=[USERNAME],
    request=ValidationCodeSerializer,
    examples=[_request("by mobile", {"mobile": "11223569865"})],
    responses={
        200: OpenApiResponse(
            ValidationCodeResponseSerializer, description="The code was sent.",
            examples=[_response("sent", {"status": {"success": True, "code": 200, "message": "Validation code sent"},
                                         "validTill": "2025-05-08T13:53:13Z"})],
        ),
        400: _error("Malformed body, no till, or no identifier (15006).", *BAD_REQUEST_EXAMPLES[2:]),
        **COMMON_ERRORS,
        404: _error("Unknown customer (1014).", NOT_FOUND_EXAMPLES[1]),
        **BODY_ERRORS,
        422: _error("Several customers match a secondary identifier (8015).",
                    _status_example("ambiguous customer", 8015,
                                    "More than one customer matches the identifier; pass the primary identifier",
                                    http=422)),
    },
)

# ---------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------

# Refusals that may carry either body: the status block alone (refused before any reward was
# planned), the call's own body (every reward refused), or a dry run's prediction. anyOf: the
# status block alone matches them all.
ALTERNATIVES = {
    ("issue-single-reward", "422"): ["SingleIssueResponse", "DryRunResponse", "ErrorResponse"],
    ("issue-bulk-reward", "422"): ["BulkIssueResponse", "DryRunResponse", "ErrorResponse"],
    ("issue-reward-connected-orgs", "422"): ["ConnectedIssueResponse", "DryRunResponse", "ErrorResponse"],
    ("issue-bulk-reward", "409"): ["BulkIssueResponse", "ErrorResponse"],
    ("issue-reward-connected-orgs", "409"): ["ConnectedIssueResponse", "ErrorResponse"],
}


def only_api_endpoints(endpoints, **kwargs):
    """The schema documents the rewards API only (not the admin, staff pages or OAuth views)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(API_PREFIX)]


_SNAKE_PARAM = re.compile(r"\{([a-z]+(?:_[a-z0-9]+)+)\}")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def documented_path(path: str) -> str:
    """A path as the spec pages write it: camelCase parameters (``{rewardId}``) and no trailing
    slash, except on v1.1 whose page has one. The API answers with and without the slash."""
    path = _SNAKE_PARAM.sub(lambda m: "{" + camel(m.group(1)) + "}", path)
    if path.endswith("/") and "/v1.1/" not in path:
        path = path[:-1]
    return path


def postprocess(result, generator, request, public):
    """Spec-form paths and path parameter names; anyOf for responses with several bodies."""
    paths = {}
    for path, operations in result["paths"].items():
        for operation in operations.values():
            if "requestBody" in operation:  # an empty body is refused (400) on every POST
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    parameter["name"] = camel(parameter["name"])
            for status_code, response in operation.get("responses", {}).items():
                choices = ALTERNATIVES.get((operation.get("operationId"), status_code))
                content = response.get("content", {}).get("application/json")
                if choices and content:
                    content["schema"] = {"anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in choices]}
        paths[documented_path(path)] = operations
    result["paths"] = paths
    schemas = result.get("components", {}).get("schemas", {})
    # List sizes the serializers enforce (drf-spectacular does not carry them for nested lists).
    for name in ("BulkIssueRequest", "ConnectedIssueRequest"):
        if name in schemas:
            schemas[name]["properties"]["rewards"].update(minItems=1, maxItems=settings.API_MAX_BULK_REWARDS)
    if "ConnectedIssueRequest" in schemas:
        schemas["ConnectedIssueRequest"]["properties"]["orgLevelDetails"]["maxItems"] = (
            request_serializers.ConnectedIssueSerializer().fields["orgLevelDetails"].max_length
        )
    missing = {name for names in ALTERNATIVES.values() for name in names} - set(schemas)
    if missing:  # each is referenced by some operation, so the generator made it
        raise AssertionError(f"components named by ALTERNATIVES are missing: {sorted(missing)}")
    return result


def schema_dict() -> dict:
    """The schema as served at /api/schema/ (a deep copy, safe to change)."""
    from drf_spectacular.generators import SchemaGenerator

    return copy.deepcopy(SchemaGenerator().get_schema(request=None, public=True))
