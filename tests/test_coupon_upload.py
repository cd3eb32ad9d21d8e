"""Coupon codes enter a series' pool through catalogue.services.coupon_codes_upload (and the
admin's CSV page on it): all or nothing, each refusal naming its CSV line."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.forms import coupon_csv_rows
from catalogue.models import CouponCode
from catalogue.services import CouponUploadError, coupon_codes_upload
from issuance.models import IssuedUnit
from tests import factories as f


@pytest.fixture
def series():
    return f.CouponSeriesFactory(name="Summer vouchers")


def _pool(series) -> list[str]:
    return sorted(CouponCode.objects.filter(series=series).values_list("code", flat=True))


def _refusal(series, rows) -> list[str]:
    with pytest.raises(CouponUploadError) as refused:
        coupon_codes_upload(series=series, rows=rows)
    return [str(error) for error in refused.value.errors]


def _issue(series, code: str) -> IssuedUnit:
    line = f.IssuanceLineFactory(issuance__account__customer__org=series.org)
    return IssuedUnit.objects.create(line=line, coupon_series=series, coupon_code=code)


# ---------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_upload_puts_every_code_in_the_pool_and_counts_them(series):
    CouponCode.objects.create(series=series, code="OLD1")

    result = coupon_codes_upload(series=series, rows=[(1, "A1"), (2, " B2 "), (3, "C3")])

    assert (result.inserted, result.pool_size) == (3, 4)
    assert _pool(series) == ["A1", "B2", "C3", "OLD1"]


@pytest.mark.django_db
def test_code_repeated_in_the_file_is_refused_naming_both_lines(series):
    errors = _refusal(series, [(1, "A1"), (2, "B2"), (3, "A1")])

    assert errors == ["line 3: 'A1' repeats line 1"]
    assert _pool(series) == []


@pytest.mark.django_db
def test_code_already_in_the_pool_is_refused_and_nothing_inserted(series):
    CouponCode.objects.create(series=series, code="B2")

    errors = _refusal(series, [(2, "A1"), (3, "B2"), (4, "C3")])

    assert errors == ["line 3: 'B2' is already in the pool"]
    assert _pool(series) == ["B2"]


@pytest.mark.django_db
def test_code_already_issued_from_the_series_is_refused(series):
    _issue(series, "GONE1")

    errors = _refusal(series, [(1, "A1"), (2, "GONE1")])

    assert errors == ["line 2: 'GONE1' was already issued"]
    assert _pool(series) == []


@pytest.mark.django_db
def test_code_issued_from_another_series_is_accepted(series):
    _issue(f.CouponSeriesFactory(org=series.org), "SHARED")

    assert coupon_codes_upload(series=series, rows=[(1, "SHARED")]).inserted == 1


@pytest.mark.django_db
def test_empty_code_is_refused(series):
    errors = _refusal(series, [(1, "A1"), (2, "   "), (3, "")])

    assert errors == ["line 2: empty code", "line 3: empty code"]
    assert _pool(series) == []


@pytest.mark.django_db
def test_code_longer_than_64_characters_is_refused(series):
    errors = _refusal(series, [(1, "X" * 64), (2, "Y" * 65)])

    assert errors == ["line 2: code longer than 64 characters"]
    assert _pool(series) == []


@pytest.mark.django_db
def test_every_problem_is_reported_at_once_in_line_order(series):
    CouponCode.objects.create(series=series, code="IN_POOL")
    _issue(series, "ISSUED")

    errors = _refusal(series, [(1, "ISSUED"), (2, ""), (3, "IN_POOL"), (4, "OK"), (5, "OK")])

    assert errors == [
        "line 1: 'ISSUED' was already issued",
        "line 2: empty code",
        "line 3: 'IN_POOL' is already in the pool",
        "line 5: 'OK' repeats line 4",
    ]


@pytest.mark.django_db
def test_upload_to_a_generating_series_or_of_nothing_is_refused(series):
    assert _refusal(series, []) == ["the upload holds no code"]

    generating = f.CouponSeriesFactory(generate_codes=True)
    assert _refusal(generating, [(1, "A1")]) == ["this series generates its codes on issue; it has no pool"]


@pytest.mark.django_db
@pytest.mark.slow
def test_hundred_thousand_codes_go_in_with_batched_queries(series, django_assert_max_num_queries):
    CouponCode.objects.create(series=series, code="EXISTING")
    rows = [(line, f"BULK{line:07d}") for line in range(1, 100_001)]

    # Per batch of up to 5,000 codes: a pool look-up, an issued look-up, an INSERT; plus the
    # lock and the final count. Nothing per row.
    with django_assert_max_num_queries(1000):
        result = coupon_codes_upload(series=series, rows=rows)

    assert (result.inserted, result.pool_size) == (100_000, 100_001)


@pytest.mark.django_db
@pytest.mark.slow
def test_hundred_thousand_codes_with_one_clash_insert_nothing(series):
    _issue(series, "BULK0099999")
    rows = [(line, f"BULK{line:07d}") for line in range(1, 100_001)]

    assert _refusal(series, rows) == ["line 99999: 'BULK0099999' was already issued"]
    assert _pool(series) == []


# ---------------------------------------------------------------------------------------
# CSV parsing
# ---------------------------------------------------------------------------------------


def test_csv_rows_take_the_code_column_of_a_header_and_skip_blank_lines():
    text = "id,code,note\r\n1,AAA,x\r\n\r\n2,BBB\r\n3\r\n"

    assert coupon_csv_rows(text) == [(2, "AAA"), (4, "BBB"), (5, "")]


def test_csv_rows_without_header_take_the_first_column_and_count_multiline_records_from_their_start():
    text = 'AAA\n"B\nB"\nCCC\n'

    assert coupon_csv_rows(text) == [(1, "AAA"), (2, "B\nB"), (4, "CCC")]


# ---------------------------------------------------------------------------------------
# The admin page
# ---------------------------------------------------------------------------------------


def _upload_url(series):
    return reverse("admin:catalogue_couponseries_upload_codes", args=[series.pk])


def _csv(text: str, name="codes.csv"):
    return SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv")


@pytest.mark.django_db
def test_series_page_links_to_the_upload_page(admin_client, series):
    content = admin_client.get(reverse("admin:catalogue_couponseries_change", args=[series.pk])).content.decode()

    assert _upload_url(series) in content
    assert "Upload codes (CSV)</a>" in content  # the object-tools button
    assert admin_client.get(_upload_url(series)).status_code == 200


@pytest.mark.django_db
def test_admin_upload_of_a_good_csv_fills_the_pool(admin_client, series):
    response = admin_client.post(_upload_url(series), {"file": _csv("\ufeffcode\nA1\nB2\n")}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:catalogue_couponseries_change", args=[series.pk])
    assert "2 codes added to Summer vouchers; the pool now holds 2." in response.content.decode()
    assert _pool(series) == ["A1", "B2"]


@pytest.mark.django_db
def test_admin_upload_with_a_duplicate_shows_the_line_and_inserts_nothing(admin_client, series):
    response = admin_client.post(_upload_url(series), {"file": _csv("code\nA1\nB2\nA1\n")})

    assert response.status_code == 200
    content = response.content.decode()
    assert "line 4: &#x27;A1&#x27; repeats line 2" in content
    assert "no code was uploaded" in content
    assert _pool(series) == []


@pytest.mark.django_db
def test_admin_upload_of_a_file_that_is_not_utf8_is_refused(admin_client, series):
    response = admin_client.post(_upload_url(series), {"file": SimpleUploadedFile("c.csv", b"\xff\xfeA\x00")})

    assert "not UTF-8" in response.content.decode()
    assert _pool(series) == []


@pytest.mark.django_db
def test_staff_without_change_permission_cannot_upload(client, series):
    from django.contrib.auth.models import Permission

    viewer = f.UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_couponseries"))
    f.UserProfileFactory(user=viewer, org=series.org)
    client.force_login(viewer)

    assert client.post(_upload_url(series), {"file": _csv("A1\n")}).status_code == 403
    assert _pool(series) == []
