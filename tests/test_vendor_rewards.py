"""Vendor rewards against a real HTTP vendor on loopback (R10): holds, settlement,
every failure mode, partial bulk results, crash recovery, concurrency."""

import datetime
import json
import logging
import os
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from catalogue import models as cm
from catalogue.encryption import UnreadableSecret
from catalogue.choices import PaymentMode, RedemptionType
from issuance import ledger
from issuance.fake_vendor import FakeVendor
from issuance.models import IdempotencyRecord, IssuanceLine, IssuedUnit, LedgerEntry, LineStatus, PointsAccount
from issuance.recovery import pending_lines_recover
from issuance.vendors import vendor_call, vendor_status
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE

NOT_PRESENT = {"success": False, "code": 8003, "message": "fail to issue reward as voucher is not present"}
CONTEXT_MAP = {
    "voucher": "data.voucherCode",
    "valid_till": "data.validTill",
    "offer_name": "data.offer",
    "coupon_series_id": "data.seriesId",
}
BODY = '{"reference": "{{reference}}", "mobile": "{{mobile}}", "points": "{{points}}", "note": "for {{rewardId}}"}'


@pytest.fixture
def vendor_server():
    server = FakeVendor(slow_seconds=1.5).start()
    yield server
    server.stop()


def vendor_reward(brand, server, mode, *, pk=300, points="10", timeout="2", status_lookup=True):
    vendor = f.VendorFactory(org=brand.org)
    config = cm.VendorRedemptionConfig.objects.create(
        vendor=vendor, name=f"redeem-{mode}", url=f"{server.base_url}/redeem/{mode}", headers={"X-Api-Key": "s3cret"},
        body_template=BODY, timeout_seconds=Decimal(timeout), context_map=CONTEXT_MAP,
        status_url=f"{server.base_url}/status/{{{{reference}}}}" if status_lookup else "",
    )
    reward = f.RewardFactory(pk=pk, brand=brand, redemption_type=RedemptionType.VENDOR_ONLY_REWARD, vendor=vendor,
                             vendor_redemption=config)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(points))
    return reward


def account_state(account):
    account = PointsAccount.objects.get(pk=account.pk)
    return account.balance, account.held


@pytest.mark.django_db
def test_voucher_issued_points_deducted_once(api, account, brand, vendor_server):
    vendor_reward(brand, vendor_server, "ok")
    response = api.post(ISSUE_SINGLE.format(300), {"mobile": "11223569865", "transactionNumber": "T1"}, format="json")
    assert response.status_code == 200, response.content
    line = IssuanceLine.objects.get()
    assert response.json()["vendor"] == {
        "voucher": f"V-{line.pk}-0",
        "valid_till": "2027-11-01",
        "offer_name": "demo-offer",
        "coupon_series_id": "234",
        "pointsRedeemed": "10",
    }
    assert response.json()["status"]["code"] == 200 and response.json()["totalPointsRedeemed"] == 10
    assert account_state(account) == (Decimal("99990"), Decimal("0"))
    assert LedgerEntry.objects.get().amount == Decimal("-10")
    call = vendor_server.calls[0]
    assert call["body"] == {"reference": f"{line.pk}-0", "mobile": "11223569865", "points": 10,
                            "note": f"for {300}"}
    assert call["headers"]["X-Api-Key"] == "s3cret"
    assert line.status == LineStatus.ISSUED and line.issuance.status == "SUCCESS"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["novoucher", "error", "garbage", "drop", "slow"])
def test_vendor_failures_deduct_nothing(api, account, brand, vendor_server, mode):
    vendor_reward(brand, vendor_server, mode, timeout="0.5")
    response = api.post(ISSUE_SINGLE.format(300), {"mobile": "11223569865"}, format="json")
    assert response.status_code == 422
    assert response.json()["status"] == NOT_PRESENT
    assert response.json()["vendor"] is None
    assert account_state(account) == (Decimal("100000"), Decimal("0"))
    assert not LedgerEntry.objects.exists() and not IssuedUnit.objects.exists()
    line = IssuanceLine.objects.get()
    assert line.status == LineStatus.FAILED and line.diagnostic.startswith("vendor: ")
    assert line.held_points == 0 and line.pending_units == 0


