"""Production hardening: `check --deploy` clean, security headers and the Content-Security-
Policy on every page, sign-in throttling, request ids and JSON logs without secrets, error
answers without leaks, and the health check."""

import base64
import hashlib
import html as html_module
import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from cryptography.fernet import Fernet
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from catalogue import models as cm
from catalogue.choices import PaymentMode, RedemptionType
from issuance.fake_vendor import FakeVendor
from issuance.models import IssuanceLine
from rewards_site.observability import JsonFormatter, RequestIdFilter
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE, basic_auth
from tests.test_staff_pages import build_world

ROOT = Path(__file__).resolve().parents[1]
CARD = "4111111111111111"  # a test card number (Luhn-valid)
CARD_SPACED = "4111 1111 1111 1111"


def manage(*args: str, settings_module: str, env: dict | None = None, code: str | None = None, timeout=120):
    """``manage.py ARGS`` (or ``python -c CODE`` after django.setup()) in a fresh process."""
    # Not the test process's own switches: the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE,
    # which a deployment must not (async.E001).
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    environment = {**inherited, "DJANGO_SETTINGS_MODULE": settings_module, **(env or {})}
    command = [sys.executable, "manage.py", *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def production_env(**extra) -> dict:
    return {
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "rewards.example.com,testserver",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://rewards@127.0.0.1:5432/rewards"),
        "DEBUG": "false",
        "FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        **extra,
    }


# ---------------------------------------------------------------------------------------
# Production settings
# ---------------------------------------------------------------------------------------


def test_production_settings_pass_check_deploy_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", settings_module="rewards_site.settings.production",
                    env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr


PRODUCTION_PROBE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.test import Client
    client = Client()
    out = {}
    health = client.get("/health/")  # plain HTTP: load balancers probe like this
    out["health"] = [health.status_code, health.content.decode()]
    page = client.get("/staff/login/")
    out["redirect"] = [page.status_code, page.get("Location")]
    secure = client.get("/staff/login/", secure=True)
    out["secure"] = {"status": secure.status_code, "headers": dict(secure.headers),
                     "cookies": {name: dict(morsel) for name, morsel in secure.cookies.items()}}
    print(json.dumps(out))
    """
)


def test_production_pages_are_https_only_with_security_headers_and_secure_cookies():
    result = manage(settings_module="rewards_site.settings.production", env=production_env(ACCESS_LOG="false"),
                    code=PRODUCTION_PROBE)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["health"] == [200, '{"status": "ok", "database": "ok"}']
    assert out["redirect"] == [301, "https://testserver/staff/login/"]
    secure = out["secure"]
    assert secure["status"] == 200
    headers = secure["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
    csrf = secure["cookies"]["csrftoken"]
    assert csrf["secure"] is True and csrf["samesite"] == "Lax"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [("DEBUG", "true", "DEBUG must be off"), ("SECRET_KEY", "short", "SECRET_KEY must be a long random value"),
     ("API_MAX_BODY_BYTES", "10", "API_MAX_BODY_BYTES"),
     ("FIELD_ENCRYPTION_KEYS", "", "FIELD_ENCRYPTION_KEYS must be set in production"),
     pytest.param("FIELD_ENCRYPTION_KEYS", f"{Fernet.generate_key().decode()},not-a-fernet-key",
                  "FIELD_ENCRYPTION_KEYS: key 2 is not a Fernet key", id="FIELD_ENCRYPTION_KEYS-second-key-bad")],
)
def test_production_settings_refuse_insecure_values_at_start_up(variable, value, message):
    result = manage("check", settings_module="rewards_site.settings.production",
                    env=production_env(**{variable: value}))
    assert result.returncode != 0
    assert message in result.stderr
    if variable == "FIELD_ENCRYPTION_KEYS" and value:
        assert value.split(",")[0] not in result.stderr  # the keys are never echoed


# ---------------------------------------------------------------------------------------
# Content-Security-Policy: on every page, and nothing inline that it would block
# ---------------------------------------------------------------------------------------

POLICY = {
    "default-src": "'self'", "script-src": "'self'",
    "style-src": "'self' 'unsafe-hashes' 'sha256-EHE62l6Ko94Y6t/3oC7n7Dvu/RAMUZbTPvdt3MNbWhk='",
    "img-src": "'self' data:",
    "font-src": "'self'", "connect-src": "'self'", "object-src": "'none'", "base-uri": "'self'",
    "form-action": "'self'", "frame-ancestors": "'none'",
}


def policy_of(response) -> dict:
    parts = [part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";") if part.strip()]
    return {name: value for name, value in parts}


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "inline <style>"),
    (re.compile(r"\son[a-z]+=\"", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"(?:src|href)=\"(?:https?:)?//", re.I), "a resource from another site"),
]
STYLE_ATTRIBUTE = re.compile(r"\sstyle=\"([^\"]*)\"", re.I)


def _hash(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def assert_nothing_inline(url: str, html: str) -> None:
    """Nothing the policy blocks: no inline script, <style>, handler or foreign resource; a
    style attribute only when its hash is allowed ('unsafe-hashes')."""
    for pattern, what in INLINE:
        match = pattern.search(html)
        assert match is None, f"{url}: {what}: {html[max(0, match.start() - 80):match.end() + 80]}"
    allowed = POLICY["style-src"].split()
    for match in STYLE_ATTRIBUTE.finditer(html):
        style = html_module.unescape(match.group(1))
        assert _hash(style) in allowed, f"{url}: style attribute not allowed by the policy: {match.group(0)}"


def test_pages_carry_the_policy(db, client):
    for url in ("/staff/login/", "/admin/login/", "/api/docs/", "/health/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert policy_of(response) == POLICY, url


@pytest.fixture
def signed_in_staff(db, settings):
    settings.STAFF_BULK_WORKER_THREAD = False
    world = build_world()
    world.staff.is_staff = world.staff.is_superuser = True  # the admin's pages too
    world.staff.save()
    client = Client()
    client.force_login(world.staff)
    return world, client


def test_no_page_has_inline_script_or_style_the_policy_would_block(signed_in_staff):
    """The staff pages (htmx, Chart.js, all served from here), every admin changelist and
    add form, and Swagger UI: scripts and styles from files only."""
    world, client = signed_in_staff
    urls = [
        "/staff/", "/staff/?q=Bloggs", f"/staff/customers/{world.customer.pk}/",
        f"/staff/customers/{world.customer.pk}/goodwill/", "/staff/issuances/", "/staff/approvals/",
        "/staff/request-ids/", "/staff/bulk/", "/staff/dashboard/", "/admin/", "/api/docs/",
    ]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:{}_{}_add".format(*info)))
    checked = 0
    for url in urls:
        response = client.get(url)
        if response.status_code == 403 and "/add/" in url:
            continue  # a model nobody may add (the ledger); its changelist is checked
        assert response.status_code == 200, (url, response.status_code)
        assert_nothing_inline(url, response.content.decode())
        checked += 1
    assert checked >= 40


def test_the_staff_pages_turn_off_htmx_injected_styles(signed_in_staff):
    world, client = signed_in_staff
    html = client.get("/staff/").content.decode()
    assert '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false}\'>' in html
    assert "/static/staff/vendor/htmx.min.js" in html


# ---------------------------------------------------------------------------------------
# Sign-in throttling (django-axes): admin and staff sign-in, not the API
# ---------------------------------------------------------------------------------------


@pytest.fixture
def staffer(db):
    user = f.UserFactory(username="staffer", is_staff=True, is_superuser=True)
    f.UserProfileFactory(user=user)
    return user


@pytest.mark.parametrize("login_url", ["/staff/login/", "/admin/login/"])
def test_sign_in_is_locked_after_repeated_failures(staffer, settings, login_url):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(login_url, {"username": "staffer", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    locked = client.post(login_url, {"username": "staffer", "password": "wrong"})
    assert locked.status_code == 429
    right = client.post(login_url, {"username": "staffer", "password": "pass"})
    assert right.status_code == 429, "the right password must not get through a lock"
    assert "_auth_user_id" not in client.session
    spoofed = Client(HTTP_X_FORWARDED_FOR="203.0.113.9").post(login_url, {"username": "staffer", "password": "pass"})
    assert spoofed.status_code == 429, "a forged X-Forwarded-For must not escape the lock"
    other = Client().post(login_url, {"username": "someone-else", "password": "wrong"})
    assert other.status_code == 200  # only that username from that address is locked


def test_a_successful_sign_in_resets_the_count(staffer, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/staff/login/", {"username": "staffer", "password": "wrong"})
    assert client.post("/staff/login/", {"username": "staffer", "password": "pass"}).status_code == 302
    client.post("/staff/logout/")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post("/staff/login/", {"username": "staffer", "password": "wrong"}).status_code == 200


def test_wrong_api_passwords_never_lock_a_till(db, settings, org, brand, api_user, account):
    """A till's calls are not sign-ins: wrong Basic passwords answer 401 and the till keeps working."""
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT * 2):
        response = client.post(ISSUE_BULK, {}, content_type="application/json",
                               HTTP_AUTHORIZATION=basic_auth("till_user", "wrong"))
        assert response.status_code == 401
    response = client.post(ISSUE_BULK, {"mobile": "11223569865"}, content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth("till_user", "pass"))
    assert response.status_code == 400  # authenticated: the body's rewards are missing


