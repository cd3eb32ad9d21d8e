"""``IssuanceLineFilterSet``: the issuance history page's filters (one row per line).

Choices (rewards, tills, staff) are limited to the staff member's orgs; the queryset the
page passes in already is (``staff.selectors.issuance_lines``)."""

import django_filters
from django import forms
from django.contrib.auth import get_user_model

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


class _DateInput(forms.DateInput):
    input_type = "date"


class IssuanceHistoryForm(forms.Form):
    def clean(self):
        data = super().clean()
        if data.get("created_from") and data.get("created_to") and data["created_from"] > data["created_to"]:
            self.add_error("created_to", "must not be before the “from” date")
        return data


class IssuanceLineFilterSet(django_filters.FilterSet):
    created_from = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="From (date, UTC)", widget=_DateInput
    )
    created_to = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="To (date, UTC)", widget=_DateInput
    )
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