@pytest.mark.django_db
def test_bulk_with_a_failing_vendor_reward_is_partial(api, account, brand, vendor_server):
    vendor_reward(brand, vendor_server, "error")
    plain = f.RewardFactory(pk=301, brand=brand)
    f.PaymentConfigFactory(reward=plain, mode=PaymentMode.POINTS, points=Decimal("5"))
    body = {"mobile": "11223569865", "rewards": [{"rewardId": 300}, {"rewardId": 301}]}
    response = api.post(ISSUE_BULK, body, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == {"success": False, "code": 8010, "message": "Reward issued partially"}
    assert [line["status"]["code"] for line in response.json()["rewards"]] == [8003, 200]
    assert account_state(account) == (Decimal("99995"), Decimal("0"))


@pytest.mark.django_db
def test_several_units_each_get_a_voucher(api, account, brand, vendor_server):
    vendor_reward(brand, vendor_server, "ok")
    response = api.post(ISSUE_BULK, {"mobile": "11223569865", "rewards": [{"rewardId": 300, "quantity": 3}]},
                        format="json")
    line = response.json()["rewards"][0]
    assert [v["voucher"] for v in line["vendor"]] == [f"V-{line['transactionId']}-{i}" for i in range(3)]
    assert line["quantity"] == 3 and line["totalPointsRedeemed"] == 30
    assert len(vendor_server.calls) == 3


@pytest.mark.django_db
def test_conv_ratio_miles_reward_with_a_vendor_config(api, account, brand, vendor_server):
    """The connected-orgs page's example: MILES via a vendor, CONV_RATIO 0.5, value 1 → 2 points."""
    reward = vendor_reward(brand, vendor_server, "ok", pk=350)
    cm.Reward.objects.filter(pk=350).update(redemption_type=RedemptionType.MILES)
    reward.payment_configs.all().delete()
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.CONV_RATIO, points=None, conversion_ratio=Decimal("0.5"))
    response = api.post(ISSUE_BULK, {"mobile": "11223569865", "rewards": [
        {"rewardId": 350, "quantity": 1, "paymentConfig": {"redemptionValue": 1}}]}, format="json")
    line = response.json()["rewards"][0]
    assert line["vendor"][0]["pointsRedeemed"] == "2"
    assert line["paymentConfig"]["conversionRatio"] == 0.5
    assert line["redemptionDetails"] == {"redemptionType": "MILES", "redemptionValue": 1, "totalRedemptionValue": 1}


@pytest.mark.django_db
def test_retry_while_pending_is_409_then_replays(api, account, brand, vendor_server):
    reward = vendor_reward(brand, vendor_server, "ok")
    body = {"mobile": "11223569865", "requestId": "vr-1"}
    # A crashed first attempt: the line was left PENDING with its hold.
    from issuance.models import Issuance

    issuance = Issuance.objects.create(org=brand.org, till=cm.Till.objects.get(code="till1"), customer=account.customer,
                                       account=account, actor_id=cm.Till.objects.get(code="till1").users.get().pk,
                                       status="PENDING", response_code=0)
    line = IssuanceLine.objects.create(issuance=issuance, org=brand.org, customer=account.customer, reward=reward,
                                       redemption_type=reward.redemption_type, request_id="vr-1", requested_quantity=1,
                                       planned_units=1, status=LineStatus.PENDING, pending_units=1,
                                       held_points=Decimal("10"), points_per_unit=Decimal("10"))
    PointsAccount.objects.filter(pk=account.pk).update(held=Decimal("10"))
    from issuance.services import fingerprint

    IdempotencyRecord.objects.create(org=brand.org, request_id="vr-1", shape="single", line=line,
                                     fingerprint=fingerprint("single", 300, body), state="IN_FLIGHT")
    response = api.post(ISSUE_SINGLE.format(300), body, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "status": {"success": False, "code": 10004, "message": "A request with this requestId is still being processed"}
    }
    report = pending_lines_recover(now=timezone.now() + datetime.timedelta(hours=1))
    assert (report.settled, report.released, report.flagged) == (0, 1, 0)  # the vendor never saw it
    assert account_state(account) == (Decimal("100000"), Decimal("0"))
    # R8: the released unit is still outstanding, so the retry issues it, on the same line.
    retry = api.post(ISSUE_SINGLE.format(300), body, format="json")
    assert retry.status_code == 200 and retry.json()["transactionId"] == line.pk
    assert account_state(account) == (Decimal("99990"), Decimal("0"))


# ---------------------------------------------------------------- crash between answer and settlement