# ---------------------------------------------------------------------------------------
# Request ids and JSON logs
# ---------------------------------------------------------------------------------------


@pytest.fixture
def json_logs():
    """Everything logged while the test runs, formatted as in production (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def log_lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_every_response_has_a_request_id_and_a_json_access_line(db, client, json_logs):
    response = client.get("/health/")
    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert client.get("/health/")["X-Request-ID"] != request_id
    access = [line for line in log_lines(json_logs) if line["logger"] == "rewards.access"]
    assert access[0]["request_id"] == request_id
    assert access[0]["method"] == "GET" and access[0]["path"] == "/health/" and access[0]["status"] == 200
    assert {"time", "level", "message", "duration_ms", "user_id", "client_ip"} <= set(access[0])


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("abc-123_DEF.4:5", True), ("f" * 128, True), ("f" * 129, False), ("<script>", False), ("a b", False),
     ("a\u00e9", False), ("", False)],
)
def test_a_safe_incoming_request_id_is_kept(db, client, incoming, kept):
    response = client.get("/health/", HTTP_X_REQUEST_ID=incoming)
    assert (response["X-Request-ID"] == incoming) is kept
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", response["X-Request-ID"])


def test_log_records_inside_a_request_carry_its_id(db, client, json_logs, monkeypatch):
    monkeypatch.setattr("rewards_site.views.connections", None)  # health's query fails loudly
    response = Client(raise_request_exception=False).get("/health/", HTTP_X_REQUEST_ID="trace-42")
    assert response.status_code == 500
    lines = log_lines(json_logs)
    assert all(line["request_id"] == "trace-42" for line in lines), lines
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors and "Traceback" in errors[0]["exception"]


# ---------------------------------------------------------------------------------------
# Nothing secret in logs or error bodies
# ---------------------------------------------------------------------------------------


@pytest.fixture
def vendor_server():
    server = FakeVendor(slow_seconds=1.5).start()
    yield server
    server.stop()


def test_no_password_secret_or_card_number_reaches_logs_or_error_bodies(
    db, org, brand, api_user, account, staffer, vendor_server, json_logs, django_capture_on_commit_callbacks,
    monkeypatch,
):
    password = "S3cret-Pa55word!"
    vendor_key = "vendor-s3cret-key-0123456789"
    bodies = []

    def keep(response):
        bodies.append(response.content.decode(errors="replace"))
        return response

    # 1. Wrong passwords: the API's Basic auth, the staff and admin sign-in.
    client = Client()
    keep(client.post(ISSUE_SINGLE.format(1), {}, content_type="application/json",
                     HTTP_AUTHORIZATION=basic_auth("till_user", password)))
    keep(client.post("/staff/login/", {"username": "staffer", "password": password}))
    keep(client.post("/admin/login/", {"username": "staffer", "password": password}))
    # 2. A vendor whose calls carry secret headers, and fail.
    vendor = f.VendorFactory(org=org)
    config = cm.VendorRedemptionConfig.objects.create(
        vendor=vendor, name="redeem", url=f"{vendor_server.base_url}/redeem/error",
        headers={"X-Api-Key": vendor_key, "Authorization": f"Bearer {vendor_key}"},
        body_template='{"reference": "{{reference}}"}', timeout_seconds=Decimal("2"), context_map={"voucher": "code"},
    )
    reward = f.RewardFactory(pk=300, brand=brand, redemption_type=RedemptionType.VENDOR_ONLY_REWARD, vendor=vendor,
                             vendor_redemption=config)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    api = Client(HTTP_AUTHORIZATION=basic_auth("till_user", "pass"))
    with django_capture_on_commit_callbacks(execute=True):
        keep(api.post(ISSUE_SINGLE.format(300), {"mobile": "11223569865"}, content_type="application/json"))
    assert IssuanceLine.objects.get(reward=reward).status == "FAILED"
    # 3. Card numbers: in a tender that does not add up, in a tender that does, in an echoed parameter.
    tender = {"totalAmount": 10, "methodOfPayment": "card", "methodOfPaymentId": CARD_SPACED,
              "tenders": [{"amount": 5, "card": CARD}]}
    keep(api.post(ISSUE_BULK, {"mobile": "11223569865", "brand": "BUKL", "rewards": [
        {"rewardId": 300, "paymentConfig": {"tender": tender}}]}, content_type="application/json"))
    free = f.RewardFactory(pk=301, brand=brand, intouch_points=0)
    f.PaymentConfigFactory(reward=free, mode=PaymentMode.FREE, points=None)
    tender["tenders"] = [{"amount": 10, "card": CARD}]
    keep(api.post(ISSUE_SINGLE.format(301), {"mobile": "11223569865", "paymentConfig": {"tender": tender}},
                  content_type="application/json"))
    stored = IssuanceLine.objects.get(reward=free).tender
    assert stored["methodOfPaymentId"] == "411111******1111" and stored["tenders"][0]["card"] == "411111******1111"
    keep(api.get(f"/api_gateway/rewards/core/v1/user/reward/brand/BUKL?userId={account.customer_id}"
                 f"&label={CARD_SPACED.replace(' ', '-')}"))
    keep(api.post(ISSUE_SINGLE.format(301), {"mobile": CARD}, content_type="application/json"))
    # 4. An unexpected error whose message holds secrets: a 500 with the status block only.
    def explode(request):
        raise RuntimeError(f"password={password} Authorization: Basic abc123 card {CARD}")

    monkeypatch.setattr("issuance.api.views.rewards_issue", explode)
    crashed = Client(HTTP_AUTHORIZATION=basic_auth("till_user", "pass"), raise_request_exception=False).post(
        ISSUE_SINGLE.format(301), {"mobile": "11223569865"}, content_type="application/json"
    )
    keep(crashed)
    assert crashed.status_code == 500
    assert crashed.json() == {"status": {"success": False, "code": 500,
                                         "message": f"Internal server error (request id {crashed['X-Request-ID']})"}}

    logs = json_logs.getvalue()
    assert "Traceback" in logs and "RuntimeError" in logs  # the 500 was logged, with its traceback
    attempts = "\n".join(AccessAttempt.objects.values_list("post_data", flat=True))  # axes' own records
    assert attempts and password not in attempts
    everything = logs + "\n".join(bodies) + attempts
    credentials = basic_auth("till_user", password).split()[1]
    for secret in (password, credentials, "abc123", vendor_key, CARD, CARD_SPACED, CARD.replace("1111", "1111-", 3)):
        assert secret not in everything, secret
    assert "Traceback" not in "\n".join(bodies)


def test_a_500_on_a_page_is_django_s_page_not_json(db, monkeypatch):
    monkeypatch.setattr("rewards_site.views.connections", None)
    response = Client(raise_request_exception=False).get("/health/")
    assert response.status_code == 500 and b"Traceback" not in response.content
    assert not response["Content-Type"].startswith("application/json")


def test_an_unknown_api_path_is_404_with_the_status_block(db, client):
    response = client.get("/api_gateway/rewards/core/v9/nothing")
    assert response.status_code == 404
    assert response.json() == {"status": {"success": False, "code": 404, "message": "Not found"}}
    assert b"<html" in client.get("/nothing/here").content.lower()


# ---------------------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------------------


def test_health_is_ok_without_credentials(db, client):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert client.head("/health/").status_code == 200
    assert client.post("/health/").status_code == 405


DATABASE_DOWN_PROBE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.test import Client
    from tests.conftest import basic_auth
    client = Client()
    health = client.get("/health/")
    api = client.post("/api_gateway/rewards/core/v1/user/rewards/issue?username=t", {},
                      content_type="application/json", HTTP_AUTHORIZATION=basic_auth("till", "pass"))
    print(json.dumps({"health": [health.status_code, health.json(), health.get("Retry-After")],
                      "api": [api.status_code, api.json()]}))
    """
)


