"""The OpenAPI description of the list endpoint (list-user-rewards), from outside catalogue/api/.

``RewardListViewSet`` renders plain dicts (catalogue/api/serializers.py) and reads its query
parameters through ``RewardFilterSet`` (catalogue/filters.py). This module describes both for
drf-spectacular without touching that package: an ``OpenApiViewExtension`` wraps the view
class in ``extend_schema`` at schema-generation time only. Registered by importing this
module (catalogue/apps.py). Parameters and messages: docs/list-api.md.
"""

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from catalogue.choices import RedemptionType
from catalogue.filters import ACTIVATION_STATUSES, MAX_AMOUNT, MAX_DAYS_AGO, ORDER_DIRECTIONS, SORT_COLUMNS, STATUSES
from issuance.api.schema import COMMON_ERRORS, NOT_FOUND_EXAMPLES, ErrorResponseSerializer, StatusSerializer

MAX_PAGE = 2**31 - 1
MAX_ID = 2**63 - 1

# ---------------------------------------------------------------------------------------
# The response body (catalogue/api/serializers.py: reward_list_body)
# ---------------------------------------------------------------------------------------


class CategorySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    enabled = serializers.BooleanField()


class CriteriaSerializer(serializers.Serializer):
    programId = serializers.IntegerField(allow_null=True)
    tierId = serializers.IntegerField()
    tierName = serializers.CharField()


class RewardGroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    rank = serializers.IntegerField(allow_null=True)


class MediaSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    altText = serializers.CharField(allow_blank=True)
    id = serializers.IntegerField(allow_null=True, help_text="Internally stored files only")
    url = serializers.CharField(allow_blank=True)
    isExternal = serializers.BooleanField()


class ListPaymentConfigSerializer(serializers.Serializer):
    paymentMode = serializers.CharField()
    id = serializers.IntegerField()
    points = serializers.FloatField(allow_null=True)
    cashAmount = serializers.FloatField(allow_null=True)
    conversionRatio = serializers.FloatField(allow_null=True)


class CardSeriesSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()


class RichContentSerializer(serializers.Serializer):
    content = serializers.CharField(allow_blank=True)
    isEnabled = serializers.BooleanField()


class LanguageSpecificInfoSerializer(serializers.Serializer):
    language = serializers.CharField()
    richContentRO = RichContentSerializer()
    defaultValue = serializers.CharField(allow_blank=True, allow_null=True)


class ConstraintSerializer(serializers.Serializer):
    """One limit and what the customer consumed of it in its current window."""

    rewardConstraintId = serializers.IntegerField()
    orgId = serializers.IntegerField()
    kpi = serializers.CharField(help_text="QUANTITY or REDEMPTION_VALUE")
    constraintLevel = serializers.CharField()
    frequencyType = serializers.CharField()
    constraintLimitValue = serializers.FloatField()
    consumed = serializers.FloatField()
    isActive = serializers.BooleanField()
    isValid = serializers.BooleanField()
    rewardId = serializers.IntegerField(required=False, help_text="A reward's own limit")
    redemptionType = serializers.CharField(required=False, help_text="An org-level limit per redemption type")


class RewardRestrictionsSerializer(serializers.Serializer):
    isValid = serializers.BooleanField()
    rewardLevel = ConstraintSerializer(many=True)
    customerLevel = ConstraintSerializer(many=True)


class OrgLevelRestrictionsSerializer(serializers.Serializer):
    isValid = serializers.BooleanField()
    customerRedemptionTypeLevel = ConstraintSerializer(many=True)


class RewardDtoSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    imageId = serializers.IntegerField(allow_null=True)
    imageUrl = serializers.CharField(allow_null=True)
    thumbnailId = serializers.IntegerField(allow_null=True)
    thumbnailUrl = serializers.CharField(allow_null=True)
    termAndConditionsId = serializers.IntegerField(allow_null=True)
    termAndConditionsUrl = serializers.CharField(allow_null=True)
    tier = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_null=True)
    priority = serializers.IntegerField()
    intouchPoints = serializers.FloatField(allow_null=True)
    group = serializers.CharField(allow_null=True)
    startTime = serializers.CharField(help_text="YYYY-MM-DDTHH:MM:SS.SSSZ (UTC)")
    endTime = serializers.CharField(help_text="YYYY-MM-DDTHH:MM:SS.SSSZ (UTC)")
    expired = serializers.BooleanField()
    started = serializers.BooleanField()
    programId = serializers.IntegerField(allow_null=True)
    categoryList = CategorySerializer(many=True)
    customFields = serializers.DictField(child=serializers.CharField(allow_null=True, allow_blank=True))
    loyaltyProgramCriteria = CriteriaSerializer(many=True)
    groups = RewardGroupSerializer(many=True)
    rewardRestrictions = RewardRestrictionsSerializer()
    rewardRank = serializers.IntegerField(allow_null=True)
    images = MediaSerializer(many=True)
    videos = MediaSerializer(many=True)
    paymentConfigs = ListPaymentConfigSerializer(many=True)
    cardSeries = CardSeriesSerializer(many=True)
    labels = serializers.ListField(child=serializers.IntegerField())
    startDateTime = serializers.CharField(help_text="YYYY-MM-DDTHH:MM:SSZ")
    endDateTime = serializers.CharField(help_text="YYYY-MM-DDTHH:MM:SSZ")
    languageSpecificInfo = LanguageSpecificInfoSerializer(many=True)
    vendorId = serializers.CharField(allow_null=True)
    redemptionType = serializers.CharField()


