"""Bad input, beyond what the fuzzer generates, on every endpoint: each is answered with a
clear 4xx carrying the spec's status block, never a 5xx, and writes nothing.

tests/test_issue_api.py covers the bulk call's field validation and a few malformed bodies;
this suite takes the hostile cases across all endpoints: malformed and truncated JSON, wrong
content types, 10 MB bodies (refused after reading at most API_MAX_BODY_BYTES + 1 bytes),
form posts over DATA_UPLOAD_MAX_MEMORY_SIZE, deep nesting, huge numbers, bad quantities,
U+0000 / unpaired surrogates / RTL marks / emoji / control characters in every string field,
SQL and HTML injection, duplicate keys, thousands of rewards in one call, and the list
endpoint's query parameters. The number of requests sent is printed at the end of the run.
"""

import collections
import copy
import io
import json
from decimal import Decimal

import pytest
from django.test import Client

from catalogue import models as cm
from catalogue.choices import PaymentMode
from issuance.models import (
    IdempotencyRecord,
    Issuance,
    IssuanceLine,
    IssuedUnit,
    LedgerEntry,
    PointsAccount,
    ValidationCode,
)
from tests import factories as f
from tests.conftest import SUMMARY_LINES, basic_auth

pytestmark = pytest.mark.django_db

MOBILE = "11223569865"
REWARD = 7
QUERY = "?username=till1&skip_validation=true"
PREFIX = "/api_gateway/rewards/core/"

ENDPOINTS = {
    "single": (f"{PREFIX}v1/user/reward/{REWARD}/issue{QUERY}", {"mobile": MOBILE, "brand": "BUKL"}),
    "bulk": (f"{PREFIX}v1/user/rewards/issue{QUERY}",
             {"mobile": MOBILE, "brand": "BUKL", "rewards": [{"rewardId": REWARD, "quantity": 1}]}),
    "connected": (f"{PREFIX}v1.1/user/rewards/issue/{QUERY}",
                  {"mobile": MOBILE, "brand": "BUKL", "rewards": [{"rewardId": REWARD, "quantity": 1}]}),
    "validation_code": (f"{PREFIX}v1/user/validation_code?username=till1", {"mobile": MOBILE}),
}
ISSUE_ENDPOINTS = ["single", "bulk", "connected"]
RESULTS: collections.Counter = collections.Counter()


@pytest.fixture
def world(org, brand, api_user, customer, account):
    reward = f.RewardFactory(pk=REWARD, brand=brand, intouch_points=0)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    return account


@pytest.fixture
def http():
    """Django's test client with the till's Basic credentials (raw bodies, any content type)."""
    return Client(HTTP_AUTHORIZATION=basic_auth("till_user", "pass"))


def post(http, endpoint: str, body, *, content_type="application/json", **extra):
    path, _ = ENDPOINTS[endpoint]
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    # CONTENT_TYPE also for an empty body (the test client leaves it out then).
    return http.generic("POST", path, raw, content_type=content_type, CONTENT_TYPE=content_type, **extra)


def nothing_written(account) -> None:
    assert not IssuanceLine.objects.exists() and not Issuance.objects.exists()
    assert not LedgerEntry.objects.exists() and not IssuedUnit.objects.exists()
    assert not IdempotencyRecord.objects.exists() and not ValidationCode.objects.exists()
    assert PointsAccount.objects.get(pk=account.pk).balance == account.opening_balance


def refused(response, account, *statuses: int) -> dict:
    """A clear 4xx: one of ``statuses`` (any 4xx when none given), JSON, the status block,
    nothing leaked, nothing written."""
    RESULTS[response.status_code] += 1
    text = response.content.decode()
    assert 400 <= response.status_code < 500, text[:500]
    if statuses:
        assert response.status_code in statuses, text[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert "Traceback" not in text and "pass" not in text.replace("passed", "")
    status = response.json()["status"]
    assert status["success"] is False and isinstance(status["code"], int) and status["message"], status
    nothing_written(account)
    return status


def with_value(body: dict, path: str, value) -> dict:
    """``body`` with ``value`` at ``path`` (``rewards.0.paymentConfig.id``); missing dicts are made."""
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(last) if isinstance(node, list) else last] = value
    return body


