"""``RewardFilterSet``: the query parameters of the list API (R11), shared with the staff
catalogue pages.

Parameter names are the API's (camelCase), so an API call and a staff page URL read the
same. Every value is checked strictly (case-sensitive enums, numbers, ids); a bad value
is a form error keyed by the parameter's name, which the API answers as a 400 naming it
and a page shows next to the field. Comma lists may also be given as repeated
parameters (``status=LIVE&status=ENDED``). The semantics are written down in
docs/list-api.md.
"""

import dataclasses
import datetime
import functools
import operator
import zoneinfo
from decimal import Decimal, InvalidOperation

import django_filters
from django_filters.constants import EMPTY_VALUES
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from .choices import RedemptionType
from .models import Reward

ACTIVATION_STATUSES = ("ENABLED", "DISABLED", "ALL")
STATUSES = ("LIVE", "UPCOMING", "ENDED")
ORDER_DIRECTIONS = ("ASC", "DESC")
# sortBy value → the column sorted on (the prices are the rewards' cached list_points /
# list_cash: catalogue.selectors, "the listing cache").
SORT_COLUMNS = {"points": "list_points", "cash": "list_cash", "startDate": "start_time", "endDate": "end_time"}
NULLABLE_SORT_COLUMNS = {"list_points", "list_cash"}
MAX_AMOUNT = Decimal(10) ** 14
MAX_DAYS_AGO = 36500
MAX_ID = 2**63 - 1
_ECHO = 50  # at most this much of a bad value is echoed back in a message


def _echo(text: str) -> str:
    return text if len(text) <= _ECHO else text[:_ECHO] + "…"


# ---------------------------------------------------------------- form fields


class CommaListWidget(forms.TextInput):
    """``a,b`` or ``x=a&x=b`` (or both) read as one comma list."""

    def value_from_datadict(self, data, files, name):
        if hasattr(data, "getlist"):
            values = data.getlist(name)
            return ",".join(values) if values else None
        return data.get(name)


class CommaListField(forms.Field):
    """A comma list; ``item`` turns one stripped, non-empty part into a value or raises
    ValidationError. Duplicates are dropped, the order kept."""

    widget = CommaListWidget

    def __init__(self, *, item, **kwargs):
        self.item = item
        super().__init__(**kwargs)

    def to_python(self, value):
        if value in (None, ""):
            return []
        parts = [part.strip() for part in str(value).split(",")]
        return list(dict.fromkeys(self.item(part) for part in parts if part))


def enum_item(values):
    allowed = tuple(values)

    def parse(text: str) -> str:
        if text not in allowed:
            raise ValidationError(f"unknown value '{_echo(text)}'")
        return text

    return parse


def id_item(text: str) -> int:
    if not text.isdigit() or len(text) > 19 or int(text) > MAX_ID:
        raise ValidationError(f"not an id: '{_echo(text)}'")
    return int(text)


def name_item(text: str) -> str:
    return text


class EnumField(forms.Field):
    """One value of a fixed, case-sensitive set."""

    def __init__(self, *, values, **kwargs):
        self.values = tuple(values)
        super().__init__(**kwargs)

    def to_python(self, value):
        if value in (None, ""):
            return None
        value = str(value).strip()
        if value not in self.values:
            raise ValidationError(f"unknown value '{_echo(value)}'")
        return value


class FlagField(forms.Field):
    """true / false (also 1 / 0, yes / no), case-insensitive."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValidationError(f"must be true or false, not '{_echo(str(value))}'")


class AmountField(forms.Field):
    """A number of points or cash: integer or decimal, 0 ≤ value ≤ 10^14."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        text = str(value).strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValidationError(f"must be a number, not '{_echo(text)}'") from None
        if not number.is_finite():
            raise ValidationError(f"must be a number, not '{_echo(text)}'")
        if number < 0 or number > MAX_AMOUNT:
            raise ValidationError(f"must be between 0 and {MAX_AMOUNT}")
        return number


class DaysAgoField(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return None
        text = str(value).strip()
        if not text.isdigit() or int(text) > MAX_DAYS_AGO:
            raise ValidationError(f"must be an integer between 0 and {MAX_DAYS_AGO}, not '{_echo(text)}'")
        return int(text)


class RewardFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        for low, high in (("minPoints", "maxPoints"), ("minCash", "maxCash")):
            if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
                self.add_error(low, f"must not be greater than {high}")
        return data


# ---------------------------------------------------------------- conditions on the time

TIME_COLUMNS = ("start_time", "end_time", "created_at")
TIME_FILTERS = ("includeExpired", "status", "createdOnDaysAgo")  # the filters stated as TimeCondition
COMPARISONS = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}