class PagingDtoSerializer(serializers.Serializer):
    last = serializers.BooleanField()
    totalElements = serializers.IntegerField()
    totalPages = serializers.IntegerField()
    numberOfElements = serializers.IntegerField()
    first = serializers.BooleanField()
    size = serializers.IntegerField()
    number = serializers.IntegerField(help_text="0-based: page=N answers number N-1")


class RewardListResponseSerializer(serializers.Serializer):
    status = StatusSerializer()
    rewardList = RewardDtoSerializer(many=True)
    pagingDto = PagingDtoSerializer()
    orgLevelRestrictions = OrgLevelRestrictionsSerializer()


# ---------------------------------------------------------------------------------------
# Query parameters (catalogue.filters.RewardFilterSet and the view's userId / page / size)
# ---------------------------------------------------------------------------------------

_INTEGER_TEXT = {"type": "integer", "minimum": 0, "maximum": MAX_ID}


def _list(item: dict) -> dict:
    return {"type": "array", "items": item}


def _query(name: str, schema: dict, description: str, *, required=False, explode=None, examples=()) -> OpenApiParameter:
    return OpenApiParameter(
        name, schema, OpenApiParameter.QUERY, required=required, description=description,
        style="form" if explode is not None else None, explode=explode,
        examples=[OpenApiExample(str(value), value=value) for value in examples],
    )


