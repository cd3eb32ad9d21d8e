"""Price in points (R4, R5): exact decimal arithmetic, rounding half-up, never float.

Pure functions over already-loaded rows; nothing here queries the database.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from catalogue.choices import PaymentMode
from catalogue.models import PaymentConfig, Reward

from .errors import ErrorCode, IssuanceError, bad_request

# R4: bulk CONV_RATIO with neither redemptionValue nor points issues one unit whose value
# is the quantity, and then the quantity may not exceed this.
MAX_CONV_RATIO_QUANTITY_AS_VALUE = 5
ONE = Decimal(1)
ZERO = Decimal(0)


def round_half_up(value: Decimal) -> Decimal:
    return value.quantize(ONE, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class PaymentRequest:
    """The ``paymentConfig`` block of one reward in a request."""

    id: int | None = None
    redemption_value: Decimal | None = None
    points: Decimal | None = None
    tender: dict | None = None


@dataclass(frozen=True)
class Price:
    config: PaymentConfig | None
    units: int
    points_per_unit: Decimal  # exact, before rounding
    redemption_value: Decimal | None  # per unit, for value rewards (CONV_RATIO)

    def points_for(self, units: int) -> Decimal:
        """Total points for the first ``units`` units, rounded half-up once over the total."""
        return round_half_up(self.points_per_unit * units)

    @property
    def total_points(self) -> Decimal:
        return self.points_for(self.units)

    def unit_points(self, index: int) -> Decimal:
        """Points of the index-th unit (0-based) so that the units add up to the total exactly."""
        return self.points_for(index + 1) - self.points_for(index)

    @property
    def mode(self) -> str | None:
        return self.config.mode if self.config else None


def payment_config_choose(
    reward: Reward, configs: list[PaymentConfig], requested: PaymentRequest, *, single: bool
) -> PaymentConfig | None:
    """R5: which of the reward's configs pays for it."""
    if requested.id is not None:
        for config in configs:
            if config.pk == requested.id:
                return config
        raise IssuanceError(ErrorCode.INVALID_PAYMENT_MODE)
    if len(configs) > 1:
        raise IssuanceError(ErrorCode.PAYMENT_CONFIG_ID_MANDATORY if single else ErrorCode.PAYMENT_MODE_REQUIRED)
    return configs[0] if configs else None


def tender_check(tender: dict | None) -> None:
    """The tender block is stored for audit and must add up when given (R5)."""
    if tender is None:
        return
    total = tender.get("totalAmount")
    parts = tender.get("tenders")
    amounts = [p.get("amount") for p in parts] if isinstance(parts, list) else [tender.get("amount")]
    amounts = [a for a in amounts if a is not None]
    if total is None or not amounts:
        return
    if sum(amounts, ZERO) != total:
        raise bad_request("paymentConfig.tender: the amounts must add up to totalAmount")


def price(reward: Reward, config: PaymentConfig | None, requested: PaymentRequest, *, quantity: int, single: bool) -> Price:
    """Units and points of one reward line. ``quantity`` is already the integer part, ≥ 1."""
    units = 1 if single else quantity
    if config is None:
        return Price(None, units, reward.intouch_points, None)
    if config.mode == PaymentMode.FREE or config.mode == PaymentMode.CASH:
        return Price(config, units, ZERO, None)
    if config.mode in (PaymentMode.POINTS, PaymentMode.POINTS_CASH):
        return Price(config, units, config.points or ZERO, None)
    # CONV_RATIO: redemption value = points × ratio, so points = value / ratio.
    ratio = config.conversion_ratio
    if requested.redemption_value is not None:
        value = requested.redemption_value
        per_unit = value / ratio
    elif requested.points is not None:
        per_unit = requested.points
        value = requested.points * ratio
    else:
        if not single and quantity > MAX_CONV_RATIO_QUANTITY_AS_VALUE:
            raise bad_request(
                f"quantity may not exceed {MAX_CONV_RATIO_QUANTITY_AS_VALUE} for a CONV_RATIO reward "
                "when neither redemptionValue nor points is given"
            )
        value = Decimal(quantity)
        per_unit = value / ratio
        units = 1
    integral = value.to_integral_value()
    return Price(config, units, per_unit, integral if value == integral else value)
