"""Catalogue rules that span several rows (R5, R6, R10 custom fields).

Each check returns a list of ``(path, message)`` pairs, ``path`` relative to the thing
checked (``""`` for the thing itself, ``"[2].conversionRatio"`` for a part of it), so
that the admin forms and the JSON importer report the same rule in their own terms.
Nothing here touches the database.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .choices import CONV_RATIO_REDEMPTION_TYPES, CustomFieldScope, CustomFieldType, PaymentMode

MAX_PAYMENT_CONFIGS = 5
MAX_ISSUE_REWARD_CUSTOM_FIELDS = 10
MAX_ENUM_VALUES = 30
MAX_ENUM_VALUE_LENGTH = 80
MAX_STRING_CUSTOM_FIELD = 255

Errors = list[tuple[str, str]]


@dataclass(frozen=True)
class PaymentConfigSpec:
    mode: str
    points: Decimal | None = None
    cash_amount: Decimal | None = None
    conversion_ratio: Decimal | None = None


def payment_configs_errors(
    *, redemption_type: str, intouch_points: Decimal, configs: Sequence[PaymentConfigSpec]
) -> Errors:
    """R5: the payment configs of one reward, taken together."""
    errors: Errors = []
    modes = [c.mode for c in configs]
    if len(configs) > MAX_PAYMENT_CONFIGS:
        errors.append(("", f"at most {MAX_PAYMENT_CONFIGS} payment configs per reward"))
    for exclusive in (PaymentMode.FREE, PaymentMode.CONV_RATIO):
        if exclusive in modes and len(configs) > 1:
            errors.append(("", f"{exclusive} cannot be combined with other payment modes"))
    if PaymentMode.CONV_RATIO in modes and redemption_type not in CONV_RATIO_REDEMPTION_TYPES:
        allowed = ", ".join(sorted(CONV_RATIO_REDEMPTION_TYPES))
        errors.append(("", f"CONV_RATIO is only allowed for {allowed}; not for {redemption_type}"))
    if not configs and not intouch_points:
        errors.append(("", "a reward with no payment config and 0 points must have a FREE payment config"))
    for i, config in enumerate(configs):
        errors.extend((f"[{i}]{path}", msg) for path, msg in _payment_config_errors(config))
    return errors


def _payment_config_errors(config: PaymentConfigSpec) -> Errors:
    errors: Errors = []
    if config.mode not in PaymentMode.values:
        return [(".paymentMode", f"unknown payment mode {config.mode!r}")]
    needs_points = config.mode in (PaymentMode.POINTS, PaymentMode.POINTS_CASH)
    needs_cash = config.mode in (PaymentMode.CASH, PaymentMode.POINTS_CASH)
    if needs_points and (config.points is None or config.points < 0):
        errors.append((".points", f"must be >= 0 for {config.mode}"))
    if needs_cash and (config.cash_amount is None or config.cash_amount < 0):
        errors.append((".cashAmount", f"must be >= 0 for {config.mode}"))
    if config.mode == PaymentMode.CONV_RATIO:
        if config.conversion_ratio is None or config.conversion_ratio <= 0:
            errors.append((".conversionRatio", "must be > 0"))
    elif config.conversion_ratio is not None:
        errors.append((".conversionRatio", f"only CONV_RATIO configs have a conversion ratio, not {config.mode}"))
    if not needs_points and config.points not in (None, Decimal(0)):
        errors.append((".points", f"{config.mode} configs carry no points"))
    return errors


def targeting_errors(*, partitions: int, card_series: int, labels: int, tiers: int) -> Errors:
    """R6: a reward is targeted by at most one kind of entity."""
    kinds = [
        name
        for name, count in (("segments", partitions), ("card series", card_series), ("labels", labels), ("tiers", tiers))
        if count
    ]
    if len(kinds) > 1:
        return [("", f"a reward is targeted by at most one kind of entity; this one uses {' and '.join(kinds)}")]
    return []


def custom_field_definition_errors(definition) -> dict[str, str]:
    """One definition on its own (type rules). Field names are the model's."""
    errors: dict[str, str] = {}
    if definition.field_type == CustomFieldType.ENUM:
        values = definition.enum_values
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            errors["enum_values"] = "an ENUM needs a list of non-empty strings"
        else:
            if len(values) > MAX_ENUM_VALUES:
                errors["enum_values"] = f"at most {MAX_ENUM_VALUES} values"
            elif any(len(v) > MAX_ENUM_VALUE_LENGTH for v in values):
                errors["enum_values"] = f"each value at most {MAX_ENUM_VALUE_LENGTH} characters"
            elif len(set(values)) != len(values):
                errors["enum_values"] = "values must be distinct"
            if not definition.default_value:
                errors["default_value"] = "an ENUM needs a default value"
            elif definition.default_value not in values:
                errors["default_value"] = "the default must be one of the values"
    elif definition.enum_values:
        errors["enum_values"] = "only ENUM fields have values"
    if definition.default_value and definition.field_type != CustomFieldType.ENUM:
        problem = custom_field_value_error(definition.field_type, definition.default_value, [])
        if problem:
            errors["default_value"] = problem
    return errors


def custom_field_count_errors(scopes: Iterable[str]) -> Errors:
    """At most 10 definitions with scope ISSUE_REWARD per org (3022)."""
    count = sum(1 for s in scopes if s == CustomFieldScope.ISSUE_REWARD)
    if count > MAX_ISSUE_REWARD_CUSTOM_FIELDS:
        return [("", f"at most {MAX_ISSUE_REWARD_CUSTOM_FIELDS} custom fields with scope ISSUE_REWARD (3022)")]
    return []


def custom_field_value_error(field_type: str, value, enum_values: Sequence[str]) -> str | None:
    """Type check of one value, as given in JSON; None when it is valid."""
    import datetime

    if field_type == CustomFieldType.BOOLEAN:
        if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false")):
            return None
        return "must be true or false"
    if field_type == CustomFieldType.INTEGER:
        if isinstance(value, bool):
            return "must be an integer"
        if isinstance(value, int):
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) <= 19:
            return None
        return "must be an integer"
    if field_type == CustomFieldType.DATE:
        if isinstance(value, str):
            try:
                datetime.date.fromisoformat(value[:10])
                return None
            except ValueError:
                pass
        return "must be a date (YYYY-MM-DD)"
    if field_type == CustomFieldType.ENUM:
        return None if value in enum_values else f"must be one of {', '.join(enum_values)}"
    if field_type == CustomFieldType.STRING:
        if not isinstance(value, str):
            return "must be a string"
        if len(value) > MAX_STRING_CUSTOM_FIELD:
            return f"at most {MAX_STRING_CUSTOM_FIELD} characters"
        return None
    return f"unknown field type {field_type}"