@dataclasses.dataclass(frozen=True)
class TimeCondition:
    """A condition on a reward's times: any of ``alternatives``, each all of its terms
    ``(column, comparison, instant)``. One statement of a time filter, read two ways: as a
    Q (``q``) and as the same comparisons on columns of instants (``holds``, which
    catalogue.list_index evaluates over arrays)."""

    alternatives: tuple[tuple[tuple[str, str, datetime.datetime], ...], ...]

    @classmethod
    def of(cls, *alternatives) -> "TimeCondition":
        for terms in alternatives:
            for column, comparison, _ in terms:
                assert column in TIME_COLUMNS and comparison in COMPARISONS, (column, comparison)
        return cls(tuple(tuple(terms) for terms in alternatives))

    def q(self) -> Q:
        condition = Q(pk__in=[])  # no alternative: nothing passes
        for terms in self.alternatives:
            condition |= Q(**{f"{column}__{comparison}": instant for column, comparison, instant in terms})
        return condition

    def holds(self, columns, instant_of):
        """``columns[column]`` compared with ``instant_of(instant)`` term by term: with scalars
        a bool, with numpy arrays a boolean array."""
        result = False
        for terms in self.alternatives:
            every = True
            for column, comparison, instant in terms:
                every = every & COMPARISONS[comparison](columns[column], instant_of(instant))
            result = result | every
        return result


def time_condition(name: str, data: dict, *, now: datetime.datetime, time_zone: str) -> TimeCondition | None:
    """The condition of the time filter ``name`` (one of TIME_FILTERS) for validated parameters
    ``data``, or None when it lets everything through."""
    value = data.get(name)
    if name == "includeExpired":
        # Asking for status=ENDED explicitly shows ended rewards without includeExpired=true.
        if value or "ENDED" in (data.get("status") or ()):
            return None
        return TimeCondition.of([("end_time", "gt", now)])
    if name == "status":
        by_status = {
            "LIVE": [("start_time", "lte", now), ("end_time", "gt", now)],
            "UPCOMING": [("start_time", "gt", now)],
            "ENDED": [("end_time", "lte", now)],
        }
        return TimeCondition.of(*(by_status[status] for status in value))
    if name == "createdOnDaysAgo":
        # Created on or before the day ``value`` days before today (the org's calendar).
        tz = zoneinfo.ZoneInfo(time_zone)
        day_after = now.astimezone(tz).date() - datetime.timedelta(days=value - 1)
        return TimeCondition.of([("created_at", "lt", datetime.datetime.combine(day_after, datetime.time(0), tz))])
    raise ValueError(f"not a time filter: {name}")


def time_conditions(data: dict, *, now: datetime.datetime, time_zone: str) -> list[TimeCondition]:
    """Every time filter's condition for validated parameters ``data``, in declaration order
    (each applied where django-filter applies its filter: when its value is not empty)."""
    conditions = []
    for name in TIME_FILTERS:
        if data.get(name) not in EMPTY_VALUES:
            condition = time_condition(name, data, now=now, time_zone=time_zone)
            if condition is not None:
                conditions.append(condition)
    return conditions


# ---------------------------------------------------------------- the FilterSet


@functools.cache
def _filter_class(field_class):
    return type(f"{field_class.__name__}Filter", (django_filters.Filter,), {"field_class": field_class})


def _param(field_class, label, **kwargs):
    """A filter whose form field is ``field_class`` (parsing and messages are the field's)."""
    return _filter_class(field_class)(label=label, **kwargs)


