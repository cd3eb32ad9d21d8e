"""``IssuanceLineFilterSet``: the issuance history page's filters (one row per line).

Choices (rewards, tills, staff) are limited to the staff member's orgs; the queryset the
page passes in already is (``staff.selectors.issuance_lines``).

Dates are days of the organisation's calendar, like the dashboard's: a line belongs to day D
when it was created between midnight and midnight of D in its org's ``time_zone``. The bounds
are converted to UTC datetimes for the query (the database keeps UTC); when the staff
member's orgs are in several time zones each org's lines are cut at their own midnights.
"""

import datetime
import zoneinfo
from collections import defaultdict

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from catalogue.models import Reward, Till
from issuance.models import Channel, IssuanceLine, LineStatus


def _org_ids(request):
    return getattr(request, "staff_org_ids", frozenset()) if request is not None else frozenset()


def _rewards(request):
    return Reward.objects.filter(org_id__in=_org_ids(request)).only("id", "name").order_by("name", "id")


def _tills(request):
    return Till.objects.filter(org_id__in=_org_ids(request)).order_by("org_id", "code")


def _staff(request):
    return get_user_model().objects.filter(profile__org_id__in=_org_ids(request)).order_by("username")


def org_time_zones(orgs) -> dict[str, list]:
    """The staff member's orgs by time zone name, in the order of ``orgs`` (their own first)."""
    zones: dict[str, list] = defaultdict(list)
    for org in orgs:
        zones[org.time_zone].append(org)
    return dict(zones)


def local_time(value: datetime.datetime, zone) -> str:
    """``value`` (an aware datetime; the database keeps UTC) as a time of ``zone`` with the
    zone's abbreviation, e.g. ``2026-03-10 23:30 PDT``. ``zone``: a time zone name, a tzinfo
    or anything with a ``time_zone`` (an ``Organisation``); empty means UTC."""
    zone = getattr(zone, "time_zone", zone) or "UTC"
    tz = zoneinfo.ZoneInfo(zone) if isinstance(zone, str) else zone
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def local_midnight(day: datetime.date, tz_name: str) -> datetime.datetime:
    """The start of ``day`` in ``tz_name``, as an aware datetime (compared in UTC by the database)."""
    return datetime.datetime.combine(day, datetime.time(0), zoneinfo.ZoneInfo(tz_name))


class _DateInput(forms.DateInput):
    input_type = "date"


class IssuanceHistoryForm(forms.Form):
    def clean(self):
        data = super().clean()
        if data.get("created_from") and data.get("created_to") and data["created_from"] > data["created_to"]:
            self.add_error("created_to", "must not be before the “from” date")
        return data


class IssuanceLineFilterSet(django_filters.FilterSet):
    created_from = django_filters.DateFilter(method="filter_created_from", label="From (date)", widget=_DateInput)
    created_to = django_filters.DateFilter(method="filter_created_to", label="To (date)", widget=_DateInput)
    reward = django_filters.ModelChoiceFilter(queryset=_rewards, label="Reward")
    status = django_filters.ChoiceFilter(choices=LineStatus.choices, label="Status")
    till = django_filters.ModelChoiceFilter(field_name="issuance__till", queryset=_tills, label="Till")
    actor = django_filters.ModelChoiceFilter(field_name="issuance__actor", queryset=_staff, label="Staff / actor")
    channel = django_filters.ChoiceFilter(field_name="issuance__channel", choices=Channel.choices, label="Channel")
    requestId = django_filters.CharFilter(field_name="request_id", label="requestId")
    customer = django_filters.NumberFilter(field_name="customer_id", label="Customer id")

    class Meta:
        model = IssuanceLine
        fields: list[str] = []
        form = IssuanceHistoryForm

    def _zones(self) -> dict[str, list]:
        orgs = getattr(self.request, "staff_orgs", None) or []
        return org_time_zones(orgs) or {"UTC": []}

    def _local_bound(self, queryset, day: datetime.date, lookup: str):
        """``created_at`` {lookup} the local midnight starting ``day``, per time zone."""
        zones = self._zones()
        if len(zones) == 1:  # the usual case: one calendar for every org in scope
            return queryset.filter(_bound(day, next(iter(zones)), lookup))
        condition = Q(pk__in=[])
        for tz_name, orgs in zones.items():
            condition |= Q(org_id__in=[o.pk for o in orgs]) & _bound(day, tz_name, lookup)
        return queryset.filter(condition)

    def filter_created_from(self, queryset, name, value):
        return self._local_bound(queryset, value, "gte")

    def filter_created_to(self, queryset, name, value):
        try:
            next_day = value + datetime.timedelta(days=1)
        except OverflowError:  # 9999-12-31: no upper bound
            return queryset
        return self._local_bound(queryset, next_day, "lt")


def _bound(day: datetime.date, tz_name: str, lookup: str) -> Q:
    try:
        at = local_midnight(day, tz_name)
        at.astimezone(datetime.UTC)  # what the database is given
    except OverflowError:  # the first or last day Python holds, beyond UTC's range
        before_everything = day.year == 1
        return Q() if (lookup == "gte") == before_everything else Q(pk__in=[])
    return Q(**{f"created_at__{lookup}": at})
