"""Request bodies of the issue APIs → the engine's request objects.

Only shape and types are checked here (400 naming the field); every business rule is
the engine's. Unknown keys are ignored so that clients sending fields of newer page
versions keep working (docs/api-decisions.md).
"""

from decimal import Decimal, InvalidOperation

from django.conf import settings
from rest_framework import serializers

from catalogue.choices import OwnerType
from issuance.pricing import PaymentRequest
from issuance.resolution import GroupRef, Identifiers
from issuance.services import IssueItem
from rewards_site.redaction import mask_card_numbers

MAX_TEXT = 1000
MAX_INT = 2**63 - 1


class IntegerPartField(serializers.Field):
    """R4: the integer part of a number (1.56 → 1). Numbers or numeric strings; not booleans."""

    default_error_messages = {"invalid": "must be a number", "too_large": "is too large"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, Decimal, str)):
            self.fail("invalid")
        try:
            value = Decimal(str(data).strip())
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if abs(value) > MAX_INT:
            self.fail("too_large")
        return int(value)  # truncates toward zero

    def to_representation(self, value):
        return value


class IdentifierField(serializers.Field):
    """mobile / ids may arrive as a JSON number or a string."""

    default_error_messages = {"invalid": "must be a string or an integer", "too_long": "is too long"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, str, Decimal)):
            self.fail("invalid")
        if isinstance(data, Decimal):
            if data != data.to_integral_value():
                self.fail("invalid")
            data = int(data)
        text = str(data).strip()
        if len(text) > 254:
            self.fail("too_long")
        return text or None

    def to_representation(self, value):
        return value


class PositiveDecimalField(serializers.DecimalField):
    def __init__(self, **kwargs):
        super().__init__(max_digits=18, decimal_places=4, min_value=Decimal("0.0001"), **kwargs)


class AnyJSONField(serializers.JSONField):
    """Any JSON value, as ContractJSONParser produced it. DRF's JSONField re-encodes the value
    with the standard library to prove it is JSON, which refuses the parser's Decimals:
    ``{"params": {"x": 1.5}}`` was answered "Value must be valid JSON"."""

    def to_internal_value(self, data):
        return data


class TenderSerializer(serializers.Serializer):
    totalAmount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False, allow_null=True)
    methodOfPayment = serializers.CharField(max_length=100, required=False, allow_blank=True, allow_null=True)
    methodOfPaymentId = IdentifierField(required=False, allow_null=True)
    tenderId = IdentifierField(required=False, allow_null=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False, allow_null=True)
    tenders = serializers.ListField(child=serializers.DictField(), required=False, max_length=20)

    def validate_tenders(self, value):
        for index, part in enumerate(value):
            amount = part.get("amount")
            if amount is None or isinstance(amount, bool) or not isinstance(amount, (int, Decimal)) or amount < 0:
                raise serializers.ValidationError(f"[{index}].amount: must be a number >= 0")
        return value

    def to_internal_value(self, data):
        """The tender is stored for audit: a card number given in it (``methodOfPaymentId``, a
        part of ``tenders``) is kept masked to its first 6 and last 4 digits, never whole."""
        return _cards_masked(super().to_internal_value(data))


def _cards_masked(value):
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, dict):
        return {key: _cards_masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cards_masked(item) for item in value]
    return value


class PaymentConfigSerializer(serializers.Serializer):
    id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)
    redemptionValue = PositiveDecimalField(required=False, allow_null=True)
    points = PositiveDecimalField(required=False, allow_null=True)
    tender = TenderSerializer(required=False, allow_null=True)

    def to_payment(self, data: dict | None) -> PaymentRequest:
        data = data or {}
        tender = data.get("tender")
        return PaymentRequest(
            id=data.get("id"),
            redemption_value=data.get("redemptionValue"),
            points=data.get("points"),
            tender=dict(tender) if tender else None,
        )


class FulfillmentSerializer(serializers.Serializer):
    status = serializers.CharField(max_length=50)


class OwnershipSerializer(serializers.Serializer):
    ownerType = serializers.ChoiceField(choices=OwnerType.values)
    ownerId = IdentifierField(required=False, allow_null=True)


class _ItemFields(serializers.Serializer):
    quantity = IntegerPartField(required=False, default=1)
    paymentConfig = PaymentConfigSerializer(required=False, allow_null=True)
    customFields = serializers.DictField(required=False, allow_null=True, allow_empty=True)
    fulfillmentDetails = FulfillmentSerializer(required=False, allow_null=True)
    params = AnyJSONField(required=False, allow_null=True)
    requestId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT)
    eventLogId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT)

    def validate_quantity(self, value):
        if value < 1:
            raise serializers.ValidationError("must be at least 1")
        return value


