"""Reward constraints (R6): windows, what a customer has consumed, and what is left.

Consumption counts the lines that issued something (ISSUED, PARTIAL) and the units
held by PENDING lines, so a limit cannot be overrun while a vendor call is in flight.
The engine evaluates limits while holding the customer's account lock (customer-level
limits) and the reward's row lock (reward-level limits), so they hold under concurrency.
"""

import calendar
import datetime
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Q, Sum, When
from django.db.models.functions import Coalesce

from catalogue.choices import ConstraintKpi, ConstraintLevel, Frequency, Weekday, WindowType
from catalogue.models import Organisation, RewardConstraint

from .models import IssuanceLine, LineStatus

# Fixed cycles with no cycle_start count from this Monday.
DEFAULT_CYCLE_ANCHOR = datetime.date(2000, 1, 3)
_WEEKDAYS = list(Weekday.values)
_COUNTED = (LineStatus.ISSUED, LineStatus.PARTIAL, LineStatus.PENDING)


@dataclass(frozen=True)
class Window:
    start: datetime.datetime | None  # None: since the beginning (NO_LIMIT)
    end: datetime.datetime | None  # when a FIXED window resets; None for ROLLING / NO_LIMIT


def _add_months(day: datetime.date, months: int) -> datetime.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def window_for(constraint: RewardConstraint, *, now: datetime.datetime, tz_name: str) -> Window:
    """The window of ``constraint`` that contains ``now``; FIXED windows follow calendar
    cycles in the org's time zone, ROLLING windows end now."""
    interval = constraint.interval
    if constraint.frequency == Frequency.NO_LIMIT:
        return Window(None, None)
    if constraint.window_type == WindowType.ROLLING:
        if constraint.frequency == Frequency.DAYS:
            return Window(now - datetime.timedelta(days=interval), None)
        if constraint.frequency == Frequency.WEEKS:
            return Window(now - datetime.timedelta(weeks=interval), None)
        local = now.astimezone(zoneinfo.ZoneInfo(tz_name))
        start_day = _add_months(local.date(), -interval)
        start = datetime.datetime.combine(start_day, local.timetz().replace(tzinfo=None), local.tzinfo)
        return Window(start, None)

    tz = zoneinfo.ZoneInfo(tz_name)
    today = now.astimezone(tz).date()
    anchor = constraint.cycle_start or DEFAULT_CYCLE_ANCHOR
    if constraint.frequency == Frequency.DAYS:
        cycles = (today - anchor).days // interval
        start_day = anchor + datetime.timedelta(days=cycles * interval)
        end_day = start_day + datetime.timedelta(days=interval)
    elif constraint.frequency == Frequency.WEEKS:
        week_start = _WEEKDAYS.index(constraint.week_start_day or Weekday.MONDAY)
        anchor = anchor - datetime.timedelta(days=(anchor.weekday() - week_start) % 7)
        cycles = (today - anchor).days // (7 * interval)
        start_day = anchor + datetime.timedelta(weeks=cycles * interval)
        end_day = start_day + datetime.timedelta(weeks=interval)
    else:  # MONTHS
        months = (today.year - anchor.year) * 12 + today.month - anchor.month
        cycles = months // interval
        start_day = _add_months(anchor.replace(day=1), cycles * interval)
        end_day = _add_months(start_day, interval)
    midnight = datetime.time(0, 0)
    return Window(
        datetime.datetime.combine(start_day, midnight, tz).astimezone(datetime.UTC),
        datetime.datetime.combine(end_day, midnight, tz).astimezone(datetime.UTC),
    )


# A line's contribution to a REDEMPTION_VALUE limit: the value of what it issued or holds
# (value rewards), else the points it cost or holds.
_LINE_VALUE = Case(
    When(redemption_value__isnull=False, then=F("redemption_value") * (F("quantity") + F("pending_units"))),
    default=F("total_points") + F("held_points"),
    output_field=DecimalField(max_digits=18, decimal_places=4),
)
_LINE_UNITS = F("quantity") + F("pending_units")


_DECIMAL = DecimalField(max_digits=18, decimal_places=4)


def _counted_lines(constraint: RewardConstraint, *, customer_id: int, window: Window) -> Q:
    """The lines that count against ``constraint`` in ``window`` (the one place this is said)."""
    if constraint.level == ConstraintLevel.REWARD:
        lines = Q(reward_id=constraint.reward_id)
    elif constraint.level == ConstraintLevel.CUSTOMER:
        lines = Q(reward_id=constraint.reward_id, customer_id=customer_id)
    else:
        lines = Q(org_id=constraint.org_id, customer_id=customer_id, redemption_type=constraint.redemption_type)
    if window.start is not None:
        lines &= Q(created_at__gte=window.start)
    return lines


def _contribution(constraint: RewardConstraint):
    return _LINE_UNITS if constraint.kpi == ConstraintKpi.QUANTITY else _LINE_VALUE


def consumed(constraint: RewardConstraint, *, customer_id: int, window: Window) -> Decimal:
    """How much of ``constraint`` is used up in ``window`` (one aggregate query), counting
    the units PENDING lines are fetching from a vendor."""
    lines = _counted_lines(constraint, customer_id=customer_id, window=window)
    total = IssuanceLine.objects.filter(lines, status__in=_COUNTED).aggregate(
        v=Coalesce(Sum(_contribution(constraint)), Decimal(0), output_field=_DECIMAL)
    )["v"]
    return Decimal(total)


@dataclass(frozen=True)
class LimitState:
    constraint: RewardConstraint
    window: Window
    consumed: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(self.constraint.limit_value - self.consumed, Decimal(0))

    @property
    def is_valid(self) -> bool:
        """The limit leaves the customer something (an inactive limit restricts nothing)."""
        return not self.constraint.is_active or self.consumed < self.constraint.limit_value


def limit_states(constraints, *, customer_id: int, org: Organisation, now) -> list[LimitState]:
    """``consumed`` of several constraints in ONE aggregate query (a filtered sum each),
    in the order given (duplicates removed)."""
    constraints = list({c.pk: c for c in constraints}.values())
    if not constraints:
        return []
    windows, sums, scope = {}, {}, Q()
    for c in constraints:
        windows[c.pk] = window_for(c, now=now, tz_name=org.time_zone)
        lines = _counted_lines(c, customer_id=customer_id, window=windows[c.pk])
        scope |= lines
        sums[f"c{c.pk}"] = Coalesce(Sum(_contribution(c), filter=lines), Decimal(0), output_field=_DECIMAL)
    totals = IssuanceLine.objects.filter(scope, status__in=_COUNTED).aggregate(**sums)
    return [LimitState(c, windows[c.pk], Decimal(totals[f"c{c.pk}"])) for c in constraints]


def format_limit(value: Decimal) -> str:
    integral = value.to_integral_value()
    return str(integral if value == integral else value.normalize())
