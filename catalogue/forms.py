"""Staff (admin) forms of the catalogue.

The catalogue rules that span several rows live in ``catalogue.validation``; the forms here
only feed them what a staff member submitted and put the answers next to the right field:
R5 payment configs (reward form + payment-config inline), R6 one targeting kind (reward form
+ segment-target inline), the ISSUE_REWARD custom-field count. Secrets (vendor header values)
and card numbers are never rendered back to the browser.
"""

import csv
import io
import re

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from . import choices
from .models import Card, CustomFieldDefinition, Reward, RewardConstraint, VendorRedemptionConfig
from .validation import PaymentConfigSpec, custom_field_count_errors, payment_configs_errors, targeting_errors

# ---------------------------------------------------------------------------------------
# Reward: R5 payment configs and R6 targeting
# ---------------------------------------------------------------------------------------

# payment_configs_errors() names parts of a config the way the API does.
_PAYMENT_CONFIG_FIELDS = {
    "paymentMode": "mode",
    "points": "points",
    "cashAmount": "cash_amount",
    "conversionRatio": "conversion_ratio",
}
_INDEXED_PATH = re.compile(r"^\[(\d+)\]\.(\w+)$")


def _kept_forms(formset) -> list[forms.Form]:
    """The forms whose rows exist after saving: stored rows not marked for deletion, and
    new rows that were filled in (an untouched extra form is not a row)."""
    return [
        form
        for form in formset.forms
        if not (formset.can_delete and formset._should_delete_form(form))
        and (form.instance.pk is not None or form.has_changed())
    ]


class RewardAdminForm(forms.ModelForm):
    # RewardAdmin.get_form sets these to say whether the payment-config and segment-target
    # inlines are on the page. When one is not (the staff member may not see it), its rule is
    # checked here against the stored rows, which the request cannot change.
    payment_configs_inline = True
    segment_targets_inline = True

    class Meta:
        model = Reward
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        self._check_same_org(cleaned)

        redemption_type = self._value(cleaned, "redemption_type")
        intouch_points = self._value(cleaned, "intouch_points")
        if redemption_type and intouch_points is not None:
            # Read by PaymentConfigInlineFormSet.clean(), which runs after this form.
            self.instance._admin_payment_context = (redemption_type, intouch_points)
            if not self.payment_configs_inline:
                stored = self.instance.payment_configs.all() if self.instance.pk else []
                specs = [PaymentConfigSpec(c.mode, c.points, c.cash_amount, c.conversion_ratio) for c in stored]
                for _, message in payment_configs_errors(
                    redemption_type=redemption_type, intouch_points=intouch_points, configs=specs
                ):
                    self.add_error(None, f"Payment configs: {message}")

        counts = {kind: self._m2m_count(cleaned, kind) for kind in ("card_series", "labels", "target_tiers")}
        self.instance._admin_targeting = counts  # read by RewardSegmentTargetInlineFormSet.clean()
        stored_partitions = 0
        if not self.segment_targets_inline and self.instance.pk:
            stored_partitions = self.instance.segment_targets.count()
        for _, message in targeting_errors(
            partitions=stored_partitions,
            card_series=counts["card_series"],
            labels=counts["labels"],
            tiers=counts["target_tiers"],
        ):
            self.add_error(None, message)
        return cleaned

    def _value(self, cleaned, name):
        """The submitted value, or the stored one when the field is not on the form."""
        return cleaned.get(name) if name in self.fields else getattr(self.instance, name)

    def _m2m_count(self, cleaned, name) -> int:
        if name in self.fields:
            return len(cleaned.get(name) or [])
        return getattr(self.instance, name).count() if self.instance.pk else 0

    def _check_same_org(self, cleaned) -> None:
        org = cleaned.get("org") if "org" in self.fields else getattr(self.instance, "org", None)
        if org is None:
            return
        for name in ("coupon_series", "vendor", "cart_promotion", "program"):
            target = cleaned.get(name)
            if target is not None and target.org_id != org.pk:
                self.add_error(name, "belongs to another organisation")
        config = cleaned.get("vendor_redemption")
        if config is not None:
            if config.vendor.org_id != org.pk:
                self.add_error("vendor_redemption", "belongs to another organisation")
            elif cleaned.get("vendor") is not None and config.vendor_id != cleaned["vendor"].pk:
                self.add_error("vendor_redemption", "is a configuration of another vendor")
        for name in ("categories", "groups", "card_series", "labels"):
            if any(target.org_id != org.pk for target in cleaned.get(name) or []):
                self.add_error(name, "some belong to another organisation")
        if any(tier.program.org_id != org.pk for tier in cleaned.get("target_tiers") or []):
            self.add_error("target_tiers", "some belong to another organisation")


