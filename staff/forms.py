"""Staff page forms: input checks only; the rules are the engine's and the services'."""

import hashlib
import hmac
from decimal import Decimal

from django import forms
from django.conf import settings

from catalogue.models import POINTS

from .models import GoodwillRequest

REASON_MAX = GoodwillRequest._meta.get_field("reason").max_length


class CustomerSearchForm(forms.Form):
    q = forms.CharField(
        label="Mobile, email or external id",
        max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off", "placeholder": "e.g. 919000000001"}),
        help_text="An exact mobile number, email address, external id or customer id.",
    )


class GoodwillForm(forms.Form):
    """One goodwill issue. ``token`` and ``digest`` tie a confirmation to the preview the
    staff member saw: any change to the fields after the preview asks for a new one."""

    till = forms.ModelChoiceField(
        queryset=None,
        label="Till",
        empty_label=None,
        help_text="The till the issue is booked on (tills of this org you may use).",
    )
    payment_config = forms.ModelChoiceField(queryset=None, label="Payment config", required=False, empty_label=None)
    quantity = forms.IntegerField(label="Quantity", min_value=1, initial=1)
    redemption_value = forms.DecimalField(
        label="Redemption value per unit",
        required=False,
        min_value=Decimal("0.0001"),
        max_digits=POINTS["max_digits"],
        decimal_places=POINTS["decimal_places"],
        help_text="Value rewards (conversion ratio) only; leave empty to let the quantity be the value.",
    )
    reason = forms.CharField(
        label="Reason",
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Mandatory. Stored on the issuance with your name.",
    )
    validation_code = forms.CharField(
        label="Customer validation code",
        required=False,
        max_length=20,
        help_text="This organisation requires the code sent to the customer.",
    )
    token = forms.CharField(widget=forms.HiddenInput, required=False)
    digest = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(
        self,
        *args,
        tills,
        configs,
        config_count: int,
        max_quantity: int,
        needs_code: bool,
        value_reward: bool,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.fields["till"].queryset = tills
        self.fields["quantity"] = forms.IntegerField(label="Quantity", min_value=1, max_value=max_quantity, initial=1)
        self.fields["payment_config"].queryset = configs
        if config_count <= 1:
            self.fields["payment_config"].widget = forms.HiddenInput()
        else:
            self.fields["payment_config"].required = True
            self.fields["payment_config"].help_text = "This reward can be paid in several ways: choose one."
        if not value_reward:
            del self.fields["redemption_value"]
        if not needs_code:
            del self.fields["validation_code"]

    def signature(self) -> str:
        """A keyed digest of the cleaned fields and the token."""
        data = self.cleaned_data
        text = "|".join(
            str(x)
            for x in (
                data["till"].pk,
                getattr(data.get("payment_config"), "pk", ""),
                data["quantity"],
                data.get("redemption_value") or "",
                data["reason"],
                data.get("token") or "",
            )
        )
        return hmac.new(settings.SECRET_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


class ApproveForm(forms.Form):
    accepted_points = forms.DecimalField(
        widget=forms.HiddenInput, max_digits=POINTS["max_digits"], decimal_places=POINTS["decimal_places"]
    )


class RejectForm(forms.Form):
    note = forms.CharField(label="Why reject?", max_length=500, widget=forms.Textarea(attrs={"rows": 2, "cols": 50}))


class FulfillmentForm(forms.Form):
    status = forms.ModelChoiceField(queryset=None, label="New fulfillment status", empty_label=None)
    note = forms.CharField(label="Note", max_length=500, required=False)

    def __init__(self, *args, statuses, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].queryset = statuses


class RequestIdForm(forms.Form):
    requestId = forms.CharField(
        label="requestId", max_length=500, widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"})
    )


class BulkUploadForm(forms.Form):
    till = forms.ModelChoiceField(
        queryset=None,
        label="Till",
        empty_label=None,
        help_text="The rows are issued on this till, in its organisation.",
    )
    file = forms.FileField(
        label="CSV file",
        help_text="Columns: identifier, reward, quantity, reason, and "
        "optionally requestId and paymentConfigId. UTF-8, comma separated.",
    )

    def __init__(self, *args, tills, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["till"].queryset = tills
        self.fields["till"].label_from_instance = lambda till: f"{till.org.name} — {till.code}"


class DashboardForm(forms.Form):
    PERIODS = ((7, "Last 7 days"), (30, "Last 30 days"), (90, "Last 90 days"))

    org = forms.TypedChoiceField(label="Organisation", coerce=int)
    days = forms.TypedChoiceField(label="Period", choices=PERIODS, coerce=int, initial=30)

    def __init__(self, *args, orgs, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["org"].choices = [(o.pk, o.name) for o in orgs]
