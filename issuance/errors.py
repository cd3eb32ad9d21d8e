"""Every error the issue and list APIs answer with: code, message, HTTP status (R7).

Services raise ``IssuanceError`` (never a DRF exception); the API's exception handler
turns it into the spec's ``status`` block. Messages are the pages' (the contract); where
the pages disagree with the rulings in spec/README.md, the rulings' wording is used.
"""

from dataclasses import dataclass, field
from enum import Enum


class ErrorCode(Enum):
    # (code, default message, HTTP status)
    BAD_REQUEST = (400, "Bad request", 400)
    PAYMENT_CONFIG_ID_MANDATORY = (400, "Invalid payment mode passed.,Payment configuration id is mandatory", 400)
    DUPLICATE_REQUEST_ID = (400, "Duplicate requestId", 400)
    UNAUTHENTICATED = (401, "Authentication credentials were not provided or are invalid", 401)
    FORBIDDEN = (403, "You do not have permission to perform this action", 403)
    REWARD_NOT_FOUND = (404, "Reward not found", 404)
    VALIDATION_CODE_INVALID = (808, "Validation code is invalid", 422)
    CUSTOMER_NOT_FOUND = (1014, "The provided identifier does not match any existing customer.", 404)
    GROUP_NOT_MEMBER = (1620, "user {user} does not belong to group {group}", 422)
    GROUP_INVALID = (1632, "group id/externalId/primary userId {group} passed is not valid", 422)
    BRAND_NOT_FOUND = (3004, "Brand not found", 404)
    CUSTOM_FIELDS_LIMIT = (3022, "At most 10 custom fields may have scope ISSUE_REWARD", 400)
    REWARD_NOT_ACTIVE = (8003, "fail to issue reward as reward is disabled or not started yet or expired", 422)
    VOUCHER_NOT_PRESENT = (8003, "fail to issue reward as voucher is not present", 422)
    ISSUE_FAILED = (8003, "fail to issue reward", 422)
    POINTS_NOT_REDEEMABLE = (8004, "fail to issue reward as points are not redeemable", 422)
    COUPON_SERIES_INVALID = (8004, "fail to issue reward as Coupon Series ID is invalid", 422)
    PARTIAL = (8010, "Reward issued partially", 200)
    OWNER_MISMATCH = (8011, "Reward ownership validation failed", 422)
    AMBIGUOUS_CUSTOMER = (8015, "More than one customer matches the identifier; pass the primary identifier", 422)
    PAYLOAD_MISMATCH = (10003, "Request payload is not matching for the passed requestId/s", 422)
    PARALLEL_CALL = (10004, "Parallel calls are not allowed for same customer", 409)
    IN_FLIGHT = (10004, "A request with this requestId is still being processed", 409)
    LIMIT_REACHED = (
        12005,
        "Reward constraint evaluation failed. Request failed. Max limit for the {frequency} is reached. "
        "Allowed limit is {limit} for level {level}",
        422,
    )
    INVALID_PAYMENT_MODE = (12016, "Invalid payment mode passed.", 422)
    NOT_IN_SEGMENT = (12034, "User Doesn't Belong To Segment Partition Defined For Reward Segment", 422)
    PAYMENT_MODE_REQUIRED = (12035, "Payment Mode needs to be passed when multiple payment Payment Config Exists", 422)
    NO_VALID_CARD = (12050, "User has no valid cards from card series linked to the reward.", 422)
    NO_VALID_LABEL = (12050, "User has no active label linked to the reward.", 422)
    TIER_NOT_ELIGIBLE = (12051, "User's loyalty tier is not eligible for the reward.", 422)
    MISSING_IDENTIFIER = (15006, "The request is missing the primary identifier.", 400)
    SERVICE_UNAVAILABLE = (503, "Service temporarily unavailable, retry later", 503)

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def http_status(self) -> int:
        return self.value[2]


# partnerError codes of 8004 (R6, R9)
PARTNER_NOT_REDEEMABLE = ("828", "points redemption rules/configuration not allowing redemption")


@dataclass
class IssuanceError(Exception):
    """A refusal with the spec's code and message. ``partner_error`` is (codes, messages)."""

    error: ErrorCode
    message: str = ""
    partner_error: tuple[list[str], list[str]] | None = None
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.message:
            self.message = self.error.message
        super().__init__(self.message)

    @property
    def code(self) -> int:
        return self.error.code

    @property
    def http_status(self) -> int:
        return self.error.http_status

    def status_block(self) -> dict:
        block = {"success": False, "code": self.code, "message": self.message}
        if self.partner_error is not None:
            codes, messages = self.partner_error
            block["partnerError"] = {"codes": list(codes), "messages": list(messages)}
        return block


def bad_request(message: str) -> IssuanceError:
    return IssuanceError(ErrorCode.BAD_REQUEST, message)


def limit_reached(*, frequency: str, limit, level: str) -> IssuanceError:
    return IssuanceError(
        ErrorCode.LIMIT_REACHED,
        ErrorCode.LIMIT_REACHED.message.format(frequency=frequency, limit=limit, level=level),
    )


def points_not_redeemable() -> IssuanceError:
    codes, messages = PARTNER_NOT_REDEEMABLE
    return IssuanceError(ErrorCode.POINTS_NOT_REDEEMABLE, partner_error=([codes], [messages]))


def insufficient_points() -> IssuanceError:
    """R7 step 2: the balance does not cover the priced rewards; nothing is issued."""
    return IssuanceError(ErrorCode.POINTS_NOT_REDEEMABLE)


def group_invalid(group_ref) -> IssuanceError:
    msg = ErrorCode.GROUP_INVALID.message.format(group=group_ref)
    return IssuanceError(ErrorCode.POINTS_NOT_REDEEMABLE, partner_error=(["1632"], [msg]))


def group_not_member(user, group) -> IssuanceError:
    msg = ErrorCode.GROUP_NOT_MEMBER.message.format(user=user, group=group)
    return IssuanceError(ErrorCode.POINTS_NOT_REDEEMABLE, f"fail to issue reward as {msg}", partner_error=(["1620"], [msg]))
