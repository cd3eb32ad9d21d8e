from django.db import models


class PrimaryIdentifier(models.TextChoices):
    MOBILE = "MOBILE", "Mobile"
    EMAIL = "EMAIL", "Email"
    EXTERNAL_ID = "EXTERNAL_ID", "External id"


class RedemptionType(models.TextChoices):
    GAMES = "GAMES"
    AUCTION = "AUCTION"
    CART_PROMOTION = "CART_PROMOTION"
    CASH_WALLET = "CASH_WALLET"
    VENDOR_ONLY_REWARD = "VENDOR_ONLY_REWARD"
    VOUCHER = "VOUCHER"
    CASH_BACK = "CASH_BACK"
    INTOUCH_REWARD = "INTOUCH_REWARD"
    PHYSICAL_REWARD = "PHYSICAL_REWARD"
    CHARITY = "CHARITY"
    MILES = "MILES"
    GIFT_CARD = "GIFT_CARD"
    SWEEPSTAKES = "SWEEPSTAKES"
    VENDOR_INTOUCH_REWARD = "VENDOR_INTOUCH_REWARD"
    CARD_DISC = "CARD_DISC"


# R5: CONV_RATIO is allowed only for these redemption types.
CONV_RATIO_REDEMPTION_TYPES = frozenset(
    {
        RedemptionType.CHARITY,
        RedemptionType.MILES,
        RedemptionType.CASH_WALLET,
        RedemptionType.AUCTION,
        RedemptionType.PHYSICAL_REWARD,
        RedemptionType.GIFT_CARD,
        RedemptionType.SWEEPSTAKES,
    }
)

# R10: units of these types each take one code of the reward's coupon series.
COUPON_REDEMPTION_TYPES = frozenset(
    {RedemptionType.INTOUCH_REWARD, RedemptionType.VOUCHER, RedemptionType.CARD_DISC}
)

VENDOR_REDEMPTION_TYPES = frozenset(
    {RedemptionType.VENDOR_ONLY_REWARD, RedemptionType.VENDOR_INTOUCH_REWARD}
)


class PaymentMode(models.TextChoices):
    FREE = "FREE"
    POINTS = "POINTS"
    CASH = "CASH"
    POINTS_CASH = "POINTS_CASH"
    CONV_RATIO = "CONV_RATIO"


class OwnerType(models.TextChoices):
    LOYALTY_PROGRAM = "LOYALTY_PROGRAM"
    MILESTONES = "MILESTONES"
    CAMPAIGNS = "CAMPAIGNS"
    JOURNEYS = "JOURNEYS"
    GOODWILL = "GOODWILL"


class TargetingKind(models.TextChoices):
    """R6: a reward is targeted by at most one kind of entity. ``Reward.targeting`` caches
    which kind a reward's link rows are of (catalogue.services.reward_listing_refresh).
    MIXED: links of several kinds, which R6 forbids and the admin and the importer refuse,
    but the schema does not prevent; such a reward is checked against every kind."""

    NONE = "NONE", "Everyone"
    SEGMENTS = "SEGMENTS", "Segments"
    CARD_SERIES = "CARD_SERIES", "Card series"
    LABELS = "LABELS", "Labels"
    TIERS = "TIERS", "Program tiers"
    MIXED = "MIXED", "Several kinds (breaks R6)"


class MembershipStatus(models.TextChoices):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class CardStatus(models.TextChoices):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    SUSPENDED = "SUSPENDED"
    EXPIRED = "EXPIRED"


class MediaKind(models.TextChoices):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"


class ConstraintLevel(models.TextChoices):
    # Per reward, summed over all customers.
    REWARD = "REWARD"
    # Per reward and customer.
    CUSTOMER = "CUSTOMER"
    # Org level, per customer across every reward of one redemption type.
    CUSTOMER_REDEMPTION_TYPE = "CUSTOMER_REDEMPTION_TYPE"


REWARD_CONSTRAINT_LEVELS = frozenset({ConstraintLevel.REWARD, ConstraintLevel.CUSTOMER})


class ConstraintKpi(models.TextChoices):
    QUANTITY = "QUANTITY"
    REDEMPTION_VALUE = "REDEMPTION_VALUE"


class Frequency(models.TextChoices):
    DAYS = "DAYS"
    WEEKS = "WEEKS"
    MONTHS = "MONTHS"
    NO_LIMIT = "NO_LIMIT"


class WindowType(models.TextChoices):
    FIXED = "FIXED"
    ROLLING = "ROLLING"


class Weekday(models.TextChoices):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


class CustomFieldScope(models.TextChoices):
    REWARD = "REWARD"
    ISSUE_REWARD = "ISSUE_REWARD"
    CATALOGUE_PROMOTION = "CATALOGUE_PROMOTION"


class CustomFieldType(models.TextChoices):
    BOOLEAN = "BOOLEAN"
    ENUM = "ENUM"
    DATE = "DATE"
    STRING = "STRING"
    INTEGER = "INTEGER"


class HttpMethod(models.TextChoices):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"


class LedgerEntryKind(models.TextChoices):
    CREDIT = "CREDIT", "Credit"
    DEBIT = "DEBIT", "Debit (manual)"
    REDEMPTION = "REDEMPTION", "Redemption"
    REVERSAL = "REVERSAL", "Reversal"