def database_url_of_this_test() -> str:
    """The URL of the database this test runs on (pytest-django's test_ database)."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


CRASHING_CLIENT = textwrap.dedent(
    """
    import os, sys, django
    sys.path.insert(0, {root!r})
    os.environ["DJANGO_SETTINGS_MODULE"] = "rewards_site.settings.test"
    django.setup()
    from django.test import Client
    from issuance.vendor_settlement import vendor_answered
    from tests.conftest import basic_auth

    def die(**kwargs):
        os._exit(17)  # the process dies after the vendor answered, before settling

    vendor_answered.connect(die)
    Client().post({url!r}, {{"mobile": "11223569865", "requestId": "crash-1"}}, content_type="application/json",
                  HTTP_AUTHORIZATION=basic_auth("till_user", "pass"))
    os._exit(0)
    """
)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="needs PostgreSQL")
@pytest.mark.parametrize("status_lookup", [True, False], ids=["with-status-lookup", "without-status-lookup"])
def test_crash_after_the_vendor_answered_is_recovered(api, account, brand, vendor_server, status_lookup):
    vendor_reward(brand, vendor_server, "ok", status_lookup=status_lookup)
    script = CRASHING_CLIENT.format(root=str(settings.BASE_DIR), url=ISSUE_SINGLE.format(300))
    env = {**os.environ, "DATABASE_URL": database_url_of_this_test()}
    result = subprocess.run([sys.executable, "-c", script], env=env, timeout=60, capture_output=True)
    assert result.returncode == 17, result.stderr.decode()[-2000:]

    line = IssuanceLine.objects.get()
    assert line.status == LineStatus.PENDING and line.held_points == Decimal("10")
    assert account_state(account) == (Decimal("100000"), Decimal("10"))  # held, not deducted
    assert vendor_server.redeemed == {f"{line.pk}-0": 1}  # the vendor did issue a voucher

    # Too young: a live process could still be settling it.
    assert pending_lines_recover() .settled == 0 and IssuanceLine.objects.get().status == LineStatus.PENDING
    report = pending_lines_recover(now=timezone.now() + datetime.timedelta(hours=1))
    line.refresh_from_db()
    if status_lookup:
        assert (report.settled, report.flagged) == (1, 0)
        assert line.status == LineStatus.ISSUED and not line.needs_attention
        assert account_state(account) == (Decimal("99990"), Decimal("0"))
        assert IssuedUnit.objects.get().vendor_response["voucher"] == f"V-{line.pk}-0"
        replay = api.post(ISSUE_SINGLE.format(300), {"mobile": "11223569865", "requestId": "crash-1"}, format="json")
        assert replay.status_code == 200 and replay.json()["vendor"]["voucher"] == f"V-{line.pk}-0"
    else:
        assert (report.settled, report.flagged) == (0, 1)
        assert line.status == LineStatus.FAILED and line.needs_attention
        assert account_state(account) == (Decimal("100000"), Decimal("0"))
    assert ledger.accounts_check_all() == []
    assert pending_lines_recover(now=timezone.now() + datetime.timedelta(hours=2)).settled == 0  # nothing twice
    assert LedgerEntry.objects.count() == (1 if status_lookup else 0)


# ---------------------------------------------------------------- concurrency while calls are in flight


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="needs PostgreSQL")
def test_concurrent_vendor_issues_cannot_overspend(customer, brand, api_user, vendor_server, run_concurrently):
    from rest_framework.test import APIClient

    from tests.conftest import basic_auth

    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("25"))
    vendor_reward(brand, vendor_server, "slow", timeout="5")
    vendor_server.slow_seconds = 0.5

    def issue(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth("till_user", "pass"))
        return client.post(ISSUE_SINGLE.format(300), {"mobile": customer.mobile}, format="json").status_code

    statuses = run_concurrently(issue, threads=8)
    assert sorted(statuses) == [200, 200] + [422] * 6
    assert account_state(account) == (Decimal("5"), Decimal("0"))
    assert ledger.account_check(account.pk).ok
    assert IssuedUnit.objects.count() == 2 and len(vendor_server.redeemed) == 2
    connection.close()


@pytest.mark.django_db
@pytest.mark.parametrize(("mode", "expected"), [("ok", "would be ISSUED"), ("novoucher", "would FAIL (8003): no voucher")])
def test_admin_test_call_shows_the_answer_and_the_extraction(admin_client, brand, vendor_server, mode, expected):
    reward = vendor_reward(brand, vendor_server, mode)
    config = reward.vendor_redemption
    response = admin_client.post(
        "/admin/catalogue/vendorredemptionconfig/",
        {"action": "test_call", "_selected_action": [config.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert expected in text
    assert "s3cret" not in text  # header values are never shown
    if mode == "ok":
        assert "V-admin-test-" in text and "HTTP 200" in text
    assert vendor_server.calls[-1]["headers"]["X-Api-Key"] == "s3cret"


# ---------------------------------------------------------------- header values encrypted at rest


def raw_headers(config_id: int) -> str:
    """The headers column as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT headers FROM catalogue_vendorredemptionconfig WHERE id = %s", [config_id])
        (raw,) = cursor.fetchone()
    return raw if isinstance(raw, str) else json.dumps(raw)


def fresh(config) -> cm.VendorRedemptionConfig:
    return cm.VendorRedemptionConfig.objects.get(pk=config.pk)


VARIABLES = {"reference": "enc-1", "mobile": "11223569865", "points": 10, "rewardId": 300}