LIST_PARAMETERS = [
    OpenApiParameter(
        "brand_name", str, OpenApiParameter.PATH, description="The brand's name, e.g. BUKL (3004 when unknown)",
        examples=[OpenApiExample("BUKL", value="BUKL")],
    ),
    _query("userId", {"type": "integer", "minimum": 0, "maximum": MAX_ID},
           "The customer's id in the caller's org. Missing → 15006 (400); unknown → 1014 (404).", required=True),
    _query("includeExpired", {"type": "boolean"}, "true shows ended rewards too."),
    _query("page", {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
           "1-based page; 0 turns pagination off (at most LIST_UNPAGED_CEILING rewards)."),
    _query("size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
           "Rewards per page (default 20; above LIST_MAX_PAGE_SIZE it is clamped)."),
    _query("groupName", _list({"type": "string"}), "Reward group names, comma-separated.", explode=False),
    _query("label", _list(_INTEGER_TEXT), "Label ids, comma-separated.", explode=False),
    _query("category", _list({"type": "string"}), "Category names, comma-separated.", explode=False),
    _query("redemptionType", _list({"type": "string", "enum": list(RedemptionType.values)}),
           "Redemption types, comma-separated (case-sensitive).", explode=False,
           examples=["VENDOR_ONLY_REWARD,MILES"]),
    _query("activationStatus", {"type": "string", "enum": list(ACTIVATION_STATUSES)},
           "ENABLED (default), DISABLED or ALL (case-sensitive)."),
    _query("minPoints", {"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)}, "Price in points at least."),
    _query("maxPoints", {"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)}, "Price in points at most."),
    _query("minCash", {"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)}, "Cash price at least."),
    _query("maxCash", {"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)}, "Cash price at most."),
    _query("status", _list({"type": "string", "enum": list(STATUSES)}),
           "LIVE, UPCOMING, ENDED, comma-separated (case-sensitive).", explode=False),
    _query("vendorId", _list(_INTEGER_TEXT), "Vendor ids, comma-separated.", explode=False),
    _query("createdOnDaysAgo", {"type": "integer", "minimum": 0, "maximum": MAX_DAYS_AGO},
           "Created on or before the day N days ago (the org's calendar)."),
    _query("sortBy", {"type": "string", "enum": list(SORT_COLUMNS)}, "Default: creation date, newest first."),
    _query("orderBy", {"type": "string", "enum": list(ORDER_DIRECTIONS)},
           "ASC or DESC (default DESC without sortBy, ASC with one)."),
]

# The page has no response example; this one follows its field table.
_REWARD_EXAMPLE = {
    "id": 225086, "name": "Fuel voucher", "description": "10% off fuel", "imageId": None,
    "imageUrl": "https://example.com/fuel.png", "thumbnailId": None, "thumbnailUrl": None,
    "termAndConditionsId": None, "termAndConditionsUrl": None, "tier": "Gold", "label": None, "priority": 1,
    "intouchPoints": 750, "group": "Fuel", "startTime": "2025-01-01T00:00:00.000Z",
    "endTime": "2027-01-01T00:00:00.000Z", "expired": False, "started": True, "programId": 626,
    "categoryList": [{"id": 1, "name": "fuel", "enabled": True}], "customFields": {"channel": "app"},
    "loyaltyProgramCriteria": [{"programId": 626, "tierId": 2, "tierName": "Gold"}],
    "groups": [{"id": 3, "name": "Fuel", "rank": 1}],
    "rewardRestrictions": {"isValid": True, "rewardLevel": [], "customerLevel": [
        {"rewardConstraintId": 12, "orgId": 4000085, "kpi": "QUANTITY", "constraintLevel": "CUSTOMER",
         "frequencyType": "DAYS", "constraintLimitValue": 15, "consumed": 2, "isActive": True, "isValid": True,
         "rewardId": 225086}]},
    "rewardRank": 1, "images": [], "videos": [],
    "paymentConfigs": [{"paymentMode": "POINTS", "id": 463, "points": 750, "cashAmount": None,
                        "conversionRatio": None}],
    "cardSeries": [], "labels": [], "startDateTime": "2025-01-01T00:00:00Z", "endDateTime": "2027-01-01T00:00:00Z",
    "languageSpecificInfo": [], "vendorId": None, "redemptionType": "INTOUCH_REWARD",
}
LIST_EXAMPLE = OpenApiExample(
    "rewards of a customer",
    value={
        "status": {"success": True, "code": 200, "message": "Rewards fetched successfully"},
        "rewardList": [_REWARD_EXAMPLE],
        "pagingDto": {"last": True, "totalElements": 1, "totalPages": 1, "numberOfElements": 1, "first": True,
                      "size": 20, "number": 0},
        "orgLevelRestrictions": {"isValid": True, "customerRedemptionTypeLevel": [
            {"rewardConstraintId": 7, "orgId": 4000085, "kpi": "QUANTITY", "constraintLevel": "CUSTOMER",
             "frequencyType": "MONTHS", "constraintLimitValue": 10, "consumed": 3, "isActive": True,
             "isValid": True, "redemptionType": "MILES"}]},
    },
    response_only=True,
    status_codes=["200"],
)


def _error(description: str, *examples) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description, examples=list(examples))


LIST_SCHEMA = extend_schema(
    operation_id="list-user-rewards",
    summary="List a customer's rewards",
    description="The rewards of the brand that the customer may take (R6 targeting), filtered, sorted and "
    "paged (list-user-rewards). Limits and the points balance do not hide a reward: `rewardRestrictions` "
    "and `orgLevelRestrictions` show what is left.",
    tags=["List rewards"],
    parameters=LIST_PARAMETERS,
    responses={
        200: OpenApiResponse(RewardListResponseSerializer, description="The page of rewards.",
                             examples=[LIST_EXAMPLE]),
        400: _error(
            "No userId (15006), or a parameter that is not valid; the message names each one.",
            OpenApiExample("no userId", value={"status": {"success": False, "code": 15006,
                                                          "message": "The request is missing the primary identifier."}},
                           response_only=True, status_codes=["400"]),
            OpenApiExample("bad parameter", value={"status": {"success": False, "code": 400,
                                                              "message": "status: unknown value 'live'"}},
                           response_only=True, status_codes=["400"]),
        ),
        **COMMON_ERRORS,
        404: _error("Unknown brand (3004) or customer (1014).", *NOT_FOUND_EXAMPLES[:2]),
    },
)


class OneBodyAutoSchema(AutoSchema):
    """The ``list`` action answers one object (status, rewardList, pagingDto, …), not a JSON
    array of the serializer, which drf-spectacular assumes for actions named ``list``."""

    def _is_list_view(self, serializer=None) -> bool:
        return False


class RewardListSchema(OpenApiViewExtension):
    target_class = "catalogue.api.views.RewardListViewSet"

    def view_replacement(self):
        class Described(self.target_class):
            def list(self, request, *args, **kwargs):
                return super().list(request, *args, **kwargs)

            list.schema = OneBodyAutoSchema  # the base class extend_schema builds on
            list = LIST_SCHEMA(list)

        return Described
