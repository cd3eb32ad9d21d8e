"""Reward constraints (R6): windows, what a customer has consumed, and what is left.

Consumption counts the lines that issued something (ISSUED, PARTIAL) and the units
held by PENDING lines, so a limit cannot be overrun while a vendor call is in flight.
The engine evaluates limits while holding the customer's account lock (customer-level
limits) and the reward's row lock (reward-level limits), so they hold under concurrency.
"""

import calendar
import datetime
import functools
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import Case, DecimalField, F, Q, Sum, When
from django.db.models.functions import Coalesce

from catalogue.choices import ConstraintKpi, ConstraintLevel, Frequency, Weekday, WindowType
from catalogue.models import Organisation, RewardConstraint

from .models import IssuanceLine, LineStatus, RewardUsage
from .rawsql import fetch, placeholders, quoted

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

    key = (constraint.frequency, interval, constraint.cycle_start, constraint.week_start_day, tz_name)
    kept = _FIXED_WINDOWS.get(key)
    if kept is not None and kept.start <= now < kept.end:  # the cycle holding ``now``: the same window
        return kept
    window = _fixed_window(constraint, now=now, tz_name=tz_name)
    if len(_FIXED_WINDOWS) >= 1024:
        _FIXED_WINDOWS.clear()
    _FIXED_WINDOWS[key] = window
    return window


# The last FIXED window computed per definition (frequency, interval, cycle start, week start,
# time zone): a window is a calendar cycle [start, end), the same for every instant inside it.
_FIXED_WINDOWS: dict[tuple, Window] = {}


def _fixed_window(constraint: RewardConstraint, *, now: datetime.datetime, tz_name: str) -> Window:
    interval = constraint.interval
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
    in the order given (duplicates removed).

    The query is hand-written SQL built once per shape of the constraints (their levels,
    measures and whether their window has a start), then run with fresh values: building and
    compiling it through the ORM was ~40 % of a list call's CPU (docs/performance.md). It says
    what ``_counted_lines`` and ``_contribution`` say; ``limit_states_orm`` is that ORM query,
    and tests/test_issue_rawsql.py checks that both give the same for every shape."""
    query = ConsumptionQuery.of(constraints, customer_id=customer_id, org=org, now=now)
    if not query.constraints:
        return []
    row = fetch(_consumption_sql(query.shape, query.usage), query.params,
                using=router.db_for_read(IssuanceLine) or DEFAULT_DB_ALIAS)[0]
    return query.states(row)


@dataclass(frozen=True)
class ConsumptionQuery:
    """``limit_states``' query for some constraints (duplicates removed), before it runs: its
    shape, windows and parameters. ``rows_sql`` is the same query as rows of a larger
    UNION ALL statement (catalogue.list_index folds the limits a list call expects into its
    first one)."""

    constraints: list[RewardConstraint]
    windows: dict[int, Window]
    shape: tuple[tuple[str, bool, bool], ...]
    params: list
    usage: bool = False  # REWARD-level sums read from RewardUsage (``reads_usage``)

    @classmethod
    def of(cls, constraints, *, customer_id: int, org: Organisation, now,
           by_shape: bool = False) -> "ConsumptionQuery":
        """``by_shape``: the constraints ordered by their part of the SQL instead of as given, so
        that calls with the same kinds of constraints share one statement text (``rows_sql``
        gives each row its constraint's position: the order is the query's own)."""
        constraints = list({c.pk: c for c in constraints}.values())
        windows = {c.pk: window_for(c, now=now, tz_name=org.time_zone) for c in constraints}

        def part(c: RewardConstraint) -> tuple[str, bool, bool]:
            return c.level, c.kpi == ConstraintKpi.QUANTITY, windows[c.pk].start is not None

        if by_shape:
            constraints.sort(key=part)
        shape = tuple(part(c) for c in constraints)
        usage = reads_usage()
        if usage:  # REWARD-level sums from RewardUsage: their values first (the select list's)
            summed = [c for c in constraints if c.level == ConstraintLevel.REWARD]
            constraints_of_lines = [c for c in constraints if c.level != ConstraintLevel.REWARD]
            first = [v for c in summed for v in _usage_values(c, windows[c.pk])]
        else:
            constraints_of_lines, first = constraints, []
        values = [v for c in constraints_of_lines
                  for v in _line_values(c, customer_id=customer_id, window=windows[c.pk])]
        of_lines = [*values, *_COUNTED, *values] if constraints_of_lines else []  # the sums', statuses', scope's
        return cls(constraints, windows, shape, [*first, *of_lines], usage)

    def states(self, totals) -> list[LimitState]:
        """The states from the sums, in the constraints' order."""
        converters = _sum_converters()
        db = connections[DEFAULT_DB_ALIAS]
        states = []
        for constraint, value in zip(self.constraints, totals, strict=True):
            for converter in converters:
                value = converter(value, _SUM_EXPRESSION, db)
            states.append(LimitState(constraint, self.windows[constraint.pk], Decimal(value)))
        return states

    def rows_sql(self, kind: int) -> str:
        """Rows (position of the constraint, consumed, ``kind``): three columns, for a UNION
        ALL with other (integer, integer, kind) rows; parameters: ``params``. PostgreSQL."""
        return _consumption_rows_sql(self.shape, kind, self.usage)

    def states_of_rows(self, rows) -> list[LimitState]:
        """``states`` from ``rows_sql``'s rows (any order; other kinds' rows not passed)."""
        totals = [None] * len(self.constraints)
        for position, value, _kind in rows:
            totals[position] = value
        return self.states(totals)