@pytest.mark.django_db
def test_header_values_are_ciphertext_in_the_database_and_sent_in_clear(brand, vendor_server):
    config = vendor_reward(brand, vendor_server, "ok").vendor_redemption
    raw = raw_headers(config.pk)
    assert "s3cret" not in raw
    stored = json.loads(raw)
    assert list(stored) == ["X-Api-Key"]  # the name stays readable
    assert stored["X-Api-Key"].startswith("gAAAAA")  # a Fernet token
    assert fresh(config).headers == {"X-Api-Key": "s3cret"}
    answer = vendor_call(fresh(config), variables=VARIABLES)
    assert answer.ok, answer.error
    assert vendor_server.calls[-1]["headers"]["X-Api-Key"] == "s3cret"
    # Every way of writing encrypts: update() too (bulk_create/bulk_update: tests/test_import_export.py).
    cm.VendorRedemptionConfig.objects.filter(pk=config.pk).update(headers={"X-Api-Key": "upd4ted"})
    assert "upd4ted" not in raw_headers(config.pk) and fresh(config).headers == {"X-Api-Key": "upd4ted"}


@pytest.mark.django_db
def test_key_rotation_old_key_second_still_decrypts_then_reencrypt_under_the_new_one(
    settings, brand, vendor_server, capsys
):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    config = vendor_reward(brand, vendor_server, "ok").vendor_redemption
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert fresh(config).headers == {"X-Api-Key": "s3cret"}
    assert vendor_call(fresh(config), variables=VARIABLES).ok
    assert vendor_server.calls[-1]["headers"]["X-Api-Key"] == "s3cret"
    call_command("reencrypt_secrets")
    assert "Re-encrypted the header values of 1 vendor redemption config(s)." in capsys.readouterr().out
    token = json.loads(raw_headers(config.pk))["X-Api-Key"]
    assert Fernet(new_key.encode()).decrypt(token.encode()) == b"s3cret"  # now under the new key
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key dropped
    assert fresh(config).headers == {"X-Api-Key": "s3cret"}


@pytest.mark.django_db
def test_a_header_value_no_key_decrypts_fails_the_unit_cleanly_and_logs_no_secret(
    settings, api, account, brand, vendor_server, caplog, admin_client
):
    reward = vendor_reward(brand, vendor_server, "ok")
    config = reward.vendor_redemption
    token = json.loads(raw_headers(config.pk))["X-Api-Key"]
    good_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the wrong key

    loaded = fresh(config)  # reading the row does not fail ...
    assert isinstance(loaded.headers["X-Api-Key"], UnreadableSecret)
    assert "s3cret" not in repr(loaded.headers) and token not in repr(loaded.headers)
    with caplog.at_level(logging.ERROR, logger="issuance.vendors"):
        response = api.post(ISSUE_SINGLE.format(300), {"mobile": "11223569865"}, format="json")
    # ... the unit fails as a vendor failure: 8003, nothing deducted, the vendor never called.
    assert response.status_code == 422, response.content
    assert response.json()["status"] == NOT_PRESENT
    assert account_state(account) == (Decimal("100000"), Decimal("0"))
    assert vendor_server.calls == []
    line = IssuanceLine.objects.get()
    assert line.status == LineStatus.FAILED and "X-Api-Key cannot be decrypted" in line.diagnostic
    records = [r for r in caplog.records if r.name == "issuance.vendors"]
    assert records and records[0].levelno == logging.ERROR
    message = records[0].getMessage()
    assert f"vendor redemption config {config.pk}" in message and "X-Api-Key" in message
    assert "s3cret" not in caplog.text and token not in caplog.text
    assert not vendor_status(loaded, variables=VARIABLES).ok  # recovery's look-up refuses it too
    assert vendor_server.calls == []

    # The admin names the header instead of failing; saving the config keeps the stored token.
    page = admin_client.get(f"/admin/catalogue/vendorredemptionconfig/{config.pk}/change/")
    assert page.status_code == 200
    assert "header X-Api-Key cannot be decrypted with FIELD_ENCRYPTION_KEYS" in page.content.decode()
    assert token not in page.content.decode()
    listing = admin_client.get("/admin/catalogue/vendorredemptionconfig/").content.decode()
    assert "cannot be decrypted with FIELD_ENCRYPTION_KEYS: X-Api-Key" in listing and token not in listing
    loaded.name = "renamed"
    loaded.save()
    assert json.loads(raw_headers(config.pk))["X-Api-Key"] == token
    with pytest.raises(CommandError, match=f"config {config.pk}: X-Api-Key"):
        call_command("reencrypt_secrets")

    settings.FIELD_ENCRYPTION_KEYS = good_keys  # the right key back: the value reads again
    assert fresh(config).headers == {"X-Api-Key": "s3cret"}