class RewardFilterSet(django_filters.FilterSet):
    """Filters and sorts Reward rows. ``now`` (default: the current time) decides what is
    LIVE, UPCOMING or ENDED; ``time_zone`` (the org's) decides where a day starts for
    ``createdOnDaysAgo``. Parameters left out take ``defaults`` (a page that wants to show
    disabled or ended rewards by default overrides them in a subclass)."""

    defaults = {"activationStatus": "ENABLED", "includeExpired": "false"}

    includeExpired = _param(FlagField, "Include ended rewards", method="filter_include_expired")
    groupName = _param(CommaListField, "Group names", item=name_item, method="filter_group_name")
    label = _param(CommaListField, "Label ids", item=id_item, method="filter_label")
    category = _param(CommaListField, "Category names", item=name_item, method="filter_category")
    redemptionType = _param(
        CommaListField, "Redemption types", item=enum_item(RedemptionType.values),
        field_name="redemption_type", lookup_expr="in",
    )
    activationStatus = _param(EnumField, "Activation status", values=ACTIVATION_STATUSES,
                              method="filter_activation_status")
    minPoints = _param(AmountField, "Points at least", method="filter_price")
    maxPoints = _param(AmountField, "Points at most", method="filter_price")
    minCash = _param(AmountField, "Cash at least", method="filter_price")
    maxCash = _param(AmountField, "Cash at most", method="filter_price")
    status = _param(CommaListField, "Status", item=enum_item(STATUSES), method="filter_status")
    vendorId = _param(CommaListField, "Vendor ids", item=id_item, field_name="vendor_id", lookup_expr="in")
    createdOnDaysAgo = _param(DaysAgoField, "Created at least N days ago", method="filter_created_on_days_ago")
    sortBy = _param(EnumField, "Sort by", values=tuple(SORT_COLUMNS), method="sort_param")
    orderBy = _param(EnumField, "Order", values=ORDER_DIRECTIONS, method="sort_param")

    class Meta:
        model = Reward
        fields: list[str] = []
        form = RewardFilterForm

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None, now=None, time_zone="UTC",
                 defer_time=False):
        if data is not None:
            data = data.copy()
            for name, value in self.defaults.items():
                key = f"{prefix}-{name}" if prefix else name
                if data.get(key) in (None, ""):
                    data[key] = value
        super().__init__(data, queryset, request=request, prefix=prefix)
        self.now = now or timezone.now()
        self.time_zone = time_zone
        self.defer_time = defer_time
        self.time_conditions: list[TimeCondition] = []

    # Filters run in declaration order; every one narrows with AND.
    #
    # The three filters that depend on the time (includeExpired, status, createdOnDaysAgo) state
    # their condition as data (``TimeCondition``), applied here as a Q; with ``defer_time`` they
    # only collect it in ``time_conditions`` for catalogue.list_index, which applies the same
    # conditions to its in-memory index of a brand's rewards.

    def collect_time_conditions(self) -> list["TimeCondition"]:
        """The time filters' conditions for the validated parameters, without filtering."""
        return time_conditions(self.form.cleaned_data, now=self.now, time_zone=self.time_zone)

    def _time(self, queryset, name: str):
        condition = time_condition(name, self.form.cleaned_data, now=self.now, time_zone=self.time_zone)
        if condition is None:
            return queryset
        if self.defer_time:
            self.time_conditions.append(condition)
            return queryset
        return queryset.filter(condition.q())

    def filter_include_expired(self, queryset, name, value):
        return self._time(queryset, name)

    def filter_group_name(self, queryset, name, value):
        links = Reward.groups.through.objects.filter(reward_id=OuterRef("pk"), rewardgroup__name__in=value)
        return queryset.filter(Exists(links))

    def filter_label(self, queryset, name, value):
        links = Reward.labels.through.objects.filter(reward_id=OuterRef("pk"), label_id__in=value)
        return queryset.filter(Exists(links))

    def filter_category(self, queryset, name, value):
        links = Reward.categories.through.objects.filter(reward_id=OuterRef("pk"), category__name__in=value)
        return queryset.filter(Exists(links))

    def filter_activation_status(self, queryset, name, value):
        if value == "ALL":
            return queryset
        return queryset.filter(enabled=value == "ENABLED")

    def filter_price(self, queryset, name, value):
        price = "list_points" if name.endswith("Points") else "list_cash"
        lookup = "gte" if name.startswith("min") else "lte"
        return queryset.filter(**{f"{price}__{lookup}": value})

    def filter_status(self, queryset, name, value):
        return self._time(queryset, name)

    def filter_created_on_days_ago(self, queryset, name, value):
        return self._time(queryset, name)

    def sort_param(self, queryset, name, value):
        return queryset  # applied by sort(), after every filter

    def filter_queryset(self, queryset):
        return self.sort(super().filter_queryset(queryset))

    def sort(self, queryset):
        """sortBy (default: creation date), orderBy (default DESC for the creation date, ASC
        for an explicit sortBy); rewards without a price sort last either way; the id breaks
        ties in the same direction, so pages never overlap."""
        data = self.form.cleaned_data
        sort_by = data.get("sortBy")
        direction = data.get("orderBy") or ("ASC" if sort_by else "DESC")
        column = SORT_COLUMNS[sort_by] if sort_by else "created_at"
        descending = direction == "DESC"
        if column in NULLABLE_SORT_COLUMNS:
            # The (brand, price, id) indexes of Reward: ASC NULLS LAST, and DESC NULLS LAST.
            key = F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_last=True)
        else:
            # NOT NULL columns: a plain ASC/DESC matches the (brand, …) indexes' order.
            key = F(column).desc() if descending else F(column).asc()
        return queryset.order_by(key, "-pk" if descending else "pk")