@functools.lru_cache(maxsize=256)
def _consumption_rows_sql(shape: tuple[tuple[str, bool, bool], ...], kind: int, usage: bool) -> str:
    names = [f"s{i}" for i in range(len(shape))]
    values = ", ".join(f"({i}, t.{name})" for i, name in enumerate(names))
    return (f"SELECT v.position, v.consumed, {int(kind)} FROM ({_consumption_sql(shape, usage)}) "
            f"AS t({', '.join(names)}) "
            f"CROSS JOIN LATERAL (VALUES {values}) AS v(position, consumed)")


def _line_values(constraint: RewardConstraint, *, customer_id: int, window: Window) -> list:
    """The values of ``_line_condition``'s placeholders, in order."""
    if constraint.level == ConstraintLevel.REWARD:
        values = [constraint.reward_id]
    elif constraint.level == ConstraintLevel.CUSTOMER:
        values = [constraint.reward_id, customer_id]
    else:
        values = [constraint.org_id, customer_id, constraint.redemption_type]
    if window.start is not None:
        values.append(connections[DEFAULT_DB_ALIAS].ops.adapt_datetimefield_value(window.start))
    return values


def _column(name: str) -> str:
    return quoted(IssuanceLine._meta.get_field(name).column)


def _line_condition(level: str, windowed: bool) -> str:
    """``_counted_lines`` in SQL."""
    if level == ConstraintLevel.REWARD:
        names = ["reward"]
    elif level == ConstraintLevel.CUSTOMER:
        names = ["reward", "customer"]
    else:
        names = ["org", "customer", "redemption_type"]
    terms = [f"{_column(name)} = %s" for name in names]
    if windowed:
        terms.append(f"{_column('created_at')} >= %s")
    return "(" + " AND ".join(terms) + ")"


def _contribution_sql(quantity: bool) -> str:
    """``_contribution`` in SQL: ``_LINE_UNITS`` or ``_LINE_VALUE``."""
    units = f"({_column('quantity')} + {_column('pending_units')})"
    if quantity:
        return units
    value = _column("redemption_value")
    return (f"CASE WHEN {value} IS NOT NULL THEN {value} * {units} "
            f"ELSE {_column('total_points')} + {_column('held_points')} END")


@functools.lru_cache(maxsize=256)
def _consumption_sql(shape: tuple[tuple[str, bool, bool], ...], usage: bool = False) -> str:
    """params: each constraint's line values (for its sum), the counted statuses, then the line
    values again (for the rows scanned: any constraint's lines). ``usage``: the REWARD-level
    constraints' sums from RewardUsage (``_usage_sum_sql``), their ``_usage_values`` first, in
    order; the line values are then the other constraints' only."""
    of_lines = [part for part in shape if not (usage and part[0] == ConstraintLevel.REWARD)]
    if len(of_lines) == len(shape):
        return _lines_sums_sql(of_lines)
    columns, n = [], 0
    for level, quantity, windowed in shape:
        if level == ConstraintLevel.REWARD:
            columns.append(_usage_sum_sql(quantity, windowed))
        else:
            columns.append(f"l.s{n}")
            n += 1
    from_lines = f" FROM ({_lines_sums_sql(of_lines)}) AS l({', '.join(f's{i}' for i in range(n))})" if n else ""
    return f"SELECT {', '.join(columns)}{from_lines}"


def _lines_sums_sql(shape) -> str:
    """One sum per part of ``shape``, over the counted lines any part counts (one scan)."""
    sums = [f"COALESCE(SUM(CASE WHEN {_line_condition(level, windowed)} THEN {_contribution_sql(quantity)} END), 0)"
            for level, quantity, windowed in shape]
    scope = " OR ".join(_line_condition(level, windowed) for level, _quantity, windowed in shape)
    return (f"SELECT {', '.join(sums)} FROM {quoted(IssuanceLine._meta.db_table)} "
            f"WHERE {_column('status')} IN ({placeholders(len(_COUNTED))}) AND ({scope})")