def test_health_is_503_when_the_database_is_unreachable():
    """A real outage: the database URL points at a port nothing listens on."""
    result = manage(settings_module="rewards_site.settings.test", code=DATABASE_DOWN_PROBE,
                    env={"DATABASE_URL": "postgres://nobody@127.0.0.1:9/none", "ACCESS_LOG": "false"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["health"] == [503, {"status": "unavailable", "database": "unavailable"}, "2"]
    assert out["api"][0] == 503 and out["api"][1]["status"]["code"] == 503


# ---------------------------------------------------------------- database session options


@pytest.mark.parametrize(
    ("engine", "given", "switch", "expected"),
    [
        ("django.db.backends.postgresql", None, None, "-c jit=off"),
        ("django.db.backends.postgresql", "-c statement_timeout=5000", None, "-c statement_timeout=5000 -c jit=off"),
        ("django.db.backends.postgresql", "-c jit=on", None, "-c jit=on"),  # the URL's own choice wins
        ("django.db.backends.postgresql", None, "false", None),  # behind PgBouncer: ALTER ROLE instead
        ("django.db.backends.sqlite3", None, None, None),
    ],
)
def test_postgresql_sessions_start_with_jit_off_unless_told_otherwise(monkeypatch, engine, given, switch, expected):
    from rewards_site.settings.base import _postgresql_options

    if switch is None:
        monkeypatch.delenv("DATABASE_JIT_OFF_OPTION", raising=False)
    else:
        monkeypatch.setenv("DATABASE_JIT_OFF_OPTION", switch)
    db = {"ENGINE": engine, "OPTIONS": {"options": given} if given else {}}
    _postgresql_options(db)
    assert db["OPTIONS"].get("options") == expected