class PaymentConfigInlineFormSet(BaseInlineFormSet):
    """R5 on the configs as they will be after saving, with the reward form's redemption type
    and points (stashed on the shared instance by RewardAdminForm.clean)."""

    def clean(self):
        super().clean()
        context = getattr(self.instance, "_admin_payment_context", None)
        kept = _kept_forms(self)
        if context is None or any("mode" not in form.cleaned_data for form in kept):
            return  # the reward form or a config form is already invalid: that error comes first
        redemption_type, intouch_points = context
        specs = [
            PaymentConfigSpec(
                mode=form.cleaned_data["mode"],
                points=form.cleaned_data.get("points"),
                cash_amount=form.cleaned_data.get("cash_amount"),
                conversion_ratio=form.cleaned_data.get("conversion_ratio"),
            )
            for form in kept
        ]
        overall = []
        for path, message in payment_configs_errors(
            redemption_type=redemption_type, intouch_points=intouch_points, configs=specs
        ):
            match = _INDEXED_PATH.match(path)
            if match:
                form = kept[int(match.group(1))]
                field = _PAYMENT_CONFIG_FIELDS.get(match.group(2))
                form.add_error(field if field in form.fields else None, message)
            else:
                overall.append(message)
        if overall:
            raise ValidationError(overall)


class RewardSegmentTargetInlineFormSet(BaseInlineFormSet):
    """R6 when the reward targets (segment, partition) pairs: no other targeting kind."""

    def clean(self):
        super().clean()
        kept = [form for form in _kept_forms(self) if form.cleaned_data.get("partition")]
        org_id = self.instance.org_id
        for form in kept:
            if org_id and form.cleaned_data["partition"].segment.org_id != org_id:
                form.add_error("partition", "belongs to another organisation")
        counts = getattr(self.instance, "_admin_targeting", None)
        if not kept or counts is None:
            return  # no segment targets: RewardAdminForm checked the other kinds alone
        errors = targeting_errors(
            partitions=len(kept),
            card_series=counts["card_series"],
            labels=counts["labels"],
            tiers=counts["target_tiers"],
        )
        if errors:
            raise ValidationError([message for _, message in errors])


class RewardConstraintInlineFormSet(BaseInlineFormSet):
    """Reward-level limits: the org comes from the reward (not a form field)."""

    def save_new(self, form, commit=True):
        form.instance.org_id = self.instance.org_id
        return super().save_new(form, commit=commit)

    def save_existing(self, form, obj, commit=True):
        obj.org_id = self.instance.org_id
        return super().save_existing(form, obj, commit=commit)


class RewardConstraintAdminForm(forms.ModelForm):
    """A stand-alone constraint: reward-level rows name a reward, org-level rows a type."""

    class Meta:
        model = RewardConstraint
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        level, reward = cleaned.get("level"), cleaned.get("reward")
        redemption_type, org = cleaned.get("redemption_type"), cleaned.get("org")
        if level in choices.REWARD_CONSTRAINT_LEVELS:
            if reward is None:
                self.add_error("reward", f"a {level} limit names a reward")
            if redemption_type:
                self.add_error("redemption_type", f"a {level} limit names a reward, not a redemption type")
        elif level == choices.ConstraintLevel.CUSTOMER_REDEMPTION_TYPE:
            if reward is not None:
                self.add_error("reward", "an org-level limit names a redemption type, not a reward")
            if not redemption_type:
                self.add_error("redemption_type", "an org-level limit names a redemption type")
        if reward is not None and org is not None and reward.org_id != org.pk:
            self.add_error("reward", "belongs to another organisation")
        return cleaned


# ---------------------------------------------------------------------------------------
# Custom field definitions: at most 10 with scope ISSUE_REWARD per org (3022)
# ---------------------------------------------------------------------------------------


class CustomFieldDefinitionAdminForm(forms.ModelForm):
    class Meta:
        model = CustomFieldDefinition
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        org = cleaned.get("org") if "org" in self.fields else self.instance.org
        scope = cleaned.get("scope") if "scope" in self.fields else self.instance.scope
        if org is not None and scope:
            others = CustomFieldDefinition.objects.filter(org=org)
            if self.instance.pk:
                others = others.exclude(pk=self.instance.pk)
            errors = custom_field_count_errors([*others.values_list("scope", flat=True), scope])
            for _, message in errors:
                self.add_error("scope" if "scope" in self.fields else None, message)
        return cleaned


# ---------------------------------------------------------------------------------------
# Vendor redemption config: header values are secrets
# ---------------------------------------------------------------------------------------

HEADER_UNCHANGED = "(unchanged)"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token


def headers_masked(headers) -> str:
    """Header names only; the values are never shown."""
    if not isinstance(headers, dict) or not headers:
        return ""
    return ", ".join(f"{name}: ••••••" for name in headers)