def reads_usage(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether REWARD-level consumption is read from RewardUsage (PostgreSQL keeps it)."""
    return settings.LIMIT_REWARD_USAGE and connections[using].vendor == "postgresql"


def _usage_sum_sql(quantity: bool, windowed: bool) -> str:
    """A REWARD-level constraint's consumption: its reward's hourly sums from the first whole
    hour of the window on, plus the counted lines of the partial hour before it (none when the
    window starts on the hour, as FIXED windows in whole-hour time zones do). params:
    ``_usage_values``."""
    usage = RewardUsage._meta
    column = quoted(usage.get_field("units" if quantity else "value").column)
    sums = (f"(SELECT COALESCE(SUM({column}), 0) FROM {quoted(usage.db_table)} "
            f"WHERE {quoted(usage.get_field('reward').column)} = %s")
    if not windowed:
        return sums + ")"
    hour = quoted(usage.get_field("hour").column)
    partial = (f"(SELECT COALESCE(SUM({_contribution_sql(quantity)}), 0) FROM {quoted(IssuanceLine._meta.db_table)} "
               f"WHERE {_line_condition(ConstraintLevel.REWARD, True)} AND {_column('created_at')} < %s "
               f"AND {_column('status')} IN ({placeholders(len(_COUNTED))}))")
    return f"({sums} AND {hour} >= %s) + {partial})"


def _limited_rewards():
    return RewardConstraint.objects.filter(level=ConstraintLevel.REWARD, reward__isnull=False).values("reward_id")


def usage_of_lines() -> dict:
    """(reward id, UTC hour) → (units, value) of the counted lines of the rewards with a
    REWARD-level limit, through the ORM's own expressions: what RewardUsage must hold (its
    zero rows aside)."""
    from django.db.models.functions import TruncHour

    rows = (IssuanceLine.objects.filter(status__in=_COUNTED, reward_id__in=_limited_rewards())
            .annotate(hour=TruncHour("created_at", tzinfo=datetime.UTC)).values("reward_id", "hour")
            .annotate(units=Sum(_LINE_UNITS), value=Sum(_LINE_VALUE)))
    return {(r["reward_id"], r["hour"]): (r["units"], r["value"]) for r in rows if r["units"] or r["value"]}


def usage_disagreements() -> list[tuple]:
    """(reward id, hour, kept (units, value), of the lines) wherever RewardUsage disagrees with
    the lines, for the rewards with a REWARD-level limit (``manage.py check_ledger``); empty off
    PostgreSQL, where nothing is kept."""
    if not reads_usage():
        return []
    kept = {(u.reward_id, u.hour): (u.units, u.value)
            for u in RewardUsage.objects.filter(reward_id__in=_limited_rewards()) if u.units or u.value}
    lines = usage_of_lines()
    return [(reward, hour, kept.get((reward, hour)), lines.get((reward, hour)))
            for reward, hour in sorted(kept.keys() | lines.keys()) if kept.get((reward, hour)) != lines.get((reward, hour))]


def _usage_values(constraint: RewardConstraint, window: Window) -> list:
    """The values of ``_usage_sum_sql``'s placeholders, in order."""
    if window.start is None:
        return [constraint.reward_id]
    adapt = connections[DEFAULT_DB_ALIAS].ops.adapt_datetimefield_value
    start = window.start.astimezone(datetime.UTC)
    hour = start.replace(minute=0, second=0, microsecond=0)
    if hour < start:
        hour += datetime.timedelta(hours=1)
    return [constraint.reward_id, adapt(hour), constraint.reward_id, adapt(start), adapt(hour), *_COUNTED]


_SUM_EXPRESSION = Coalesce(Sum(_LINE_VALUE), Decimal(0), output_field=_DECIMAL)


def _sum_converters() -> list:
    """What the ORM applies to such a sum (SQLite: its decimals come back as floats or ints),
    kept on the connection object (none on PostgreSQL)."""
    db = connections[DEFAULT_DB_ALIAS]
    converters = db.__dict__.get("_limits_sum_converters")
    if converters is None:
        converters = db.__dict__["_limits_sum_converters"] = (
            db.ops.get_db_converters(_SUM_EXPRESSION) + _SUM_EXPRESSION.get_db_converters(db))
    return converters


def limit_states_orm(constraints, *, customer_id: int, org: Organisation, now) -> list[LimitState]:
    """``limit_states`` through the ORM: the reference its hand-written SQL is tested against."""
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