def item_path(endpoint: str, field: str) -> str:
    """Where a reward's own field goes: the body (single) or the first item (bulk, v1.1)."""
    return field if endpoint == "single" else f"rewards.0.{field}"


# ---------------------------------------------------------------------------------------
# The valid bodies are accepted: what is refused below is refused for its variation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_the_valid_body_of_each_endpoint_is_accepted(http, world, endpoint):
    response = post(http, endpoint, ENDPOINTS[endpoint][1])
    RESULTS[response.status_code] += 1
    assert response.status_code == 200, response.content


# ---------------------------------------------------------------------------------------
# Malformed, truncated, not an object, wrong content type
# ---------------------------------------------------------------------------------------

MALFORMED = {
    "truncated half": None,  # built from the valid body
    "truncated last byte": None,
    "missing value": b'{"mobile": }',
    "single quotes": b"{'mobile': '11223569865'}",
    "trailing comma": b'{"mobile": "11223569865",}',
    "two documents": b'{"mobile": "1"} {"mobile": "2"}',
    "NaN": b'{"mobile": "1", "params": NaN}',
    "Infinity": b'{"mobile": "1", "params": -Infinity}',
    "raw NUL byte in a string": b'{"mobile": "1\x00"}',
    "raw control character in a string": b'{"mobile": "1\x07"}',
    "invalid UTF-8": b'{"mobile": "\xc3\x28"}',
    "UTF-16": '{"mobile": "11223569865"}'.encode("utf-16"),
    "empty": b"",
    "blank": b"   \n ",
    "null": b"null",
    "array": b"[]",
    "string": b'"mobile"',
    "number": b"12",
    "objects nested 100000 deep": b'{"a":' * 100000 + b"1" + b"}" * 100000,
    "duplicate key": b'{"mobile": "11223569865", "mobile": "1"}',
    "duplicate key in a nested object": b'{"mobile": "1", "paymentConfig": {"id": 1, "id": 2}}',
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_and_truncated_bodies_are_400(http, world, endpoint, case):
    raw = MALFORMED[case]
    if raw is None:
        valid = json.dumps(ENDPOINTS[endpoint][1]).encode()
        raw = valid[: len(valid) // 2] if case == "truncated half" else valid[:-1]
    status = refused(post(http, endpoint, raw), world, 400)
    assert status["code"] == 400


def test_a_utf8_byte_order_mark_is_ignored(http, world):
    """RFC 8259 lets a parser ignore a BOM; the control case of the bodies above."""
    response = post(http, "single", b"\xef\xbb\xbf" + json.dumps(ENDPOINTS["single"][1]).encode())
    assert response.status_code == 200, response.content


def test_nesting_deeper_than_the_limit_is_400_even_inside_free_form_params(http, world):
    deep = 1
    for _ in range(40):
        deep = {"a": deep}
    for endpoint in ISSUE_ENDPOINTS:
        body = with_value(ENDPOINTS[endpoint][1], item_path(endpoint, "params"), deep)
        status = refused(post(http, endpoint, body), world, 400)
        assert status["message"] == "Malformed JSON: nested deeper than 32 levels"


CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/json-patch+json",
    "",
]


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_other_content_types_are_415(http, world, endpoint, content_type):
    status = refused(post(http, endpoint, ENDPOINTS[endpoint][1], content_type=content_type), world, 415)
    assert status["code"] == 415


def test_a_body_in_another_charset_is_400(http, world):
    raw = '{"mobile": "11223569865", "notes": "café"}'.encode("latin-1")
    status = refused(post(http, "single", raw, content_type="application/json; charset=latin-1"), world, 400)
    assert status["message"] == "The request body is not UTF-8"


# ---------------------------------------------------------------------------------------
# Size: 10 MB bodies, form posts, thousands of rewards
# ---------------------------------------------------------------------------------------


class CountingStream(io.BytesIO):
    """wsgi.input that counts what the application read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readline(self, size=-1):
        chunk = super().readline(size)
        self.bytes_read += len(chunk)
        return chunk


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_a_10_mb_body_is_413_without_reading_it_all(http, world, endpoint, settings):
    body = with_value(ENDPOINTS[endpoint][1], "notes", "x" * (10 * 1024 * 1024))
    raw = json.dumps(body).encode()
    stream = CountingStream(raw)
    path, _ = ENDPOINTS[endpoint]
    response = http.generic("POST", path, raw, content_type="application/json", **{"wsgi.input": stream})
    status = refused(response, world, 413)
    limit = settings.API_MAX_BODY_BYTES
    assert status["message"] == f"Request body too large (at most {limit} bytes)"
    assert stream.bytes_read <= limit + 1 < len(raw) // 10


def test_the_limit_is_api_max_body_bytes(http, world, settings):
    settings.API_MAX_BODY_BYTES = 4096
    refused(post(http, "bulk", with_value(ENDPOINTS["bulk"][1], "notes", "x" * 4096)), world, 413)
    under = post(http, "bulk", with_value(ENDPOINTS["bulk"][1], "notes", "x" * 3000))
    assert under.status_code == 200, under.content


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_a_form_post_over_the_upload_limit_is_refused_unread(http, world, endpoint, settings):
    """API endpoints take JSON only: a form body is 415 before anything reads it, however big
    (DATA_UPLOAD_MAX_MEMORY_SIZE would stop Django from buffering it anyway)."""
    raw = b"mobile=" + b"1" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    stream = CountingStream(raw)
    path, _ = ENDPOINTS[endpoint]
    response = http.generic("POST", path, raw, content_type="application/x-www-form-urlencoded",
                            **{"wsgi.input": stream})
    refused(response, world, 415)
    assert stream.bytes_read == 0


def test_a_form_post_over_the_upload_limit_to_a_page_is_400_not_500(world, settings):
    raw = b"username=a&password=" + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    for path in ("/staff/login/", "/admin/login/"):
        response = Client().generic("POST", path, raw, content_type="application/x-www-form-urlencoded")
        RESULTS[response.status_code] += 1
        assert response.status_code == 400, (path, response.status_code)


@pytest.mark.parametrize("endpoint", ["bulk", "connected"])
@pytest.mark.parametrize("count", [101, 5000])
def test_more_rewards_than_the_documented_maximum_is_400(http, world, endpoint, count, settings):
    body = {**ENDPOINTS[endpoint][1], "rewards": [{"rewardId": REWARD, "quantity": 1}] * count}
    status = refused(post(http, endpoint, body), world, 400)
    assert status["message"] == f"rewards: at most {settings.API_MAX_BULK_REWARDS} rewards per call"


# ---------------------------------------------------------------------------------------
# Numbers: huge, negative, fractional, not numbers
# ---------------------------------------------------------------------------------------

HUGE = 10**40
HUGE_NUMBERS = {
    # field (item fields are put on the item) → the statuses it may answer
    "quantity": (400,),
    "rewardId": (400,),
    "orgId": (400,),
    "paymentConfig.id": (400,),
    "paymentConfig.redemptionValue": (400,),
    "paymentConfig.points": (400,),
    "paymentConfig.tender.totalAmount": (400,),
    "programId": (400,),
    "mobile": (404,),  # a well-formed identifier that matches no customer: 1014
    "externalId": (404,),
    "transactionNumber": (200,),  # a reference: any string or integer, kept as given
}
ITEM_FIELDS = {"quantity", "rewardId", "orgId", "paymentConfig", "customFields", "fulfillmentDetails", "params",
               "requestId", "eventLogId"}


def _field_path(endpoint: str, field: str) -> str | None:
    top = field.split(".")[0]
    if top in ITEM_FIELDS:
        if endpoint == "validation_code" or (endpoint == "single" and top in ("rewardId", "orgId")):
            return None
        return item_path(endpoint, field)
    if endpoint == "validation_code" and top not in ("mobile", "externalId", "email", "emailId"):
        return None
    return field


HUGE_CASES = [(endpoint, field) for endpoint in sorted(ENDPOINTS) for field in sorted(HUGE_NUMBERS)
              if _field_path(endpoint, field) is not None]


@pytest.mark.parametrize(("endpoint", "field"), HUGE_CASES)
@pytest.mark.parametrize("sign", [1, -1])
def test_huge_numbers_are_refused_cleanly(http, world, endpoint, field, sign):
    path = _field_path(endpoint, field)
    response = post(http, endpoint, with_value(ENDPOINTS[endpoint][1], path, sign * HUGE))
    if HUGE_NUMBERS[field] == (200,):
        RESULTS[response.status_code] += 1
        assert response.status_code == 200, response.content
        assert Issuance.objects.get().transaction_number == str(sign * HUGE)
        return
    refused(response, world, *HUGE_NUMBERS[field])


def test_a_huge_reward_id_in_the_path_is_404_with_the_status_block(http, world):
    for reward_id in (str(HUGE), "-1", "1.5", "abc", "%00", "1e3"):
        response = http.post(f"{PREFIX}v1/user/reward/{reward_id}/issue{QUERY}", {"mobile": MOBILE},
                             content_type="application/json")
        status = refused(response, world, 404, 400)
        assert status["code"] in (404, 400)


BAD_QUANTITIES = [-1, -0.5, 0, 0.5, 0.999, "-1", "abc", "", " ", "1e9999", "NaN", "Infinity", True, False, None,
                  [], {}, [1]]


@pytest.mark.parametrize("endpoint", ISSUE_ENDPOINTS)
@pytest.mark.parametrize("quantity", BAD_QUANTITIES, ids=repr)
def test_negative_fractional_and_non_numeric_quantities_are_400(http, world, endpoint, quantity):
    body = with_value(ENDPOINTS[endpoint][1], item_path(endpoint, "quantity"), quantity)
    status = refused(post(http, endpoint, body), world, 400)
    assert "quantity" in status["message"], status


def test_a_fractional_quantity_takes_its_integer_part(http, world):
    """R4: 1.56 is 1 (not a refusal, the control case of the quantities above)."""
    body = with_value(ENDPOINTS["bulk"][1], "rewards.0.quantity", 1.56)
    response = post(http, "bulk", body)
    assert response.status_code == 200
    assert response.json()["rewards"][0]["requestedQuantity"] == 1


# ---------------------------------------------------------------------------------------
# Strings: U+0000 and unpaired surrogates everywhere; RTL, emoji, control characters,
# SQL and HTML injection in every string field
# ---------------------------------------------------------------------------------------

STRING_FIELDS = {
    "single": ["mobile", "email", "emailId", "externalId", "brand", "transactionNumber", "notes", "programId",
               "eventDateTime", "validationCode", "user_group2_primary_user_id", "user_group2_id",
               "user_group2_external_id", "rewardOwnershipRO.ownerId", "requestId", "eventLogId",
               "fulfillmentDetails.status", "customFields.field", "params.key",
               "paymentConfig.tender.methodOfPayment", "paymentConfig.tender.methodOfPaymentId"],
    "validation_code": ["mobile", "email", "emailId", "externalId"],
}
STRING_FIELDS["bulk"] = [
    field if field.split(".")[0] not in ITEM_FIELDS else f"rewards.0.{field}" for field in STRING_FIELDS["single"]
] + ["params.key"]
STRING_FIELDS["connected"] = STRING_FIELDS["bulk"] + ["orgLevelDetails.0.notes"]

UNSTORABLE = {"NUL": "ab\u0000cd", "unpaired surrogate": "ab\ud800cd"}


def _string_cases():
    for endpoint, fields in STRING_FIELDS.items():
        for field in fields:
            yield endpoint, field


def _put(body: dict, field: str, value: str) -> dict:
    if field == "orgLevelDetails.0.notes":
        body = copy.deepcopy(body)
        body["orgLevelDetails"] = [{"orgId": 1, "notes": value}]
        return body
    if field.endswith("customFields.field"):  # the key too
        return with_value(body, field.rsplit(".", 1)[0], {value: value})
    return with_value(body, field, value)


@pytest.mark.parametrize(("endpoint", "field"), list(_string_cases()))
@pytest.mark.parametrize("kind", sorted(UNSTORABLE))
def test_unstorable_characters_in_any_string_field_are_400(http, world, endpoint, field, kind):
    raw = json.dumps(_put(ENDPOINTS[endpoint][1], field, UNSTORABLE[kind])).encode()  # \u escapes
    status = refused(post(http, endpoint, raw), world, 400)
    assert status["code"] == 400


ODD_BUT_LEGAL = {
    "RTL marks": "\u202eabc\u200f\u202c",
    "emoji": "🎁🙂👍🏽",
    "control characters": "a\u0001b\u001fc\u007f",
    "zero-width and combining": "a\u200b\u200dé\u0301",
    "SQL injection": "'; DROP TABLE catalogue_reward; --",
    "SQL injection 2": "' OR '1'='1",
    "HTML injection": "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "long": "ж" * 3000,
}


@pytest.mark.parametrize(("endpoint", "field"), list(_string_cases()))
@pytest.mark.parametrize("kind", sorted(ODD_BUT_LEGAL))
def test_odd_but_legal_strings_in_any_string_field_never_break_anything(http, world, endpoint, field, kind):
    """Unicode, control characters and injection attempts are text like any other: refused
    with a clear 4xx where the field cannot take them (nothing written), or taken as given."""
    rewards = cm.Reward.objects.count()
    value = ODD_BUT_LEGAL[kind]
    response = post(http, endpoint, _put(ENDPOINTS[endpoint][1], field, value))
    if response.status_code < 400:
        RESULTS[response.status_code] += 1
        assert response.status_code == 200, response.content
        if field.endswith("notes") and endpoint != "connected":
            assert Issuance.objects.get().notes == value
        if field.endswith("requestId"):
            assert IdempotencyRecord.objects.get().request_id == value
    else:
        refused(response, world)
    if field in ("mobile", "externalId", "email", "emailId", "brand") and response.status_code >= 400:
        # No such customer or brand (1014, 3004); a value longer than the field allows: 400.
        assert response.status_code in ((400, 404) if kind == "long" else (404,)), response.content
    assert cm.Reward.objects.count() == rewards  # no injection reached the database


# ---------------------------------------------------------------------------------------
# Query parameters and headers of the POST endpoints
# ---------------------------------------------------------------------------------------

ISSUE_QUERIES = {
    "no till": ("?skip_validation=true", {}, 400),
    "NUL in the till": ("?username=till%001&skip_validation=true", {}, 400),
    "10 000 characters of till": ("?username=" + "t" * 10000 + "&skip_validation=true", {}, 403),
    "SQL in the till": ("?username=%27%20OR%201%3D1--&skip_validation=true", {}, 403),
    "skip_validation=maybe": ("?username=till1&skip_validation=maybe", {}, 400),
    "dryRun=2": ("?username=till1&skip_validation=true&dryRun=2", {}, 400),
    "DATA-SCOPE bogus": (QUERY, {"HTTP_DATA_SCOPE": "EVERYONE"}, 403),
    "DATA-SCOPE ALL on a POST": (QUERY, {"HTTP_DATA_SCOPE": "ALL"}, 403),
    "DATA-SCOPE-ORG three orgs": (QUERY, {"HTTP_DATA_SCOPE": "OTHER", "HTTP_DATA_SCOPE_ORG": "1,2,3"}, 403),
    "DATA-SCOPE-ORG not numbers": (QUERY, {"HTTP_DATA_SCOPE": "OTHER", "HTTP_DATA_SCOPE_ORG": "abc"}, 403),
    "DATA-SCOPE-ORG huge": (QUERY, {"HTTP_DATA_SCOPE": "OTHER", "HTTP_DATA_SCOPE_ORG": str(HUGE)}, 403),
}


@pytest.mark.parametrize("case", sorted(ISSUE_QUERIES))
def test_bad_query_parameters_and_headers_of_the_issue_calls(http, world, case):
    query, headers, expected = ISSUE_QUERIES[case]
    endpoints = ["connected"] if "DATA-SCOPE" in case else ISSUE_ENDPOINTS
    for endpoint in endpoints:
        path = ENDPOINTS[endpoint][0].split("?")[0] + query
        response = http.post(path, ENDPOINTS[endpoint][1], content_type="application/json", **headers)
        refused(response, world, expected)


# ---------------------------------------------------------------------------------------
# The list endpoint's query parameters
# ---------------------------------------------------------------------------------------

LIST_QUERIES = {
    # query string (after userId=<customer>&) → status, and the parameter the message names
    "page=-1": (400, "page"),
    "page=abc": (400, "page"),
    f"page={HUGE}": (400, "page"),
    "page=1.5": (400, "page"),
    "size=0": (400, "size"),
    f"size={HUGE}": (400, "size"),
    "minPoints=NaN": (400, "minPoints"),
    "minPoints=Infinity": (400, "minPoints"),
    "maxPoints=1e400": (400, "maxPoints"),
    "minCash=-1": (400, "minCash"),
    "minPoints=5&maxPoints=1": (400, "minPoints"),
    "label=abc": (400, "label"),
    f"label={HUGE}": (400, "label"),
    "vendorId=-1": (400, "vendorId"),
    "status=live": (400, "status"),
    "status=LIVE&status=BOGUS": (400, "status"),
    "redemptionType=FOO": (400, "redemptionType"),
    "sortBy=name": (400, "sortBy"),
    "orderBy=asc": (400, "orderBy"),
    "createdOnDaysAgo=-1": (400, "createdOnDaysAgo"),
    "createdOnDaysAgo=99999999": (400, "createdOnDaysAgo"),
    "includeExpired=maybe": (400, "includeExpired"),
    "activationStatus=enabled": (400, "activationStatus"),
    "groupName=a%00b": (400, "URL"),
    "category=%00": (400, "URL"),
}
LIST_USER_IDS = {"": (400, "primary identifier"), "abc": (400, "userId"), "-1": (400, "userId"),
                 "%00": (400, "URL"), str(HUGE): (404, "customer"), "1.0": (400, "userId")}


def _list(http, query: str, brand: str = "BUKL"):
    return http.get(f"{PREFIX}v1/user/reward/brand/{brand}?{query}")


@pytest.mark.parametrize("query", sorted(LIST_QUERIES))
def test_bad_list_parameters_are_400_naming_the_parameter(http, world, customer, query):
    expected, named = LIST_QUERIES[query]
    status = refused(_list(http, f"userId={customer.pk}&{query}"), world, expected)
    assert named in status["message"], status


@pytest.mark.parametrize("user_id", sorted(LIST_USER_IDS))
def test_bad_user_ids_of_the_list(http, world, user_id):
    expected, named = LIST_USER_IDS[user_id]
    status = refused(_list(http, f"userId={user_id}"), world, expected)
    assert named in status["message"], status


@pytest.mark.parametrize("brand_name", ["%27%20OR%201%3D1--", "%3Cscript%3E", "%F0%9F%8E%81", "%E2%80%AEBUKL",
                                        "B" * 5000, "%C3%28"])
def test_odd_brand_names_of_the_list_are_3004(http, world, customer, brand_name):
    status = refused(_list(http, f"userId={customer.pk}", brand=brand_name), world, 404)
    assert status["code"] == 3004


@pytest.mark.parametrize("value", ["%E2%80%AE", "%F0%9F%8E%81", "%27%3B%20DROP%20TABLE%20catalogue_reward%3B--",
                                   "x" * 10000, "a,,,b,", "%01%1F"])
def test_odd_but_legal_list_filters_answer_200(http, world, customer, value):
    for name in ("groupName", "category"):
        response = _list(http, f"userId={customer.pk}&{name}={value}")
        RESULTS[response.status_code] += 1
        assert response.status_code == 200, response.content
        assert response.json()["rewardList"] == []
    assert cm.Reward.objects.filter(pk=REWARD).exists()


def test_zz_report_case_counts():
    """Runs last in this module: how many requests the suite sent, by answer."""
    if not RESULTS:
        pytest.skip("nothing ran")
    total = sum(RESULTS.values())
    SUMMARY_LINES.append(f"bad input: {total} requests, answers {dict(sorted(RESULTS.items()))}, 0 server errors")
    assert not any(code >= 500 for code in RESULTS)