class VendorRedemptionConfigAdminForm(forms.ModelForm):
    """Headers are edited as ``Name: value`` lines. Stored values are never rendered: each
    stored header is shown as ``Name: (unchanged)``; keeping that line (or leaving the value
    blank) keeps the stored value, typing a value replaces it, deleting the line drops it."""

    headers_text = forms.CharField(
        label="Headers",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            f"One header per line, <code>Name: value</code>. Stored values are secret and never shown: "
            f"<code>Name: {HEADER_UNCHANGED}</code> or an empty value keeps the stored value; "
            "a new value replaces it; remove the line to drop the header."
        ),
    )

    class Meta:
        model = VendorRedemptionConfig
        exclude = ("headers",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["headers_text"].initial = "\n".join(f"{name}: {HEADER_UNCHANGED}" for name in self._stored())

    def _stored(self) -> dict[str, str]:
        headers = self.instance.headers if self.instance.pk else {}
        return headers if isinstance(headers, dict) else {}

    def clean_headers_text(self) -> dict[str, str]:
        stored = {name.lower(): value for name, value in self._stored().items()}
        headers: dict[str, str] = {}
        seen: set[str] = set()
        errors = []
        for number, raw in enumerate(self.cleaned_data["headers_text"].splitlines(), start=1):
            if not raw.strip():
                continue
            name, colon, value = raw.partition(":")
            name, value = name.strip(), value.strip()
            if not colon or not _HEADER_NAME.match(name):
                errors.append(f"line {number}: expected “Name: value” with a valid header name")
                continue
            if name.lower() in seen:
                errors.append(f"line {number}: {name} is given twice")
                continue
            seen.add(name.lower())
            if value in ("", HEADER_UNCHANGED):
                if name.lower() not in stored:
                    errors.append(f"line {number}: {name} has no stored value; type one")
                    continue
                value = stored[name.lower()]
            headers[name] = value
        if errors:
            raise ValidationError(errors)
        return headers

    def save(self, commit=True):
        self.instance.headers = self.cleaned_data["headers_text"]
        return super().save(commit=commit)


# ---------------------------------------------------------------------------------------
# Cards: the number is written, never shown
# ---------------------------------------------------------------------------------------


class WriteOnlyTextInput(forms.TextInput):
    """Renders without a value, so a stored secret never reaches the browser."""

    def get_context(self, name, value, attrs):
        return super().get_context(name, None, attrs)


class KeepIfBlankCharField(forms.CharField):
    """Blank means "keep the stored value" (see CardAdminForm.clean_number)."""

    def has_changed(self, initial, data):
        return bool(data) and data != initial


class CardAdminForm(forms.ModelForm):
    class Meta:
        model = Card
        fields = "__all__"
        field_classes = {"number": KeepIfBlankCharField}
        widgets = {"number": WriteOnlyTextInput(attrs={"autocomplete": "off"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "number" in self.fields:
            field = self.fields["number"]
            field.required = False
            field.widget.attrs["placeholder"] = self.instance.masked_number
            field.help_text = "Leave blank to keep the stored number."

    def clean_number(self):
        number = (self.cleaned_data.get("number") or "").strip()
        if not number and self.instance.pk:
            return self.instance.number  # not yet overwritten: construct_instance runs after clean()
        if not number:
            raise ValidationError("This field is required.", code="required")
        return number


# ---------------------------------------------------------------------------------------
# Coupon codes CSV upload
# ---------------------------------------------------------------------------------------

COUPON_CSV_MAX_BYTES = 32 * 1024 * 1024


class CouponCodesUploadForm(forms.Form):
    """Parses the CSV into (line, code) rows for catalogue.services.coupon_codes_upload, which
    validates the codes themselves."""

    file = forms.FileField(
        label="CSV file",
        help_text=(
            "UTF-8, one code per line. An optional first line naming a <code>code</code> column "
            "selects that column; otherwise the first column is the code. Blank lines are skipped."
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > COUPON_CSV_MAX_BYTES:
            raise ValidationError(f"the file is larger than {COUPON_CSV_MAX_BYTES // (1024 * 1024)} MB")
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"the file is not UTF-8 text (byte {exc.start})") from exc
        try:
            self.cleaned_data["rows"] = coupon_csv_rows(text)
        except csv.Error as exc:
            raise ValidationError(f"not a readable CSV file: {exc}") from exc
        return upload


def coupon_csv_rows(text: str) -> list[tuple[int, str]]:
    """(line, code) pairs of a CSV text; ``line`` is where the record starts (1-based)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, str]] = []
    column = 0
    first_record = True
    last_line = 0
    for cells in reader:
        line, last_line = last_line + 1, reader.line_num
        if not cells:
            continue
        if first_record:
            first_record = False
            names = [cell.strip().lower() for cell in cells]
            if "code" in names:
                column = names.index("code")
                continue
        rows.append((line, cells[column] if column < len(cells) else ""))
    return rows