class BulkItemSerializer(_ItemFields):
    rewardId = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    orgId = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)


class _CommonFields(serializers.Serializer):
    mobile = IdentifierField(required=False, allow_null=True)
    email = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=254)
    emailId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=254)
    externalId = IdentifierField(required=False, allow_null=True)
    brand = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=200)
    transactionNumber = IdentifierField(required=False, allow_null=True)
    notes = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=5000)
    programId = IdentifierField(required=False, allow_null=True)
    eventDateTime = serializers.DateTimeField(required=False, allow_null=True)
    rewardOwnershipRO = OwnershipSerializer(required=False, allow_null=True)
    user_group2_primary_user_id = IdentifierField(required=False, allow_null=True)
    user_group2_id = IdentifierField(required=False, allow_null=True)
    user_group2_external_id = IdentifierField(required=False, allow_null=True)
    validationCode = IdentifierField(required=False, allow_null=True)

    def validate_programId(self, value):
        if value is not None and (not value.isdigit() or len(value) > 18):
            raise serializers.ValidationError("must be an integer")
        return value


class SingleIssueSerializer(_CommonFields, _ItemFields):
    pass


class BulkIssueSerializer(_CommonFields):
    eventLogId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT)
    params = AnyJSONField(required=False, allow_null=True)
    rewards = BulkItemSerializer(many=True, allow_empty=False)

    def validate_rewards(self, value):
        limit = settings.API_MAX_BULK_REWARDS
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} rewards per call")
        return value


class OrgLevelDetailSerializer(serializers.Serializer):
    orgId = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    params = AnyJSONField(required=False, allow_null=True)
    notes = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=5000)
    userGroup2PrimaryUserId = IdentifierField(required=False, allow_null=True)
    userGroup2Id = IdentifierField(required=False, allow_null=True)
    userGroup2ExternalId = IdentifierField(required=False, allow_null=True)


class ConnectedIssueSerializer(BulkIssueSerializer):
    """v1.1 (issue-reward-connected-orgs.txt): per-org details and rewards[].orgId."""

    orgLevelDetails = OrgLevelDetailSerializer(many=True, required=False, max_length=10)

    def validate_orgLevelDetails(self, value):
        ids = [d["orgId"] for d in value]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("each orgId at most once")
        return value


def org_details_from(data: dict) -> dict:
    from issuance.services import OrgDetails

    return {
        d["orgId"]: OrgDetails(
            params=d.get("params"),
            notes=d.get("notes"),
            group=GroupRef(
                primary_user_id=d.get("userGroup2PrimaryUserId"),
                group_id=d.get("userGroup2Id"),
                external_id=d.get("userGroup2ExternalId"),
            ),
        )
        for d in data.get("orgLevelDetails") or []
    }


def common_kwargs(data: dict) -> dict:
    """The engine's IssueRequest arguments shared by single and bulk calls."""
    ownership = data.get("rewardOwnershipRO")
    program_id = data.get("programId")
    return {
        "identifiers": Identifiers(
            mobile=data.get("mobile") or None,
            email=(data.get("email") or data.get("emailId") or None),
            external_id=data.get("externalId") or None,
        ),
        "brand_name": data.get("brand") or None,
        "transaction_number": data.get("transactionNumber") or "",
        "notes": data.get("notes") or "",
        "program_id": int(program_id) if program_id else None,
        "event_log_id": data.get("eventLogId") or None,
        "event_date_time": data.get("eventDateTime"),
        "params": data.get("params"),
        "ownership": (ownership["ownerType"], ownership.get("ownerId") or "") if ownership else None,
        "group": GroupRef(
            primary_user_id=data.get("user_group2_primary_user_id"),
            group_id=data.get("user_group2_id"),
            external_id=data.get("user_group2_external_id"),
        ),
        "validation_code": data.get("validationCode"),
    }


def item_from(data: dict, *, reward_id: int, fingerprint: str) -> IssueItem:
    fulfillment = data.get("fulfillmentDetails")
    return IssueItem(
        reward_id=reward_id,
        quantity=data.get("quantity") or 1,
        payment=PaymentConfigSerializer().to_payment(data.get("paymentConfig")),
        custom_fields=data.get("customFields"),
        fulfillment_status=fulfillment["status"] if fulfillment else None,
        params=data.get("params"),
        request_id=data.get("requestId") or None,
        event_log_id=data.get("eventLogId") or None,
        org_id=data.get("orgId"),
        fingerprint=fingerprint,
    )
